"""ccl view's page decodes a still view's class maps ahead, without a browser: a stand-in client (its
camera as viser reports it, the images it is sent) on the server of bench.viewer's small field. Once
its first frame is sent, the view's class maps are decoded; a query then sends its overlay without
rasterizing again, the same image as the reference render; a frame drawn while the camera moved is drawn
again once it rests, with the features, and decoded ahead too."""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import numpy as np
import pytest

W, H = 96, 72


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Client:
    """What the server's render thread reads of a browser: its id, camera and scene."""

    def __init__(self, k: int) -> None:
        self.client_id, self.sent, self._moved = 7, [], []
        self.camera = SimpleNamespace(image_width=W, image_height=H, on_update=self._moved.append)
        self.scene = SimpleNamespace(set_background_image=lambda image, **_: self.sent.append(image))
        self.look(k)

    def look(self, k: int) -> None:
        from bench.viewer import orbit_pose

        self.camera.position, self.camera.wxyz, self.camera.fov = orbit_pose(k, 7)

    def move(self, k: int) -> None:
        self.look(k)
        for callback in self._moved:
            callback(self.camera)


def _wait_for(what: str, predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.02)


@pytest.fixture
def page(tmp_path, monkeypatch):
    from bench.viewer import build_session, reference_of
    from ccl.splat import render
    from ccl.view.server import ViewServer

    session, query = build_session(tmp_path, n=4000, size=H)
    rasterized = []
    real = render.render_channels
    monkeypatch.setattr(render, "render_channels", lambda *a, **k: rasterized.append(1) or real(*a, **k))
    server = ViewServer(session, port=_free_port(), max_size=W)
    try:
        yield server, reference_of(session), query, rasterized
    finally:
        server.close()


def _decoded(session) -> bool:
    views = list(session._views)
    return bool(views) and len(views[-1].classes) == 2  # auto's sp and wp


def test_a_query_on_a_still_view_is_painted_on_its_class_maps_decoded_ahead(page):
    from bench.viewer import orbit

    server, ref, query, rasterized = page
    session, client = server.session, _Client(1)
    server._connect(client)
    _wait_for("the first frame and its class maps", lambda: client.sent and _decoded(session))
    np.testing.assert_array_equal(client.sent[0], ref.render(orbit(1, 7, W, H)).image)
    n_raster, n_sent = len(rasterized), len(client.sent)

    answer = session.ask(query)
    server._show(answer, answer.message)
    _wait_for("the overlay", lambda: server.overlay.content == f"Overlay: '{query}'")
    assert len(client.sent) == n_sent + 1 and len(rasterized) == n_raster  # painted, not rasterized
    np.testing.assert_array_equal(client.sent[-1], ref.render(orbit(1, 7, W, H), ref.ask(query)).image)


def test_a_frame_drawn_while_moving_is_drawn_again_at_rest_and_decoded_ahead(page, monkeypatch):
    from ccl.view import server as view_server

    server, _ref, _query, _rasterized = page
    monkeypatch.setattr(view_server, "MOVING_S", 2.0)  # an update within 2 s of a frame: a move
    session, client = server.session, _Client(2)
    server._connect(client)
    _wait_for("the first frame, decoded ahead", lambda: client.sent and _decoded(session))
    client.move(3)
    _wait_for("the frame while moving", lambda: len(client.sent) >= 2)
    assert session._views[-1].fields == []  # the colour alone: nothing drawn ahead while it moves
    _wait_for("the frame at rest, decoded ahead", lambda: len(client.sent) >= 3 and _decoded(session))
    np.testing.assert_array_equal(client.sent[2], client.sent[1])  # the same picture, with its class maps


def test_the_pages_threads_keep_every_tensor_on_the_device(tmp_path, caplog):
    """The page under the CPU guard against host-made tensors (ccl/host_tensor_guard.py), its threads
    included: the first frame, the class maps decoded ahead, a query answered on the page's own thread and
    its overlay, each free of a tensor that a CUDA run would have left on the host."""
    import logging

    from bench.viewer import build_session
    from ccl.host_tensor_guard import host_tensors_fail_on_meeting_the_device
    from ccl.view.server import ViewServer

    caplog.set_level(logging.ERROR, logger="ccl")

    def no_error_yet() -> bool:  # a failing thread logs and goes on: fail at once, not at the timeout
        errors = [r.getMessage() + str(r.exc_info and r.exc_info[1]) for r in caplog.records]
        assert not errors, errors
        return True

    session, query = build_session(tmp_path, n=4000, size=H)  # the fields, as if loaded onto the device
    with host_tensors_fail_on_meeting_the_device():
        server = ViewServer(session, port=_free_port(), max_size=W)  # its threads start under the guard
        try:
            client = _Client(1)
            server._connect(client)
            _wait_for("the first frame and its class maps",
                      lambda: no_error_yet() and client.sent and _decoded(session))  # fmt: skip
            server.text.value = query  # as typed on the page: answered on the page's query thread
            server._asks.put(server._request())
            _wait_for(
                "the overlay", lambda: no_error_yet() and server.overlay.content == f"Overlay: '{query}'"
            )
        finally:
            server.close()
    no_error_yet()
