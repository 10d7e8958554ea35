"""The mapping stage's progress (ccl.sfm._colmap.incremental_mapping) with pycolmap's mapper replaced by
one that calls the callbacks as COLMAP does: the initial pair after a slow search, a slow first image,
then one callback per registered image. The clock of the time-left estimate starts at that first image
(the pair and it are the meter's initial 3), so neither one-off cost is in the per-image rate
(bench.sfm_progress measured they made the estimate 2-3x too long); another model's pair counts its 2
images; the last line reports the total."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pycolmap  # a required dependency: a broken install fails here, it is not skipped

from ccl.runlog import PROGRESS_EVERY_ENV, script_logging

SEARCH_S = 1.0  # the initial pair's search: slow, once
FIRST_S = 0.5  # the first image after the pair: slower than the next ones
IMAGE_S = 0.01  # each next image


def _fake_mapping(models: list[int]):
    """A mapper that builds one model per entry of `models` (its images, pair included)."""

    def incremental_mapping(database, image_path, output_path, *, options, initial_image_pair_callback=None,
                            next_image_callback=None):  # fmt: skip
        time.sleep(SEARCH_S)
        for n in models:
            if initial_image_pair_callback is not None:
                initial_image_pair_callback()
            for i in range(n - 2):
                time.sleep(FIRST_S if (n, i) == (models[0], 0) else IMAGE_S)
                if next_image_callback is not None:
                    next_image_callback()
        return {}

    return incremental_mapping


def _lines(tmp_path, monkeypatch, models: list[int], n_images: int) -> list[str]:
    from ccl.sfm import _colmap

    monkeypatch.setenv(PROGRESS_EVERY_ENV, "0.000001")  # every step reports
    monkeypatch.setattr(pycolmap, "incremental_mapping", _fake_mapping(models))
    log = tmp_path / "poses.log"
    job = SimpleNamespace(log=[str(log)], output=[], threads=1, rule="poses", wildcards={"scene": "room"})
    with script_logging(job):
        _colmap.incremental_mapping(
            tmp_path / "db", tmp_path, tmp_path / "out", options=None, n_images=n_images
        )
    return [
        line.split("ccl.progress: ", 1)[1]
        for line in log.read_text().splitlines()
        if "ccl.progress: " in line
    ]


def test_mapping_counts_from_the_initial_pair_and_leaves_the_one_off_costs_out_of_the_estimate(
    tmp_path, monkeypatch
):
    lines = _lines(tmp_path, monkeypatch, [12], n_images=12)
    first = lines[0]  # 4 of 12 done: the pair, the first image, then one of IMAGE_S on the clock
    m = re.fullmatch(r"poses room: 4/12 registered images, .+, ~([\d.]+) (s|min) left", first)
    assert m, lines
    # 8 images left at IMAGE_S each (0.08 s); with the first image in the rate it would say 4 s, with
    # the pair's search too 4.5 s (the clock from the pair) or 2.6 s (the pair counted as an image)
    assert m.group(2) == "s" and float(m.group(1)) < FIRST_S, first
    assert re.fullmatch(r"poses room: 12/12 registered images, .+, done in [\d.]+ s", lines[-1]), lines[-1]
    assert len(lines) == 9  # 4/12 … 11/12, then the last line


def test_a_second_models_pair_counts_its_two_images(tmp_path, monkeypatch):
    lines = _lines(tmp_path, monkeypatch, [6, 4], n_images=10)
    counts = [int(re.match(r"poses room: (\d+)/10", line).group(1)) for line in lines]
    assert counts == [4, 5, 6, 8, 9, 10], lines
