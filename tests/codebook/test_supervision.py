"""Degenerate supervision (ccl.codebook.supervision): what the labels offer the pair terms, recorded by
fit_codebook, warned about on the console, carried into queries.csv and marked in the tables."""

from __future__ import annotations

import json
import logging
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from h5_testkit import rewritten_h5
from test_fit import CFG, FRAMES, write_inputs

from ccl.codebook import diagnostics_path, fit_codebook, read_codebook
from ccl.codebook.config import VARIANT_TERMS
from ccl.codebook.ops import PairSampler
from ccl.codebook.supervision import read_codebook_supervision, supervision_of
from ccl.eval import QueryRow, build_tables, rows_to_csv
from ccl.eval.pipeline import codebook_supervision, mark_degenerate_supervision
from ccl.runlog import script_logging

N_MASKS = 240  # write_inputs' default
ALL_UNMATCHED = np.full(N_MASKS, -1, np.int32)
ONE_TRACK = np.zeros(N_MASKS, np.int32)  # every mask on track 0: same-label pairs, no different-label pair
TWO_SINGLE_MASK_TRACKS = np.full(N_MASKS, -1, np.int32)  # two tracks of one mask each: the reverse
TWO_SINGLE_MASK_TRACKS[[0, 100]] = [0, 1]


def _pairs_by_brute_force(labels: np.ndarray) -> tuple[int, int]:
    """(same-label, different-label) unordered pairs of labelled masks, one pair at a time."""
    same = different = 0
    for i in range(len(labels)):
        for k in range(i + 1, len(labels)):
            if labels[i] >= 0 and labels[k] >= 0:
                same += int(labels[i] == labels[k])
                different += int(labels[i] != labels[k])
    return same, different


LABEL_CASES = {
    "none": np.zeros(0, np.int32),
    "all_unmatched": np.full(5, -1),
    "one_track": np.array([0, 0, 0, -1]),
    "two_single_mask_tracks": np.array([0, 1, -1]),
    "one_mask": np.array([4]),
    "mixed": np.array([3, 3, 1, -1, 7, 7, 7]),
    "random": np.random.default_rng(0).integers(-1, 5, 200),
}


@pytest.mark.parametrize("name", list(LABEL_CASES))
def test_counts_equal_brute_force_and_the_sampler_agrees(name):
    labels = LABEL_CASES[name]
    sup = supervision_of(labels)
    same, different = _pairs_by_brute_force(labels)
    assert (sup.same_label_pairs, sup.different_label_pairs) == (same, different)
    assert sup.labelled_masks == int((labels >= 0).sum())
    assert sup.same_label_pairs_possible == (same > 0)
    assert sup.different_label_pairs_possible == (different > 0)
    # the sampler that draws the pairs has pairs exactly when the definition says so
    sampler = PairSampler.from_labels(labels)
    assert sampler.has_positive == sup.same_label_pairs_possible
    assert sampler.has_negative == sup.different_label_pairs_possible


@pytest.mark.parametrize(
    "labels, degenerate_variants",
    [
        (LABEL_CASES["all_unmatched"], {"full": ("pull", "push"), "pull": ("pull",), "push": ("push",)}),
        (LABEL_CASES["one_track"], {"full": ("push",), "push": ("push",)}),
        (LABEL_CASES["two_single_mask_tracks"], {"full": ("pull",), "pull": ("pull",)}),
        (LABEL_CASES["mixed"], {}),
    ],
)
def test_a_variant_is_degenerate_when_a_term_it_asks_for_has_no_pairs(labels, degenerate_variants):
    sup = supervision_of(labels)
    for variant, (pull, push) in VARIANT_TERMS.items():
        missing = sup.terms_without_pairs(pull=pull, push=push)
        assert missing == degenerate_variants.get(variant, ()), variant
        assert (sup.why(missing) is None) == (not missing)
    assert sup.terms_without_pairs(pull=False, push=False) == ()  # base never is


# ------------------------------------------------------------------------------------- fit_codebook


def _fit(tmp_path, labels, variant, *, scale="sp", tag=""):
    f_path, t_path, _ = write_inputs(
        tmp_path, labels=labels, masks_file=f"/data/results/s/masks/{scale}.h5", tag=tag
    )
    out = tmp_path / "results" / "s" / "seed0" / "codebook" / variant / f"{scale}.h5"
    fit_codebook(f_path, t_path, variant=variant, cfg=CFG, out_path=out, seed=0, device="cpu")
    return out, json.loads(diagnostics_path(out).read_text())["supervision"]


