"""`ccl view` on a results folder whose colour field is still training: the page shows the latest partial
checkpoint, swaps in each newer one and then the final field, with the step and the PSNR so far; the
partial checkpoints record that PSNR (ccl.splat.trainer.window_progress) and training never waits on
the view.

The browser test needs /usr/bin/chromium as tests/cli/test_cli_view_browser.py does (skipped only where
it is absent, never on CI).
"""

from __future__ import annotations

import importlib
import math
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_cli_view_browser import _settled_shot, _start_view, _stop, browser, chromium, open_page  # noqa: F401

ITERATIONS, EVERY = 120, 20  # a tiny training: a partial checkpoint every 20 steps


def _results_folder(tiny_scene_dir, root: Path) -> tuple[Path, Path, Path]:
    """(results/tiny, its scene.json, seed0's colour field path): a folder the workflow has just begun."""
    from ccl.scene import SceneLoadConfig, write_manifest

    scene_dir = root / "results" / "tiny"
    manifest = write_manifest(
        scene_dir / "scene.json", name="tiny", entry={"source": "synthetic"}, source_dir=tiny_scene_dir,
        cfg=SceneLoadConfig(),
    )  # fmt: skip
    return scene_dir, manifest, scene_dir / "seed0" / "gaussians" / "rgb.safetensors"


def _tiny_rgb_config():
    from ccl.splat.config import RgbConfig

    return RgbConfig(iterations=ITERATIONS, checkpoint_every=EVERY, holdout_every=4)


def _with_callback(callback):
    """ccl.splat.train_rgb's `train` calling `callback(step)` after every step (as fit_rgb's own
    `callback` does; the stage entry train_rgb has none)."""
    stage = importlib.import_module("ccl.splat.train_rgb")  # the module, not the function
    train = stage.train

    def train_with_callback(*args, **kw):
        return train(*args, **{**kw, "callback": callback})

    return stage, train_with_callback


def test_partial_checkpoints_record_psnr_and_the_session_follows_them(
    tiny_scene_dir, tmp_path, monkeypatch, one_torch_thread
):
    """train_rgb (the stage entry) with a session opened on its first partial checkpoint: each newer one
    is swapped in by `refresh` (False while none is newer), its step and the training views' PSNR so far
    in the training line, the render changes, and the final field ends it as 'trained'."""
    import numpy as np

    from ccl.query.config import QueryConfig
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest
    from ccl.splat.checkpoint import partial_path
    from ccl.view.session import open_session

    scene_dir, manifest, out = _results_folder(tiny_scene_dir, tmp_path)
    camera = load_scene_from_manifest(manifest, cfg=SceneLoadConfig()).cameras[0]
    seen: list[tuple[int, float, str, np.ndarray]] = []
    session = None

    def look(step: int) -> None:
        nonlocal session
        if (step + 1) % EVERY or step + 1 == ITERATIONS:
            if session is not None:
                assert not session.refresh()  # nothing newer: not read again
            return
        if session is None:
            session = open_session(scene_dir, query_cfg=QueryConfig(), scene_cfg=SceneLoadConfig())
        else:
            assert session.refresh()
        assert session.training and session.latest.path == partial_path(out)
        image = session.render(camera).image
        seen.append(
            (session.latest.step, session.latest.progress["psnr_train"], session.training_lines(), image)
        )

    stage, train_with_callback = _with_callback(look)
    monkeypatch.setattr(stage, "train", train_with_callback)
    metrics = stage.train_rgb(
        out, manifest=manifest, scene_load=SceneLoadConfig(), cfg=_tiny_rgb_config(), seed=0
    )

    assert [s for s, *_ in seen] == list(range(EVERY, ITERATIONS, EVERY))
    for step, psnr, lines, _image in seen:
        assert math.isfinite(psnr) and 5 < psnr < 60, psnr
        assert lines == [
            f"Colour field training: step {step} of {ITERATIONS}, PSNR {psnr:.2f} dB (training views)"
        ]
    assert seen[-1][1] > seen[0][1] + 1.0, [p for _s, p, *_ in seen]  # the PSNR so far rises
    assert np.abs(seen[-1][3].astype(int) - seen[0][3]).max() > 30  # the newer field is drawn
    assert session.refresh() and not session.training and session.latest.path == out
    trained = f"Colour field trained: {ITERATIONS} steps, PSNR {metrics.psnr_heldout:.2f} dB (held-out views)"
    assert session.training_lines() == [trained]
    assert not session.refresh()


