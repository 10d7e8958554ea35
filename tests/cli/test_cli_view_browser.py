"""`ccl view` in a real browser: Debian's chromium, headless, driven by playwright, against the command
on the tiny results folder (conftest.py). The page loads and shows the colour field, a typed query
changes the image and the highlighted pixels fall on the queried object, the export button writes a
PLY that loads, and a browser that leaves mid-render leaves the server serving the next one.

Needs /usr/bin/chromium (`make setup` installs it with apt); skipped only where it is absent, and never
on CI (CI=true), where its absence fails the test.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser  # in `make test`: about 20 s

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]
VIEWPORT = {"width": 960, "height": 480}


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.is_file():
        why = f"{CHROMIUM} not found: Debian's chromium is needed (apt-get install -y chromium; make setup does it)"
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def browser(chromium):
    """Debian's chromium, headless, driven by playwright: one for a module's tests."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_page(browser, url: str):
    """A new page of `browser` at `url`, in the tests' window size."""
    page = browser.new_page(viewport=VIEWPORT)
    page.goto(url)
    return page


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_view(scene_dir: Path, export_dir: Path, frame: str) -> tuple[subprocess.Popen, str]:
    """`ccl view` started on `scene_dir`: (the process, its URL); what it printed up to the URL is the
    process's `printed`."""
    port = _free_port()
    cmd = [sys.executable, "-c", "import sys; from ccl.cli import main; sys.exit(main())", "view",
           str(scene_dir), "--port", str(port), "--frame", frame, "--export-dir", str(export_dir)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("ccl view:") and " at http://" in line:
            proc.printed = "".join(lines)
            return proc, line.split(" at ")[1].split()[0]
    proc.kill()
    raise AssertionError("ccl view did not print its URL:\n" + "".join(lines))


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.stdout.read()


def _canvas_shot(page) -> np.ndarray:
    from PIL import Image

    box = page.locator("canvas").first.bounding_box()
    png = page.screenshot(clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _settled_shot(page, *, unlike: np.ndarray | None = None, timeout: float = 30.0) -> np.ndarray:
    """A canvas screenshot once the render has arrived (different from `unlike`) and stopped changing."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        shot = _canvas_shot(page)
        fresh = unlike is None or np.abs(shot - unlike).max() > 40
        if fresh and last is not None and np.abs(shot - last).max() <= 2 and shot.std() > 5:
            return shot
        last = shot
        page.wait_for_timeout(400)
    raise AssertionError("the page's render did not arrive or did not settle")


def _input(page, label: str):
    """The visible text input of the page's widget labelled `label` (viser's labels name no input)."""
    row = f"//label[text()='{label}']/ancestor::div[contains(@class,'mantine-Flex-root')][1]"
    return page.locator(f"xpath={row}//input[not(@type='hidden')]")


def _mask_in_canvas(mask: np.ndarray, cam, size_hw: tuple[int, int]) -> np.ndarray:
    """A mask of training view `cam` seen in the canvas (the page starts at that pose, its vertical field
    of view, the canvas's own aspect): each canvas pixel's ray looked up in `cam`'s image."""
    h, w = size_hw
    f = cam.K[1, 1] * h / cam.height  # the page's focal: the same vertical field of view
    y, x = np.mgrid[0:h, 0:w]
    rx, ry = (x + 0.5 - w / 2) / f, (y + 0.5 - h / 2) / f
    u = np.floor(cam.K[0, 0] * rx + cam.K[0, 2]).astype(int)
    v = np.floor(cam.K[1, 1] * ry + cam.K[1, 2]).astype(int)
    inside = (u >= 0) & (u < cam.width) & (v >= 0) & (v < cam.height)
    out = np.zeros((h, w), bool)
    out[inside] = mask[v[inside], u[inside]]
    return out


def test_view_in_chromium(browser, tiny_view_results, tmp_path):
    import h5py
    from test_cli_view import widened

    from ccl.io.gaussians_ply import read_gaussians_ply
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest, read_manifest

    scene_dir = tiny_view_results["scene_dir"]
    cats, classes = tiny_view_results["categories"], tiny_view_results["classes"]
    k = cats.index("red mug")
    manifest = scene_dir / "scene.json"
    cameras = load_scene_from_manifest(manifest, cfg=SceneLoadConfig()).cameras
    with h5py.File(read_manifest(manifest).root / "gt.h5", "r") as f:
        masks = {c.name: f[c.name]["category_id"][()] == k for c in cameras}
    cam = max(cameras, key=lambda c: masks[c.name].sum())
    proc, url = _start_view(scene_dir, tmp_path, cam.name)
    try:
        page = open_page(browser, url)
        page.get_by_text("Type a query.").wait_for(timeout=30_000)
        plain = _settled_shot(page)

        _input(page, "Query").fill("red mug")
        page.get_by_text("Gaussians selected for 'red mug'").wait_for(timeout=30_000)
        # the answer comes first (its points over the colour alone), then its overlay: under load the
        # points alone could settle for a screenshot, so wait for the page to say the overlay is drawn
        page.get_by_text("Overlay: 'red mug'").wait_for(timeout=30_000)
        asked = _settled_shot(page, unlike=plain)
        shot = tmp_path / "view_red_mug.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 0

        # the page dims the view to 30 % and paints turbo (and the selected Gaussians' points) where
        # the relevance passes the threshold: those pixels depart from 0.3 x the plain view, and
        # from the plain view itself (which the page's own widgets, drawn over the canvas, do not)
        lit = (np.abs(asked - 0.3 * plain).max(axis=2) > 60) & (np.abs(asked - plain).max(axis=2) > 30)
        mug = _mask_in_canvas(masks[cam.name], cam, lit.shape)
        assert lit.sum() > 0.3 * mug.sum() > 0, (lit.sum(), mug.sum())
        near_mug = widened(mug, 0.08)  # isotropic blobs reach past the outline (test_cli_view.py)
        assert (lit & near_mug).sum() / lit.sum() > 0.8

        with page.expect_download(timeout=30_000):
            page.get_by_role("button", name="Export selection (3DGS PLY)").click()
        page.get_by_text("Exported").wait_for(timeout=30_000)
        exported = read_gaussians_ply(tmp_path / "tiny_red_mug.ply")
        assert len(exported) == int((classes == k + 1).sum())

        # a threshold nothing passes: the page says so
        threshold = _input(page, "Threshold")
        threshold.fill("1")
        threshold.press("Enter")
        page.get_by_text("no match for 'red mug'").wait_for(timeout=30_000)
        threshold.fill("0.5")
        threshold.press("Enter")
        page.get_by_text("Gaussians selected for 'red mug'").wait_for(timeout=30_000)

        # a browser that leaves while its first frame renders; the next one is still served
        open_page(browser, url).close()
        again = open_page(browser, url)
        again.get_by_text("Gaussians selected for 'red mug'").wait_for(timeout=30_000)  # the page's state
        assert _settled_shot(again).std() > 5
        assert proc.poll() is None
        page.close()
        again.close()
    finally:
        log = _stop(proc)
    assert "Traceback" not in log, log


def test_overlay_line_names_the_query_the_image_shows(browser, tiny_view_results, tmp_path):
    """A second query while the first one's overlay is shown: once the page names the new answer, the
    overlay line never names the old query (the old overlay is taken off at once, 'rendering …' until
    the new one is drawn); the time from typing the query to its overlay is printed (pytest -s)."""
    import re

    from ccl.scene import SceneLoadConfig, load_scene_from_manifest

    scene_dir = tiny_view_results["scene_dir"]
    cam = load_scene_from_manifest(scene_dir / "scene.json", cfg=SceneLoadConfig()).cameras[0]
    proc, url = _start_view(scene_dir, tmp_path, cam.name)
    try:
        page = open_page(browser, url)
        page.get_by_text("Type a query.").wait_for(timeout=30_000)
        query = _input(page, "Query")
        query.fill("red mug")
        page.get_by_text("Overlay: 'red mug'").wait_for(timeout=30_000)
        seen, t0 = [], time.monotonic()
        query.fill("teddy bear")
        while time.monotonic() - t0 < 30:
            text = page.locator("body").inner_text()
            m = re.search(r"Overlay: ([^\n]*)", text)
            seen.append((time.monotonic() - t0, "selected for 'teddy bear'" in text, m and m.group(1)))
            if seen[-1][2] == "'teddy bear'":
                break
            page.wait_for_timeout(20)
        page.close()
    finally:
        log = _stop(proc)
    assert "Traceback" not in log, log
    assert seen[-1][2] == "'teddy bear'", seen[-8:]
    answered = [s for s in seen if s[1]]
    assert answered, seen[-8:]
    for _t, _new, overlay in answered:  # from the answer on, the line names the new query or nothing
        assert overlay is None or "teddy bear" in overlay, (overlay, seen)
    assert any(o is not None and "rendering" in o for _t, _n, o in answered) or len(answered) == 1
    print(f"query -> status {answered[0][0]:.2f} s, query -> its overlay {seen[-1][0]:.2f} s (tiny scene)")
