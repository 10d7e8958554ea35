"""The closing message names what the run built and where; tables only when they were rebuilt."""

from __future__ import annotations

import os
import time

from ccl.run_summary import closing_message


def _touch(root, rel, mtime):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x")
    os.utime(path, (mtime, mtime))


def test_one_checkpoint_built_is_named_and_no_table_is_announced(tmp_path):
    started = time.time()
    _touch(tmp_path, "tables/table1.md", started - 100)  # an earlier run's
    _touch(tmp_path, "ramen/masks/raw.h5", started - 100)
    _touch(tmp_path, "ramen/seed0/gaussians/rgb.safetensors", started + 1)
    _touch(tmp_path, "ramen/seed0/gaussians/rgb.metrics.json", started + 1)
    msg = closing_message(tmp_path, started)
    assert "results/ramen/seed0/gaussians/rgb.safetensors" in msg and "rgb.metrics.json" in msg
    assert "raw.h5" not in msg and "table" not in msg and "report" not in msg


def test_a_whole_run_is_counted_per_stage_and_names_the_tables(tmp_path):
    started = time.time()
    for rel in ("masks/raw.h5", "masks/sp.h5", "tracks/sp.h5", "features/sp.h5"):
        _touch(tmp_path, f"ramen/{rel}", started + 1)
    for seed in (0, 2):  # config `seeds: [0, 2]`: a run each (results/<scene>/seed<N>)
        _touch(tmp_path, f"ramen/seed{seed}/gaussians/rgb.safetensors", started + 1)
    for rel in ("table1.md", "table1.csv", "efficiency.md"):
        _touch(tmp_path, f"tables/{rel}", started + 1)
    msg = closing_message(tmp_path, started)
    assert (
        "ramen: 6 files in results/ramen/: masks (2), tracks (1), features (1), gaussians (2); runs of seed 0, 2"
        in msg
    )
    assert "results/tables/table1.md" in msg and "results/tables/efficiency.md" in msg
    assert "snakemake --report results/report.html" in msg


def test_nothing_new(tmp_path):
    _touch(tmp_path, "ramen/masks/raw.h5", time.time() - 100)
    assert "nothing new was built" in closing_message(tmp_path, time.time())
    assert "nothing new was built" in closing_message(tmp_path / "absent", time.time())


def test_the_closing_commands_run_as_written_and_the_rebuilt_tables_are_printed(tmp_path):
    started = time.time()
    results = tmp_path / "results"
    _touch(results, "ramen/seed0/eval/full/queries.csv", started + 1)
    table = results / "tables" / "table1.md"
    _touch(results, "tables/table1.md", started + 1)
    table.write_text("| method | mIoU |\n|---|---|\n| full | 41.2 |\n")
    os.utime(table, (started + 1, started + 1))
    msg = closing_message(
        results, started, snakemake=".venv/bin/snakemake", configfiles="configs/lerf_ovs.yaml"
    )
    assert ".venv/bin/snakemake --report results/report.html --configfile configs/lerf_ovs.yaml" in msg
    assert "| full | 41.2 |" in msg  # the table itself reaches the console