def test_a_language_runs_partial_checkpoints_record_its_accuracy(
    tiny_view_results, tmp_path, one_torch_thread
):
    """A frozen language run on the tiny scene's ground-truth categories: each partial checkpoint's header
    records the pixel accuracy of the steps since the one before (in [0, 1], rising as it trains)."""
    import json

    import h5py
    import numpy as np

    from ccl.io.checkpoint import read_header
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest, read_manifest
    from ccl.splat.checkpoint import load_rgb_field, partial_path
    from ccl.splat.config import LanguageConfig
    from ccl.splat.train_language import fit_language

    scene_dir = tiny_view_results["scene_dir"]
    manifest = scene_dir / "scene.json"
    cameras = load_scene_from_manifest(manifest, cfg=SceneLoadConfig()).cameras
    with h5py.File(read_manifest(manifest).root / "gt.h5", "r") as f:
        n_classes = len(json.loads(f.attrs["categories"]))
        maps = [f[c.name]["category_id"][()].astype(np.int64) for c in cameras]
    colour, _ = load_rgb_field(scene_dir / "seed0" / "gaussians" / "rgb.safetensors")
    state = partial_path(tmp_path / "sp.safetensors")
    seen = []

    def look(step: int) -> None:
        if (step + 1) % 10 == 0 and step + 1 < 60:
            seen.append(read_header(state)["progress"])

    cfg = LanguageConfig(iterations=60, checkpoint_every=10, holdout_every=4, lr=1e-2)
    fit_language(cameras, maps, n_classes=n_classes, gaussians=colour, cfg=cfg, seed=0, state_path=state,
                 callback=look)  # fmt: skip
    accuracy = [p["accuracy_train"] for p in seen]
    assert len(seen) == 5 and all(p["steps"] == 10 and math.isfinite(p["loss"]) for p in seen), seen
    assert all(0 <= a <= 1 for a in accuracy) and accuracy[-1] > accuracy[0] + 0.05, accuracy


def _write_language_partial(final: Path, field, *, step: int, accuracy: float) -> None:
    """A frozen language run's partial checkpoint of `final` at `step` of 100 (its features and decoder,
    the header train_language writes, the accuracy so far), as ccl.splat.trainer.optimise saves it."""
    from ccl.splat.checkpoint import partial_path, save_train_state
    from ccl.splat.decoder import decoder_tensors

    header = {
        **field.header,
        "config": {"iterations": 100},
        "progress": {"steps": 10, "accuracy_train": accuracy},
    }
    save_train_state(
        partial_path(final), iteration=step, params={"features": field.features}, optimizers={},
        strategy_state={}, extra=decoder_tensors(field.decoder), header=header,
    )  # fmt: skip


