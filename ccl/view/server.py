"""`ccl view`'s browser page: a viser server on a ViewSession.

Each browser gets its own render thread: a camera move or a new answer marks it stale, the thread
renders the latest state (older requests are dropped, never queued) on the CPU rasterizer or gsplat and
sends the image as the page's background. Queries are answered on one thread, newest first. A browser
that goes away mid-render ends only its own thread; the server keeps serving the others.

A colour field still training (a partial checkpoint, ccl.latest_fields) is followed: every `POLL_S` a
watcher thread asks the session whether a newer checkpoint (or the final field) has landed, one stat
when none has; a new one is read on that thread, swapped in between renders, and every browser's view
drawn again, with the page's training line ("training: step S of N, PSNR x dB", then "trained: ...").
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ccl.view.session import SCALE_CHOICE_AUTO, Answer, ViewSession, camera_from_view

log = logging.getLogger(__name__)

HIGHLIGHT_RGB = (255, 0, 255)  # the selected Gaussians' points in 3D (not a turbo colour)
MOVING_S = 0.3  # a camera update this soon after the last frame: the camera is moving
MOVING_CLASS_STRIDE = 2  # while it moves, classes decoded on every 2nd pixel (4x fewer); refined when still
POLL_S = 1.0  # how often the page looks for a newer checkpoint of a field still training
CAMERA_MOVED = "camera"  # what a camera update puts in its browser's slot (a query puts True)


def check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on (viser would silently move to the next one)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is free
        try:
            s.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise ValueError(
                    f"port {port} on {host} is in use (another `ccl view` or program listens there); "
                    f"give a free one with --port, e.g. --port {port + 1}"
                ) from e
            raise ValueError(f"cannot listen on {host}:{port} ({e.strerror}); choose --host or --port") from e


def initial_camera(camera: Any) -> dict[str, Any]:
    """viser's initial camera (position, look_at, up, vertical fov) at a training view."""
    c2w = camera.camera_to_world
    forward, up = c2w[:3, 2], -c2w[:3, 1]  # OpenCV axes
    return {
        "position": camera.center,
        "look_at": camera.center + forward,
        "up": up,
        "fov": 2.0 * math.atan(0.5 * camera.height / camera.K[1, 1]),
    }


