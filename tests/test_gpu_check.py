"""bench/gpu_check.py, which `make gpu-check` runs on a GPU machine, exercised here with tiny models on
the CPU (`--device cpu --tiny`): every stage's code path runs, the table and the JSON come out with a
projection for a LERF scene beside the paper's Table 4; without CUDA its default run stops, saying so."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ccl.config import REPO_ROOT

STAGES = {
    "masks: SAM vit_h (tiny)": ("preprocessing", "frame", 300),
    "masks: SAM vit_h (tiny), SAM's own steps": ("", "frame", 300),
    "colour field step": ("training", "iteration", 30_000),
    "tracks: SAM2 hiera_l (tiny)": ("preprocessing", "frame", 600),
    "features: OpenCLIP ViT-B-16 (tiny)": ("preprocessing", "crop", 36_000),
    "rasterize 3 ch fwd+bwd": ("", "iteration", 30_000),
    "rasterize 8 ch fwd+bwd": ("", "iteration", 60_000),
    "language field iterations": ("training", "iteration", 60_000),
}


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=timeout, env=env,
    )  # fmt: skip


def test_the_tiny_cpu_run_times_every_stage_and_projects_a_lerf_scene(tmp_path):
    out = tmp_path / "gpu_check.json"
    r = _run("--device", "cpu", "--tiny", "--out", str(out))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["failed"] == {} and report["skipped_for_budget"] == []
    got = {t["stage"]: t for t in report["timings"]}
    assert set(got) == set(STAGES)
    for stage, (group, unit, units) in STAGES.items():
        t = got[stage]
        assert (t["group"], t["unit"], t["lerf_units"]) == (group, unit, units), stage
        assert 0 < t["per_unit_s"] <= t["measured_s"] + 1e-12, stage
        assert t["projected_s"] == pytest.approx(t["per_unit_s"] * units)
    preprocessing = sum(t["projected_s"] for t in got.values() if t["group"] == "preprocessing")
    assert f"{preprocessing / 60:.1f} min" in report["table"] or f"{preprocessing:.3g} s" in report["table"]
    for line in ("= preprocessing", "16 min", "= training", "74 min", "= total", "90 min"):
        assert line in report["table"] and line in r.stdout
    assert report["environment"]["device"] == "cpu" and report["sizes"]["n_gaussians"] == 2_000
    # each row says what it ran in: on a CPU the models' bf16/fp16 precision is float32 (ccl.device)
    assert {t["dtype"] for t in got.values()} == {"float32"}
    assert "ran in float32" in got["masks: SAM vit_h (tiny)"]["what"]
    header, rule, *rows = report["table"].splitlines()
    assert header.split()[:3] == ["stage", "ran", "in"]
    for stage in STAGES:
        assert next(r for r in rows if r.startswith(stage + " ")).split(stage, 1)[1].split()[0] == "float32"
    projection = report["lerf_projection"]
    assert projection["total_s"] == pytest.approx(preprocessing + projection["training_s"])
    assert projection["target_s"] == 1800 and projection["meets_target"] == (projection["total_s"] <= 1800)
    assert "colour field step" in projection["rows"]["training"]

    sam = report["sam"]
    assert sam["thresholds"]["pred_iou_thresh"] == 0.5 and sam["thresholds"]["stability_score_thresh"] == 0
    fast, before = sam["paths"]["fast"], sam["paths"]["before"]
    assert sam["speedup"] == pytest.approx(before["per_frame_s"] / fast["per_frame_s"])
    for path, encoder_passes in ((before, 5), (fast, 2)):  # 1 + 4 crops; one batch per crop layer
        parts = path["parts"]
        assert parts["encoder passes"]["calls"] == encoder_passes
        assert parts["post: RLE encoding"]["items"] > 50  # the opened thresholds keep candidates
        for part in ("decoder (prompts, transformer, mask upsampling)", "post: stability score",
                     "post: box and crop NMS", "post: mask NMS (LangSplat's)"):  # fmt: skip
            assert parts[part]["seconds"] > 0, part
        assert sum(p["seconds"] for p in parts.values()) == pytest.approx(path["profiled_frame_s"])
    assert [lv["masks"] for lv in sam["fast_against_before"]["levels"]] == before["masks_kept_per_level"]

    rgb = report["rgb_step"]
    assert rgb["lerf_refinements"] == 144 and rgb["gaussians_start"] == 2_000
    for part in ("render (rasterization forward)", "loss: SSIM (forward)", "backward (rasterization, SSIM, L1)",
                 "Adam", "densification (gsplat's strategy hooks)"):  # fmt: skip
        assert rgb["parts_per_step"][part]["seconds"] > 0, part


def test_the_part_timer_splits_wall_time_into_exclusive_parts():
    import time

    from bench.stage_profile import PartTimer

    timer = PartTimer("cpu")
    inner = timer.wrap("inner", lambda: time.sleep(0.02))

    def outer_fn():
        time.sleep(0.01)
        inner()

    outer = timer.wrap("outer", outer_fn)
    with timer.run() as wall:
        outer()
        time.sleep(0.01)
    outer()  # not active: not counted
    split = timer.split(wall[0])
    assert split["inner"]["seconds"] == pytest.approx(0.02, abs=0.01)
    assert split["outer"]["seconds"] == pytest.approx(0.01, abs=0.01)  # without the inner call's
    assert split["other"]["seconds"] == pytest.approx(0.01, abs=0.01)
    assert sum(p["seconds"] for p in split.values()) == pytest.approx(wall[0])
    assert timer.calls == {"inner": 1, "outer": 1}


def test_without_cuda_the_gpu_run_stops_saying_so(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the default run would start")
    r = _run("--out", str(tmp_path / "x.json"), timeout=60)
    assert r.returncode == 2 and "torch sees no CUDA device" in r.stdout and "--device cpu --tiny" in r.stdout
    assert not (tmp_path / "x.json").exists()


def test_the_cuda_tests_run_with_the_dag_last_and_are_reported():
    import torch

    if torch.cuda.is_available():  # they would run in full a second time: make gpu-check runs them
        pytest.skip("on a CUDA machine tests/cuda runs in full, directly and in make gpu-check")
    from bench.gpu_check import run_cuda_tests

    r = run_cuda_tests(timeout_s=120)
    assert r["returncode"] == 0, r["tail"]
    assert "passed" in r["summary"]
    lines = [
        line for line in r["tail"].splitlines() if "::" in line and ("PASSED" in line or "SKIPPED" in line)
    ]
    assert lines and "test_cuda_end_to_end" in lines[-1], lines[-3:]