def test_a_language_field_still_training_is_queried_and_followed(tiny_view_results, tmp_path):
    """sp's language field only as a partial checkpoint (wp trained): the session answers queries on it,
    says its step and accuracy so far, swaps in a newer checkpoint, and then the final field."""
    import shutil

    from ccl.query.config import QueryConfig
    from ccl.query.fields import scene_text_encoder
    from ccl.scene import SceneLoadConfig
    from ccl.splat.checkpoint import load_language_field, save_language_field
    from ccl.view.session import open_session

    scene_dir = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], scene_dir)
    final = scene_dir / "seed0" / "gaussians" / "full" / "sp.safetensors"
    field = load_language_field(final)
    _write_language_partial(final, field, step=50, accuracy=0.61)
    final.unlink()

    session = open_session(scene_dir, query_cfg=QueryConfig(), scene_cfg=SceneLoadConfig(),
                           text_encoder=lambda: scene_text_encoder(scene_dir))  # fmt: skip
    assert session.scale_choices == ("auto", "sp", "wp")
    lines = session.training_lines()
    assert lines[1] == "Language field sp training: step 50 of 100, accuracy 0.61 (training views)", lines
    assert lines[2].startswith("Language field wp trained: "), lines
    answer = session.ask("red mug", scale="sp")
    assert answer.has_selection, answer.message
    assert not session.refresh()

    wp = session.sources["wp"].language_field("wp")
    _write_language_partial(final, field, step=60, accuracy=0.72)
    assert session.refresh() == {"language"}
    assert session.sources["wp"].language_field("wp") is wp  # unchanged: not read again
    assert (
        session.training_lines()[1]
        == "Language field sp training: step 60 of 100, accuracy 0.72 (training views)"
    )
    assert session.ask("red mug", scale="sp").has_selection

    metrics = {"accuracy_all": 0.9, "accuracy_heldout": 0.85}
    save_language_field(final, field, header={**field.header, "iteration": 100, "metrics": metrics})
    partial = final.with_name("sp.partial.safetensors")
    partial.unlink()
    assert session.refresh() == {"language"}
    assert (
        session.training_lines()[1] == "Language field sp trained: 100 steps, accuracy 0.85 (held-out views)"
    )
    assert session.sources["sp"].fields["sp"] == final


def test_the_page_grows_its_query_box_when_the_first_language_field_lands(
    tiny_view_results, tmp_path, monkeypatch
):
    """A page opened on a colour field alone (its language fields not trained yet): once they land, its
    watcher swaps them in, adds the query box with their scales, and says how far each has come."""
    import shutil

    from test_cli_view_browser import _free_port

    from ccl.query.config import QueryConfig
    from ccl.query.fields import scene_text_encoder
    from ccl.scene import SceneLoadConfig
    from ccl.view import server as view_server
    from ccl.view.session import open_session

    scene_dir = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], scene_dir)
    language = scene_dir / "seed0" / "gaussians" / "full"
    language.rename(tmp_path / "full")
    session = open_session(scene_dir, query_cfg=QueryConfig(), scene_cfg=SceneLoadConfig(),
                           text_encoder=lambda: scene_text_encoder(scene_dir))  # fmt: skip
    assert not session.can_query
    monkeypatch.setattr(view_server, "POLL_S", 0.1)
    page = view_server.ViewServer(session, port=_free_port())
    try:
        assert not hasattr(page, "text") and page.training.content.startswith("Colour field trained: ")
        (tmp_path / "full").rename(language)
        _wait_for("the query box", lambda: hasattr(page, "text") and hasattr(page, "export_button"), 30)
        assert list(page.scale.options) == ["auto", "sp", "wp"]
        _wait_for("the language lines", lambda: "Language field wp trained: " in page.training.content, 10)
        assert page.status.content == "Type a query."
    finally:
        page.close()


# The tiny training of the browser test, in a process of its own as the workflow's job would be: paced
# (a sleep per step) so that its checkpoints land about a second apart, and held after the first one
# until the test has the page open (a file `go`), so that the test needs no longer training than that.
TRAIN = """
import importlib, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
sys.path.insert(0, {tests!r})
from test_cli_view_live import _tiny_rgb_config, _with_callback
from ccl.scene import SceneLoadConfig

out, manifest, go = sys.argv[1:4]

def paced(step):
    if step + 1 == {every}:
        deadline = time.monotonic() + 120
        while not Path(go).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    time.sleep({pace})

stage, train_with_callback = _with_callback(paced)
stage.train = train_with_callback
stage.train_rgb(out, manifest=manifest, scene_load=SceneLoadConfig(), cfg=_tiny_rgb_config(), seed=0)
"""
PACE_S = 0.05  # per step: with the steps' own time, a checkpoint every 20 steps lands every 1-2 s