class _LatestOnly:
    """A value slot and a wake-up: `put` replaces what is pending, `take` waits for the newest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: Any = None
        self._pending = False
        self.closed = False

    def put(self, value: Any = True) -> None:
        with self._cond:
            self._value, self._pending = value, True
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify()

    def waiting(self) -> Any:
        """What is put and not yet taken (None: nothing)."""
        with self._cond:
            return self._value if self._pending else None

    def take(self, timeout: float | None = None) -> tuple[bool, Any]:
        """(open, value) once something is put or the slot closes; (open, None) after `timeout`."""
        with self._cond:
            if not self._pending and not self.closed:
                self._cond.wait_for(lambda: self._pending or self.closed, timeout)
            if not self._pending:
                return not self.closed, None
            value, self._pending = self._value, False
            return not self.closed, value


def _names(answer: Answer) -> str:
    return ", ".join(repr(q) for q in answer.queries)


class ViewServer:
    """The page: the render from each browser's camera, a query box, the scale and threshold, the status,
    the selection in 3D and its export (only the render and the status for a colour-only folder)."""

    def __init__(
        self,
        session: ViewSession,
        *,
        host: str = "127.0.0.1",
        port: int = 8080,
        max_size: int = 640,
        export_dir: str | Path = ".",
        start_frame: Any = None,
        scale: str = SCALE_CHOICE_AUTO,
    ) -> None:
        from ccl.optional_deps import import_optional

        viser = import_optional("viser")

        if session.can_query and scale not in session.scale_choices:
            raise ValueError(
                f"--scale {scale}: no language field of that scale; have {list(session.scale_choices)}"
            )
        check_port_free(host, port)
        self._initial_scale = scale
        self.session, self.max_size, self.export_dir = session, int(max_size), Path(export_dir)
        self.server = viser.ViserServer(
            host=host, port=port, label=f"ccl view {session.scene}", verbose=False
        )
        if self.server.get_port() != port:  # taken between the check and the bind
            self.server.stop()
            raise ValueError(
                f"port {port} on {host} was taken as the server started; give another with --port"
            )
        self.host, self.port = host, port
        self.answer: Answer | None = None
        self._render_lock = threading.Lock()  # one render at a time: they share the CPU
        # a new answer and a frame sent are never interleaved: the image and the overlay line beside it
        # always name the same query
        self._send_lock = threading.Lock()
        self._clients: dict[int, _LatestOnly] = {}
        self._colour: dict[int, np.ndarray] = {}  # client -> the colour field alone of its last frame
        self._asks = _LatestOnly()
        self._stop_watch = threading.Event()
        self._build_page(start_frame)
        self.server.on_client_connect(self._connect)
        self.server.on_client_disconnect(self._disconnect)
        threading.Thread(target=self._watch_loop, name="ccl-view-watch", daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # --- page ---------------------------------------------------------------------------------------

    def _build_page(self, start_frame: Any) -> None:
        s, gui = self.session, self.server.gui
        gui.configure_theme(control_width="medium", show_share_button=False)
        gui.main_panel.dock_right()  # beside the render, not over it
        if s.cameras:
            cam = s.cameras[0] if start_frame is None else start_frame
            ic = initial_camera(cam)
            self.server.initial_camera.position = tuple(ic["position"])
            self.server.initial_camera.look_at = tuple(ic["look_at"])
            self.server.initial_camera.up = tuple(ic["up"])
            self.server.initial_camera.fov = ic["fov"]
        self.heading = gui.add_markdown(self._heading())
        self.training = gui.add_markdown(self._training_text())  # how far the colour field had come
        self.status = gui.add_markdown("")
        self.overlay = gui.add_markdown("")  # the query whose relevance the image shows, or "rendering"
        if not s.can_query:
            self.status.content = "Colour field only: this folder has no language field, so no queries."
            return
        self._add_query_widgets()

    def _add_query_widgets(self) -> None:
        """The query box, scale, threshold and export button (once the folder has a language field)."""
        s, gui = self.session, self.server.gui
        self.text = gui.add_text("Query", initial_value="", hint="text; several separated by ';'")
        scale = self._initial_scale if self._initial_scale in s.scale_choices else SCALE_CHOICE_AUTO
        self.scale = gui.add_dropdown("Scale", options=list(s.scale_choices), initial_value=scale)
        self.threshold = gui.add_slider(
            "Threshold", min=0.0, max=1.0, step=0.01, initial_value=float(s.query_cfg.threshold)
        )
        self.export_button = gui.add_button("Export selection (3DGS PLY)", disabled=True)
        self.status.content = "Type a query."
        for handle in (self.text, self.scale, self.threshold):
            handle.on_update(lambda _event: self._asks.put(self._request()))
        self.export_button.on_click(self._export)
        threading.Thread(target=self._answer_loop, name="ccl-view-ask", daemon=True).start()

    def _heading(self) -> str:
        s = self.session
        return f"**{s.scene}** · {len(s.colour)} Gaussians · variant `{s.variant}`"

    def _training_text(self) -> str:
        return "  \n".join(self.session.training_lines())  # a markdown line break between fields

    def _watch_loop(self) -> None:
        """Every POLL_S: newer checkpoints of the fields swapped in, the page's lines updated and every
        browser's view drawn again (the renders in flight finish with the fields they began with); after a
        language field's, the query on the page is answered again on it."""
        while not self._stop_watch.wait(POLL_S):
            try:
                swapped = self.session.refresh()
                if not swapped:
                    continue
                self.heading.content = self._heading()
                self.training.content = self._training_text()
                if "language" in swapped and self.session.can_query:
                    if not hasattr(self, "text"):  # the first language field has appeared
                        self._add_query_widgets()
                    self.scale.options = list(self.session.scale_choices)
                    self._asks.put(self._request())
            except Exception:  # the page keeps showing the fields it has
                log.exception("ccl view: reading a field's newer checkpoint failed")
                continue
            for slot in list(self._clients.values()):
                slot.put()

    def _request(self) -> tuple[str, str, float]:
        return self.text.value, self.scale.value, float(self.threshold.value)

    def _answer_loop(self) -> None:
        try:
            self.session.warm()  # each field's Gaussians decoded before the first query, not by it
        except Exception:  # the query decodes them then, and says what fails
            log.exception("ccl view: decoding the language fields' Gaussians ahead failed")
        while True:
            ok, request = self._asks.take()
            if not ok:
                return
            text, scale, threshold = request
            if not text.strip():
                self._show(None, "Type a query.")
                continue
            try:
                answer = self.session.ask(text, scale=scale, threshold=threshold)
            except Exception as e:  # a failing query must not end the page
                log.exception("ccl view: query %r failed", text)
                self._show(None, f"The query failed: {type(e).__name__}: {e}")
                continue
            if request != self._request():
                continue  # the page has moved on: answer its newest request instead
            self._show(answer, answer.message)

    def _show(self, answer: Answer | None, message: str) -> None:
        with self._send_lock:
            self._show_locked(answer, message)

    def _show_locked(self, answer: Answer | None, message: str) -> None:
        self.answer = answer if answer is not None and answer.chosen is not None else None
        self.status.content = message
        points = self.session.selected_points(answer) if answer is not None else np.zeros((0, 3), np.float32)
        if len(points):
            g = answer.chosen.field.gaussians  # type: ignore[union-attr]
            # dots a third of a typical selected Gaussian's size: the heat drawn under them stays visible
            scales = g.log_scales.detach().exp().amax(dim=1).cpu().numpy()[answer.chosen.chosen]
            size = float(np.median(scales)) / 3
            self.server.scene.add_point_cloud(
                "/selection",
                points=points,
                colors=HIGHLIGHT_RGB,
                point_size=max(size, 1e-4),
                point_shape="circle",
                precision="float32",
            )
        else:
            with contextlib.suppress(Exception):
                self.server.scene.remove_by_name("/selection")
        if hasattr(self, "export_button"):
            self.export_button.disabled = not (answer is not None and answer.has_selection)
        shown = self.answer
        self.overlay.content = f"Overlay: *rendering {_names(shown)}…*" if shown is not None else ""
        for cid, slot in list(self._clients.items()):
            # the previous query's overlay goes at once: the colour field alone until this one is drawn
            colour = self._colour.get(cid)
            client = self.server.get_clients().get(cid)
            if colour is not None and client is not None:
                with contextlib.suppress(Exception):
                    client.scene.set_background_image(colour, format="jpeg", jpeg_quality=90)
            slot.put()

    def _export(self, event: Any) -> None:
        answer = self.answer
        if answer is None or not answer.has_selection:
            self.status.content = "Nothing to export: ask a query that selects Gaussians first."
            return
        try:
            path = self.session.export(answer, self.export_dir)
        except (ValueError, OSError) as e:
            self.status.content = f"Export failed: {e}"
            return
        self.status.content = f"{answer.message}. Exported {answer.chosen.n_chosen} Gaussians to `{path}`."
        log.info("ccl view: exported %s", path)
        client = getattr(event, "client", None)
        if client is not None:
            with contextlib.suppress(Exception):  # the browser may have gone meanwhile
                client.send_file_download(path.name, path.read_bytes(), save_immediately=True)

    # --- per-browser rendering --------------------------------------------------------------------

    def _connect(self, client: Any) -> None:
        slot = _LatestOnly()
        self._clients[client.client_id] = slot
        client.camera.on_update(lambda _camera: slot.put(CAMERA_MOVED))
        threading.Thread(target=self._render_loop, args=(client, slot), daemon=True).start()
        slot.put()

    def _disconnect(self, client: Any) -> None:
        slot = self._clients.pop(client.client_id, None)
        self._colour.pop(client.client_id, None)
        if slot is not None:
            slot.close()

    def _render_loop(self, client: Any, slot: _LatestOnly) -> None:
        # the last frame sent is drawn again once the camera rests: its classes were decoded on a coarse
        # grid, or the language features were not drawn with it (a moving view, nothing asked yet)
        refine = False
        last = 0.0
        while True:
            ok, request = slot.take(timeout=MOVING_S if refine else None)
            if not ok:
                return
            moving = request is not None and time.monotonic() - last < MOVING_S
            if request is None and not refine:
                continue
            try:
                cam = client.camera
                if cam.image_width <= 0 or cam.image_height <= 0:
                    continue
                view = camera_from_view(cam.position, cam.wxyz, cam.fov, cam.image_width, cam.image_height,
                                        max_size=self.max_size)  # fmt: skip
                stride = MOVING_CLASS_STRIDE if moving else 1
                answer = self.answer
                # a still view of a folder with language fields: their features drawn with the colour and
                # decoded once it is sent, so that the query typed next only paints its relevance
                scale = getattr(self, "scale", None)  # (the query widgets come with the first field)
                prepare = scale.value if scale is not None and self.session.can_query and not moving else None
                with self._render_lock:
                    frame = self.session.render(view, answer, class_stride=stride, prepare=prepare)
                refine = frame.coarse or (moving and answer is None and self.session.can_query)
                last = time.monotonic()
                if slot.closed:
                    return  # gone while rendering: nothing to send
                with self._send_lock:
                    if self.answer is not answer:
                        continue  # a newer query came during the render: drop this frame (its slot is set)
                    self._colour[client.client_id] = frame.colour
                    client.scene.set_background_image(frame.image, format="jpeg", jpeg_quality=90)
                    if answer is not None:
                        self.overlay.content = f"Overlay: {_names(answer)}"
                if prepare is not None and answer is None:
                    with self._render_lock:  # stopped when this camera moves or another browser waits
                        self.session.prepare_classes(view, prepare, cancelled=lambda: self._busy(slot))
            except Exception:
                if slot.closed or client.client_id not in self._clients:
                    return  # the browser disconnected mid-render: only this thread ends
                log.exception("ccl view: rendering for browser %s failed", client.client_id)

    def _busy(self, slot: _LatestOnly) -> bool:
        """Whether work decoding ahead for `slot`'s browser stops: its camera moved, or it went, or another
        browser waits for a frame (a query on this one waits for the same class maps: not a reason)."""
        return (slot.closed or slot.waiting() == CAMERA_MOVED
                or any(s is not slot and s.waiting() is not None for s in list(self._clients.values())))  # fmt: skip

    def serve_forever(self, stop: threading.Event | None = None) -> None:
        stop = stop or threading.Event()
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._stop_watch.set()
        self._asks.close()
        for slot in list(self._clients.values()):
            slot.close()
        self.server.stop()
