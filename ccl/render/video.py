"""A camera path rendered to a video (.mp4 through PyAV's FFmpeg, H.264), an animated .gif (Pillow) or a
folder of PNG frames (any other -o: a folder), with progress and time left as frames go.

What a frame shows (`what`): rgb, the colour field; relevance, a text's relevance drawn over the colour
field as `ccl view` draws it (ccl.view.session); both, the two side by side.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".gif")  # any other -o is a folder of PNG frames
WHAT = ("rgb", "relevance", "both")


@dataclass(frozen=True)
class PathVideo:
    path: Path
    n_frames: int
    width: int  # of a frame as written
    height: int
    fps: float
    outside: tuple[int, ...]  # frames whose camera is outside the scene's bounds


def _even(image: np.ndarray) -> np.ndarray:
    """H.264 in yuv420p needs even sides: the frame padded by one edge row/column where odd."""
    h, w = image.shape[:2]
    return np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


def write_frames(out: Path, frames: Iterable[np.ndarray], *, fps: float) -> tuple[int, int, int]:
    """Write [H, W, 3] uint8 frames to `out` (VIDEO_SUFFIXES or a folder); (count, width, height)."""
    from PIL import Image

    from ccl.io import atomic_path

    suffix = out.suffix.lower()
    n, size = 0, (0, 0)
    if suffix == ".mp4":
        from ccl.optional_deps import import_optional

        av = import_optional("av")

        with atomic_path(out) as tmp:
            with av.open(str(tmp), mode="w", format="mp4") as container:
                stream = None
                for frame in frames:
                    frame = _even(frame)
                    if stream is None:
                        stream = container.add_stream("libx264", rate=round(fps))
                        stream.width, stream.height, stream.pix_fmt = (
                            frame.shape[1],
                            frame.shape[0],
                            "yuv420p",
                        )
                        stream.options = {"crf": "18"}
                    for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                        container.mux(packet)
                    n, size = n + 1, (frame.shape[1], frame.shape[0])
                if stream is not None:
                    for packet in stream.encode():
                        container.mux(packet)
    elif suffix == ".gif":
        images = [Image.fromarray(f) for f in frames]
        with atomic_path(out) as tmp:
            images[0].save(
                tmp, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0
            )
        n, size = len(images), images[0].size
    else:
        out.mkdir(parents=True, exist_ok=True)
        for frame in frames:
            with atomic_path(out / f"frame_{n:05d}.png") as tmp:
                Image.fromarray(frame).save(tmp, format="PNG")
            n, size = n + 1, (frame.shape[1], frame.shape[0])
    return n, size[0], size[1]


def render_path(
    session: Any,
    cameras: Sequence[Any],
    out: str | os.PathLike,
    *,
    what: str = "rgb",
    answer: Any = None,
    fps: float = 30.0,
    outside: Sequence[int] = (),
) -> PathVideo:
    """Render `cameras` through a `ccl.view.session.ViewSession` (gsplat on CUDA, ccl's rasterizer on a
    CPU) and write them to `out`; `answer` (session.ask) is the query of relevance and both."""
    from ccl.runlog import progress

    if what not in WHAT:
        raise ValueError(f"--what {what}: unknown; accepted: {', '.join(WHAT)}")
    if what != "rgb" and (answer is None or not answer.chosen):
        raise ValueError(f"--what {what} needs a query answered on the language fields")

    def frames() -> Iterable[np.ndarray]:
        for cam in progress(cameras, desc="ccl render", total=len(cameras), unit="frame"):
            if what == "rgb":
                yield session.render(cam).image
            elif what == "relevance":
                yield session.render(cam, answer).image
            else:
                yield np.concatenate([session.render(cam).image, session.render(cam, answer).image], axis=1)

    out = Path(out)
    n, w, h = write_frames(out, frames(), fps=fps)
    return PathVideo(out, n, w, h, fps, tuple(outside))