def _wait_for(what, predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what}: the training ended first:\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


@pytest.mark.browser
def test_live_view_follows_a_training_in_chromium(browser, tiny_scene_dir, tmp_path):  # noqa: F811
    """A tiny training in the background, `ccl view` opened on its first partial checkpoint: the page's
    step counter advances at least twice with the PSNR so far, then the page says 'trained' and draws
    the final field; the training ends as it would without the page."""
    from ccl.scene import SceneLoadConfig, load_scene_from_manifest
    from ccl.splat.checkpoint import partial_path

    scene_dir, manifest, out = _results_folder(tiny_scene_dir, tmp_path)
    go = tmp_path / "go"
    script = TRAIN.format(tests=str(Path(__file__).parent), every=EVERY, pace=PACE_S)
    train = subprocess.Popen(
        [sys.executable, "-c", script, str(out), str(manifest), str(go)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    view = None
    try:
        _wait_for("the first partial checkpoint", partial_path(out).is_file, 60, train)
        cam = load_scene_from_manifest(manifest, cfg=SceneLoadConfig()).cameras[0]
        view, url = _start_view(scene_dir, tmp_path, cam.name)
        note = f"note: colour field still training: the partial checkpoint at step {EVERY} of {ITERATIONS}"
        assert note in view.printed, view.printed  # the console says so too
        page = open_page(browser, url)
        page.get_by_text(f"training: step {EVERY} of {ITERATIONS}").wait_for(timeout=30_000)
        first = _settled_shot(page)
        go.touch()  # training goes on
        steps, t0 = [EVERY], time.monotonic()
        text = ""
        while time.monotonic() - t0 < 60:
            text = page.locator("body").inner_text()
            if f"trained: {ITERATIONS} steps" in text:
                break
            m = re.search(rf"training: step (\d+) of {ITERATIONS}, PSNR (\S+) dB", text)
            if m and int(m.group(1)) != steps[-1]:
                assert int(m.group(1)) > steps[-1], (m.group(0), steps)  # the counter only advances
                assert math.isfinite(float(m.group(2))), m.group(0)
                steps.append(int(m.group(1)))
            page.wait_for_timeout(100)
        assert re.search(rf"trained: {ITERATIONS} steps, PSNR \d+\.\d\d dB \(held-out views\)", text), text
        assert len(steps) >= 3, steps  # step 20 and at least two newer checkpoints shown
        final = _settled_shot(page, unlike=first)  # the final field drawn, not the first checkpoint
        assert final.std() > 5
        page.close()
        assert train.wait(60) == 0
    finally:
        go.touch()
        if train.poll() is None:
            train.kill()
        log = _stop(view) if view is not None else ""
    assert "Traceback" not in log, log
    assert out.is_file() and not partial_path(out).exists()
    print(f"steps shown: {steps}")


def test_a_path_rendered_from_a_field_still_training_says_so(tiny_view_results, tmp_path, capsys):
    """`ccl render --path` on a results folder whose sp field has only its partial checkpoint: the video
    is drawn from it, and the command says which step it shows (as ccl view and ccl export do)."""
    import shutil

    from ccl.cli import main
    from ccl.splat.checkpoint import load_language_field

    scene_dir = tmp_path / "tiny"
    shutil.copytree(tiny_view_results["scene_dir"], scene_dir)
    final = scene_dir / "seed0" / "gaussians" / "full" / "sp.safetensors"
    _write_language_partial(final, load_language_field(final), step=50, accuracy=0.61)
    final.unlink()
    out = tmp_path / "frames"
    args = ["render", str(scene_dir), "--path", "orbit", "--what", "relevance", "--text", "red mug",
            "--scale", "sp", "--frames", "2", "-o", str(out)]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "still training: the partial checkpoint at step 50 of 100" in printed, printed
    assert "the frames show it as it stands now" in printed
    assert len(list(out.glob("*.png"))) == 2
