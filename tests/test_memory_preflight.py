"""The preflight's memory estimate (ccl.memory) met where a user meets it: a dry run of 4000 x 3000
photos with the real backends warns, naming the keys that lower memory, when scene_load.max_image_side
is lifted (0: SAM's logits at full size exceed sam_masks' 16 GB), and is silent at the default (1600)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image
from realpath.tiny_checkpoints import write_tiny_checkpoints
from workflow_testkit import repo_copy, snakemake

from ccl.memory import sam_masks_bytes


def test_the_sam_estimate_matches_its_derivation_at_988_x_731():
    # AUTO_POINTS_PER_BATCH's figure: 256 prompts, about 5.5 GB of float32 logits on the GPU
    _, gpu = sam_masks_bytes((988, 731), points_per_batch=256, cuda=True)
    assert 5.4e9 < gpu < 7e9


@pytest.fixture(scope="module")
def big_photos_repo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("memory")
    repo = repo_copy(tmp / "repo")
    photos = repo / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    for i in range(3):  # headers are all the preflight reads
        Image.fromarray(small).resize((4000, 3000)).save(photos / f"p{i}.jpg", quality=50)
    sections = write_tiny_checkpoints(repo / "models")
    config = {
        "device": "cpu",
        "scenes": {"big": {"source": "images", "path": "photos", "protocol": "none"}},
        "codebook": {"n_prototypes": 16},
        **sections,
    }
    (repo / "big.yaml").write_text(yaml.safe_dump(config))
    return repo


def test_full_size_4000_x_3000_photos_are_warned_with_the_keys(big_photos_repo):
    r = snakemake(
        big_photos_repo, "--configfile", "big.yaml", "--config", "scene_load={max_image_side: 0}", "-n"
    )
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.startswith("ccl-lgs memory")]
    assert len(warned) == 1, r.stderr  # SAM's masks; tracks and features fit their rules
    line = warned[0]
    for part in ("big.yaml", "'big'", "masks at 4000 x 3000 px", "sam_masks's mem_mb 16000",
                 "scene_load.max_image_side", "masks.points_per_batch", "--set-resources sam_masks:mem_mb"):  # fmt: skip
        assert part in line, (part, line)


def test_the_default_max_image_side_is_not_warned(big_photos_repo):
    r = snakemake(big_photos_repo, "--configfile", "big.yaml", "-n")
    assert r.returncode == 0, r.stderr
    assert "ccl-lgs memory" not in r.stderr + r.stdout


def test_each_snakemake_line_is_printed_once_with_the_real_backends(big_photos_repo):
    # open_clip logs through the root logger, which configured it (a stderr handler) at the preflight's
    # checkpoint check: every Snakemake line was then printed twice, "INFO:snakemake.logging:None"
    # and "Shell command: None" among them
    r = snakemake(big_photos_repo, "--configfile", "big.yaml", "-n")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "snakemake.logging" not in out and "Shell command: None" not in out, out
    for line in ("Building DAG of jobs...", "rule sam_masks:", "    log: logs/sam_masks/big.log"):
        assert out.splitlines().count(line) == 1, (line, out)