def test_all_unmatched_labels_record_degenerate_with_the_reason_and_warn(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ccl.codebook"):
        out, sup = _fit(tmp_path, ALL_UNMATCHED, "full")
    assert sup["degenerate"] is True and sup["terms_without_pairs"] == ["pull", "push"]
    assert sup["trained_as"] == "base"
    assert (sup["labelled_masks"], sup["tracks"], sup["same_label_pairs"], sup["different_label_pairs"]) == (
        0, 0, 0, 0,
    )  # fmt: skip
    assert sup["same_label_pairs_possible"] is False and sup["different_label_pairs_possible"] is False
    assert "every mask's track label is -1" in sup["why"]
    assert "matched no mask to a first-frame mask" in sup["likely_cause"]
    assert "tracks.iou_thresh" in sup["likely_cause"]
    # the codebook file carries the same record, and its reader (evaluation's) says degenerate
    assert read_codebook(out).model["supervision"] == sup
    assert read_codebook_supervision(out)["degenerate"] is True
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, caplog.text
    msg = warnings[0].getMessage()
    assert msg.startswith("scene s, scale sp, variant full: degenerate track supervision")
    assert "the 'base' variant's" in msg and str(diagnostics_path(out)) in msg
    assert "check tracks.iou_thresh" in msg


def test_the_warning_reaches_the_console_inside_a_job(tmp_path, capsys):
    log = tmp_path / "logs" / "train_codebook" / "s_full_sp.log"
    job = SimpleNamespace(
        log=[str(log)], threads=None, rule="train_codebook",
        wildcards={"scene": "s", "variant": "full", "scale": "sp"},
    )  # fmt: skip
    with script_logging(job):
        _fit(tmp_path, ALL_UNMATCHED, "full")
    console = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(console) == 1, console
    assert console[0].startswith(
        "train_codebook s full sp: WARNING: scene s, scale sp, variant full: degenerate track supervision"
    )
    assert "WARNING ccl.codebook.fit: scene s, scale sp, variant full: degenerate" in log.read_text()


def test_a_healthy_fit_is_not_degenerate_and_says_nothing(tmp_path, caplog, capsys):
    with caplog.at_level(logging.WARNING, logger="ccl.codebook"):
        out, sup = _fit(tmp_path, None, "full")  # clustered tracks, some masks unmatched
    assert sup["degenerate"] is False and sup["terms_without_pairs"] == []
    assert sup["why"] is None and sup["likely_cause"] is None and sup["trained_as"] == "full"
    assert sup["same_label_pairs"] > 0 and sup["different_label_pairs"] > 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert read_codebook_supervision(out) == {
        "variant": "full", "terms_without_pairs": [], "degenerate": False, "why": None, "likely_cause": None,
    }  # fmt: skip


def test_base_on_unmatched_labels_is_not_degenerate(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ccl.codebook"):
        out, sup = _fit(tmp_path, ALL_UNMATCHED, "base")
    assert sup["degenerate"] is False and sup["labelled_masks"] == 0  # asks for no pair term
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_one_track_only_leaves_push_without_pairs(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ccl.codebook"):
        full, sup = _fit(tmp_path, ONE_TRACK, "full")
    assert sup["degenerate"] is True and sup["terms_without_pairs"] == ["push"]
    assert sup["trained_as"] == "pull" and sup["tracks"] == 1
    assert sup["same_label_pairs_possible"] is True and sup["different_label_pairs_possible"] is False
    assert "only one track" in sup["why"] and "single mask" in sup["likely_cause"]
    assert (
        "variant full: degenerate" in caplog.text
        and "L_push had nothing to act on and was off" in caplog.text
    )
    # full without push is the pull variant, exactly; pull itself had its pairs: not degenerate
    pull, pull_sup = _fit(tmp_path, ONE_TRACK, "pull")
    assert pull_sup["degenerate"] is False
    assert np.array_equal(read_codebook(full).prototypes, read_codebook(pull).prototypes)


def test_two_tracks_of_one_mask_each_leave_pull_without_pairs(tmp_path):
    full, sup = _fit(tmp_path, TWO_SINGLE_MASK_TRACKS, "full")
    assert sup["degenerate"] is True and sup["terms_without_pairs"] == ["pull"]
    assert sup["trained_as"] == "push" and (sup["tracks"], sup["multi_mask_tracks"]) == (2, 0)
    assert (sup["same_label_pairs"], sup["different_label_pairs"]) == (0, 1)
    assert "no track has 2 masks" in sup["why"]
    assert "matched no mask of another frame to a first-frame track" in sup["likely_cause"]
    push, push_sup = _fit(tmp_path, TWO_SINGLE_MASK_TRACKS, "push")
    assert push_sup["degenerate"] is False
    assert np.array_equal(read_codebook(full).prototypes, read_codebook(push).prototypes)


def test_an_empty_first_frame_is_named_as_the_cause(tmp_path):
    # what track_masks writes when the first frame has no masks: every label -1 and a note
    f_path, t_path, _ = write_inputs(tmp_path, labels=ALL_UNMATCHED)
    with rewritten_h5(t_path) as t:
        t.attrs["model"] = json.dumps(
            {"backend": "sim", "simulated": True, "note": f"its first frame {FRAMES[0]} has no masks"}
        )
        t.attrs["n_tracks"] = 0
    out = tmp_path / "cb.h5"
    fit_codebook(f_path, t_path, variant="full", cfg=CFG, out_path=out, seed=0, device="cpu")
    sup = json.loads(diagnostics_path(out).read_text())["supervision"]
    assert sup["degenerate"] is True
    assert f"its first frame {FRAMES[0]} has no masks" in sup["likely_cause"]


# ------------------------------------------------------------------------------ through to the tables


def _rows(variant: str, scale_set: tuple[str, ...], iou: float) -> list[QueryRow]:
    s = "+".join(scale_set)
    return [QueryRow("s", variant, 0, f, "egg", "lerf_ovs", "paper", s, scale_set[0], scale_set[0], iou, 1.0, 0.4)
            for f in FRAMES[:2]]  # fmt: skip


def test_table2_marks_the_variant_a_degenerate_fit_made(tmp_path):
    # sp: every label -1 (full degenerate there); wp: healthy tracks. base is never marked.
    csvs = []
    for variant in ("base", "full"):
        codebooks = {
            "sp": _fit(tmp_path, ALL_UNMATCHED, variant, scale="sp", tag="sp_")[0],
            "wp": _fit(tmp_path, None, variant, scale="wp", tag="wp_")[0],
        }
        supervision = codebook_supervision(codebooks)
        rows = mark_degenerate_supervision(_rows(variant, ("sp", "wp"), 0.5) + _rows(variant, ("wp",), 0.4),
                                           supervision)  # fmt: skip
        assert {r.scales: r.supervision_degenerate_scales for r in rows} == (
            {"sp+wp": "sp", "wp": ""} if variant == "full" else {"sp+wp": "", "wp": ""}
        )
        csv = tmp_path / "results" / "s" / "seed0" / "eval" / variant / "queries.csv"
        csv.parent.mkdir(parents=True, exist_ok=True)
        csv.write_text(rows_to_csv(rows))
        csvs.append(csv)
    out = tmp_path / "tables"
    build_tables(csvs, out)  # from the CSVs alone
    t2 = pd.read_csv(out / "table2.csv", keep_default_na=False)
    assert dict(zip(t2["variant"], t2["supervision_degenerate"], strict=True)) == {
        "base": "",
        "full": "s: sp",
    }
    md = (out / "table2.md").read_text()
    assert "| full† | paper |" in md and "| base | paper |" in md
    assert "† variant full, mode paper: degenerate track supervision in s: sp" in md


def test_evaluation_reads_codebooks_without_the_record(tmp_path):
    # before the record: terms_trained alone tells a degenerate fit (its variant's terms off)
    out, _ = _fit(tmp_path, ALL_UNMATCHED, "full")
    with rewritten_h5(out) as f:
        model = json.loads(f.attrs["model"])
        del model["supervision"]
        f.attrs["model"] = json.dumps(model)
    assert read_codebook_supervision(out) == {
        "variant": "full", "terms_without_pairs": ["pull", "push"], "degenerate": True, "why": None,
        "likely_cause": None,
    }  # fmt: skip
    # a codebook not written by fit_codebook (no variant, no terms): unknown, never marked
    from ccl.io.h5 import write_h5

    bare = tmp_path / "bare.h5"
    with write_h5(bare, kind="codebook", format_version=1, params={}) as f:
        f.create_dataset("prototypes", data=np.eye(2, dtype=np.float32))
    record = read_codebook_supervision(bare)
    assert record["degenerate"] is None and "not written by rule train_codebook" in record["why"]
    assert (
        mark_degenerate_supervision(_rows("full", ("sp",), 0.5), {"sp": record})[
            0
        ].supervision_degenerate_scales
        == ""
    )
