"""Running the workflow as its user does: from a copy of the repository root, with the README's commands.

`repo_copy` copies what a clone holds (the workflow, configs, profiles and config.yaml; the `ccl`
package is the installed one), so that a test sees config.yaml in the working directory exactly as a
user running `.venv/bin/snakemake …` in the repository root does, and writes nothing into the checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ccl.config import REPO_ROOT

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
# What a run reads from the repository root; outputs, caches and the venv stay behind.
REPO_ENTRIES = ("Snakefile", "config.yaml", "configs", "workflow", "profiles")


def repo_copy(dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in REPO_ENTRIES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


def snakemake(
    cwd: Path, *args: str, timeout: int = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`snakemake ARGS` run in `cwd`, as the README writes it (no --snakefile, no --directory); `env` is
    added to this process's environment."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def job_counts(stdout: str) -> dict[str, int]:
    """The `Job stats:` table of a (dry) run: rule name → job count."""
    import re

    table = stdout[stdout.index("Job stats:") :]
    table = table[: table.index("total")]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)}


# --- minimal scenes in the benchmarks' layouts, enough for a plan (preflight reads them) --------------


def minimal_lerf_ovs_scene(
    data_root: Path, name: str, *, n_views: int = 8, label_frames=("frame_00001",)
) -> None:
    """<data_root>/<name>/images + sparse/0 (binary) and <data_root>/label/<name>/frame_XXXXX.json."""
    import json

    from scene.scene_testkit import H, W, make_colmap_scene

    make_colmap_scene(data_root / name, n=n_views, fmt="bin")
    labels = data_root / "label" / name
    labels.mkdir(parents=True)
    square = [[4.0, 4.0], [20.0, 4.0], [20.0, 20.0], [4.0, 20.0]]
    for frame in label_frames:
        doc = {
            "info": {"name": f"{frame}.jpg", "width": W, "height": H},
            "objects": [{"category": "cube", "segmentation": square, "bbox": [4, 4, 20, 20], "iscrowd": 0}],
        }
        (labels / f"{frame}.json").write_text(json.dumps(doc))


def minimal_3dovs_scene(data_root: Path, name: str, *, n_views: int = 8, label_views=(0,)) -> None:
    """<data_root>/<name>/images + sparse/0 and segmentations/ (classes.txt, <view>/<class>.png)."""
    import cv2
    import numpy as np
    from scene.scene_testkit import H, W, make_colmap_scene

    make_colmap_scene(data_root / name, n=n_views, fmt="bin")
    seg = data_root / name / "segmentations"
    seg.mkdir()
    (seg / "classes.txt").write_text("cube\n")
    for view in label_views:
        (seg / f"{view:02d}").mkdir()
        mask = np.zeros((H, W), np.uint8)
        mask[4:20, 4:20] = 255
        assert cv2.imwrite(str(seg / f"{view:02d}" / "cube.png"), mask)


def checkpoint_files(root: Path, config: dict) -> None:
    """Checkpoints where `config` names them (relative to `root`), in the official file formats, holding
    the configured models' tensor names and shapes (the preflight checks both) with no data: each tensor
    is one zero broadcast to its shape, so a vit_h file is a few kB. No job of a plan reads them."""
    import importlib

    import torch

    from ccl.config import section, section_dataclass
    from ccl.preflight import REAL_BACKEND_MODULES

    wrap = {"tracks": lambda sd: {"model": sd}}  # sam2's files hold {"model": state_dict}
    for stage, key in (
        ("masks", "sam_checkpoint"),
        ("tracks", "sam2_checkpoint"),
        ("features", "pretrained"),
    ):
        cfg = section(section_dataclass(stage), config[stage])
        shapes = importlib.import_module(REAL_BACKEND_MODULES[stage]).expected_weight_shapes(cfg)
        state = {k: torch.zeros(()).expand(shape) for k, shape in shapes.items()}
        path = root / config[stage][key]
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(wrap.get(stage, lambda sd: sd)(state), path)
