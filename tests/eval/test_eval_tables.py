"""Tables rebuilt from queries.csv files and benchmark TSVs only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ccl.eval import QueryRow, build_tables, rows_to_csv


def _rows(scene, variant, seed, ious, *, protocol="lerf_ovs", scales="sp+wp", hits=None, degenerate=""):
    hits = hits if hits is not None else [1.0] * len(ious)
    return [
        QueryRow(scene, variant, seed, f"frame_{i:05d}", f"q{i}", protocol, "paper", scales,
                 scales.split("+")[0], scales.split("+")[0] if protocol == "lerf_ovs" else "",
                 iou, h if protocol == "lerf_ovs" else float("nan"), 0.4, degenerate)
        for i, (iou, h) in enumerate(zip(ious, hits, strict=True))
    ]  # fmt: skip


def _write(tmp_path, scene, variant, rows):
    p = tmp_path / "results" / scene / f"seed{rows[0].seed if rows else 0}" / "eval" / variant / "queries.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(rows_to_csv(rows))
    return p


def test_table1_mean_over_pairs_then_scenes(tmp_path):
    a = _write(tmp_path, "ramen", "full", _rows("ramen", "full", 0, [0.2, 0.4], hits=[1, 0]))
    b = _write(tmp_path, "teatime", "full", _rows("teatime", "full", 0, [0.9]))
    c = _write(tmp_path, "ramen", "base", _rows("ramen", "base", 0, [0.1, 0.1]))
    out = tmp_path / "tables"
    build_tables([a, b, c], out, benchmarks=tmp_path / "benchmarks")
    t1 = pd.read_csv(out / "table1.csv")
    assert t1["variant"].tolist() == ["full"]
    assert "vs_base" not in t1.columns  # no base row among table1's: no paired difference to show
    assert t1.loc[0, "ramen"] == pytest.approx(30.0) and t1.loc[0, "teatime"] == pytest.approx(90.0)
    assert t1.loc[0, "mean"] == pytest.approx(60.0)  # mean of per-scene means, not of all pairs
    t2 = pd.read_csv(out / "table2.csv")
    assert t2["variant"].tolist() == ["base", "full"]  # ablation order
    assert np.isnan(t2.loc[0, "mean"])  # base was not run on teatime: no mean over a subset
    loc = pd.read_csv(out / "localization.csv")
    assert loc.loc[loc["variant"] == "full", "ramen"].item() == pytest.approx(50.0)
    md = (out / "table1.md").read_text()
    assert (
        "| variant | mode | ramen | teatime | mean |" in md and "| full | paper | 30.0 | 90.0 | 60.0 |" in md
    )
    assert not (out / "table5.csv").exists()


def test_several_seeds_give_mean_and_std(tmp_path):
    rows = (
        _rows("ramen", "full", 0, [0.5]) + _rows("ramen", "full", 1, [0.7]) + _rows("ramen", "full", 2, [0.6])
    )
    p = _write(tmp_path, "ramen", "full", rows)
    out = tmp_path / "t"
    build_tables([p], out)
    t1 = pd.read_csv(out / "table1.csv")
    assert t1.loc[0, "ramen"] == pytest.approx(60.0)
    assert t1.loc[0, "ramen_std"] == pytest.approx(10.0)  # sample std of 50, 70, 60
    assert t1.loc[0, "ramen_n"] == 3 and t1.loc[0, "seeds"] == "0 1 2"
    md = (out / "table1.md").read_text()
    assert "60.0 ± 10.0" in md and "Seeds: 0, 1, 2 (mean ± sample std over them)." in md
    assert "(n=" not in md  # every cell has every seed


def _seed_runs(tmp_path, scene, variant, ious_by_seed, **kw):
    """One queries.csv per seed, as the workflow writes them (results/<scene>/seed<N>/eval/<variant>)."""
    return [_write(tmp_path, scene, variant, _rows(scene, variant, seed, ious, **kw))
            for seed, ious in ious_by_seed.items()]  # fmt: skip


def test_ablation_rows_have_the_paired_difference_to_base(tmp_path):
    # base and full move together across seeds: the paired difference is steady (std 0) while each
    # variant's own spread is 10 points, which an unpaired comparison would read as noise
    paths = _seed_runs(tmp_path, "ramen", "base", {0: [0.40], 1: [0.60], 2: [0.50]})
    paths += _seed_runs(tmp_path, "ramen", "full", {0: [0.45], 1: [0.65], 2: [0.55]})
    paths += _seed_runs(tmp_path, "ramen", "pull", {0: [0.40], 1: [0.70]})  # seed 2 not run
    out = tmp_path / "t"
    build_tables(paths, out)
    t2 = pd.read_csv(out / "table2.csv").set_index("variant")
    assert t2.loc["full", "ramen_std"] == pytest.approx(10.0)
    assert t2.loc["full", "vs_base"] == pytest.approx(5.0) and t2.loc["full", "vs_base_std"] == pytest.approx(
        0.0
    )
    assert t2.loc["full", "vs_base_n"] == 3
    assert t2.loc["pull", "vs_base"] == pytest.approx(5.0)  # (0 + 10) / 2 over the seeds both have
    assert t2.loc["pull", "vs_base_std"] == pytest.approx(
        np.std([0.0, 10.0], ddof=1), abs=1e-3
    )  # CSV: 4 places
    assert t2.loc["pull", "vs_base_n"] == 2
    assert np.isnan(t2.loc["base", "vs_base"])
    md = (out / "table2.md").read_text()
    assert (
        "| variant | mode | supervision_degenerate | ramen | mean | Δ base |" not in md
    )  # note column hidden
    assert "| base | paper | 50.0 ± 10.0 | 50.0 ± 10.0 | – |" in md
    assert "| full | paper | 55.0 ± 10.0 | 55.0 ± 10.0 | +5.0 ± 0.0 |" in md
    assert "| pull | paper | 55.0 ± 21.2 (n=2) | 55.0 ± 21.2 (n=2) | +5.0 ± 7.1 |" in md
    loc = pd.read_csv(out / "localization.csv").set_index("variant")
    assert "vs_base" in loc.columns


def test_a_rebuild_over_different_seed_sets_says_which_cells_have_fewer(tmp_path, caplog):
    paths = _seed_runs(tmp_path, "ramen", "full", {0: [0.5], 1: [0.7], 2: [0.6]})
    paths += _seed_runs(tmp_path, "teatime", "full", {0: [0.9]})  # an older one-seed run
    out = tmp_path / "t"
    with caplog.at_level("WARNING", logger="ccl.eval.tables"):
        build_tables(paths, out)
    t1 = pd.read_csv(out / "table1.csv")
    row = t1.iloc[0]
    assert (row["ramen_n"], row["teatime_n"], row["seeds"]) == (3, 1, "0 1 2")
    assert row["seeds_missing"] == "teatime: 1, 2"
    # the mean over scenes exists only for the seed both scenes have
    assert row["mean"] == pytest.approx((50.0 + 90.0) / 2) and row["mean_n"] == 1
    md = (out / "table1.md").read_text()
    assert "| full | paper | 60.0 ± 10.0 | 90.0 (n=1) | 70.0 (n=1) |" in md
    assert "A cell with fewer than 3 seeds shows (n=k)" in md
    assert any("teatime: 1, 2" in r.getMessage() for r in caplog.records)


def test_table5_and_3dovs_room_apart(tmp_path):
    paths = [
        _write(
            tmp_path,
            "ramen",
            "full",
            _rows("ramen", "full", 0, [0.5]) + _rows("ramen", "full", 0, [0.3], scales="all"),
        ),
        _write(tmp_path, "bed", "full", _rows("bed", "full", 0, [0.8], protocol="3dovs")),
        _write(tmp_path, "room", "full", _rows("room", "full", 0, [0.2], protocol="3dovs")),
    ]
    out = tmp_path / "t"
    build_tables(paths, out)
    t5 = pd.read_csv(out / "table5.csv")
    assert t5["scales"].tolist() == ["sp+wp", "all"]
    assert t5["ramen"].tolist() == pytest.approx([50.0, 30.0])
    t1 = pd.read_csv(out / "table1.csv")
    assert t1.loc[0, "ramen"] == pytest.approx(50.0)  # the two-scale set, not `all`
    t3 = pd.read_csv(out / "table1_3dovs.csv")
    assert list(t3.columns[:6]) == ["variant", "mode", "supervision_degenerate", "bed", "mean", "room"]
    assert t3.loc[0, "mean"] == pytest.approx(80.0) and t3.loc[0, "room"] == pytest.approx(20.0)


def test_efficiency_from_benchmark_files(tmp_path):
    p = _write(tmp_path, "waldo_kitchen", "full", _rows("waldo_kitchen", "full", 0, [0.5]))
    bench = tmp_path / "benchmarks"
    head = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    for rule, name, s, rss in [
        ("masks", "waldo_kitchen", 10.0, 900.0),
        ("features", "waldo_kitchen_sp", 5.0, 1200.0),
        ("train_language", "waldo_kitchen_full_sp", 100.0, 3000.0),
        ("train_language", "waldo_kitchen_full_wp", 50.0, 2500.0),
        ("evaluate", "waldo_kitchen_full", 2.0, 500.0),
        ("masks", "waldo", 999.0, 1.0),  # another scene whose name is a prefix: not counted
    ]:
        (bench / rule).mkdir(parents=True, exist_ok=True)
        (bench / rule / f"{name}.tsv").write_text(head + f"{s}\t0:00:{s}\t{rss}\t0\t0\t0\t0\t0\t0\t{s}\n")
    out = tmp_path / "t"
    build_tables([p], out, benchmarks=bench)
    eff = pd.read_csv(out / "efficiency.csv")
    row = eff.iloc[0]
    assert row["scene"] == "waldo_kitchen"
    assert (row["preprocessing_s"], row["training_s"], row["evaluation_s"]) == (15.0, 150.0, 2.0)
    assert row["peak_rss_mb"] == 3000.0
    assert (out / "efficiency.md").read_text().startswith("### Efficiency")


def test_no_rows_is_an_error(tmp_path):
    p = tmp_path / "queries.csv"
    p.write_text(rows_to_csv([]))
    with pytest.raises(ValueError, match="no evaluation rows"):
        build_tables([p], tmp_path / "t")
    bad = tmp_path / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        build_tables([bad], tmp_path / "t")


def test_degenerate_supervision_is_marked_beside_the_variant(tmp_path):
    # full's codebook had no pairs for its pair terms at sp in ramen and at sp, wp in teatime (two seeds
    # in teatime, one of them degenerate at wp only); base and push had healthy codebooks.
    paths = [
        _write(tmp_path, "ramen", "full", _rows("ramen", "full", 0, [0.2, 0.4], degenerate="sp")),
        _write(tmp_path, "teatime", "full", _rows("teatime", "full", 0, [0.9], degenerate="sp")
               + _rows("teatime", "full", 1, [0.7], degenerate="wp")),
        _write(tmp_path, "ramen", "base", _rows("ramen", "base", 0, [0.2, 0.4])),
        _write(tmp_path, "teatime", "base", _rows("teatime", "base", 0, [0.9]) + _rows("teatime", "base", 1, [0.7])),
        _write(tmp_path, "ramen", "push", _rows("ramen", "push", 0, [0.1])),
    ]  # fmt: skip
    out = tmp_path / "tables"
    build_tables(paths, out)
    t2 = pd.read_csv(out / "table2.csv", keep_default_na=False)
    assert list(t2.columns[:3]) == ["variant", "mode", "supervision_degenerate"]
    assert dict(zip(t2["variant"], t2["supervision_degenerate"], strict=True)) == {
        "base": "", "push": "", "full": "ramen: sp; teatime: sp+wp",
    }  # fmt: skip
    md = (out / "table2.md").read_text()
    assert "| full† | paper |" in md and "| base | paper |" in md and "| push | paper |" in md
    footnotes = [line for line in md.splitlines() if line.startswith("†")]
    assert footnotes == [
        "† variant full, mode paper: degenerate track supervision in ramen: sp; teatime: sp+wp (scene: "
        "scales). The pair terms this variant asks for had no pairs to act on there and were off, so its "
        "numbers there are those of a variant without them, not an effect of the terms; why: `supervision` "
        "in results/{scene}/seed{N}/codebook/full/{scale}.diagnostics.json."
    ]
    assert "supervision_degenerate" not in md  # the Markdown says it with the mark, not a column
    # the headline table and localization say it too: they show the same runs of full
    t1 = pd.read_csv(out / "table1.csv", keep_default_na=False)
    assert t1.loc[0, "supervision_degenerate"] == "ramen: sp; teatime: sp+wp"
    assert "| full† | paper |" in (out / "table1.md").read_text()
    assert "| full† | paper |" in (out / "localization.md").read_text()


def test_healthy_runs_are_not_marked(tmp_path):
    a = _write(tmp_path, "ramen", "full", _rows("ramen", "full", 0, [0.2]))
    b = _write(tmp_path, "ramen", "base", _rows("ramen", "base", 0, [0.2]))
    out = tmp_path / "tables"
    build_tables([a, b], out)
    t2 = pd.read_csv(out / "table2.csv", keep_default_na=False)
    assert t2["supervision_degenerate"].tolist() == ["", ""]
    for name in ("table1", "table2", "localization"):
        assert "†" not in (out / f"{name}.md").read_text()


def test_a_queries_csv_without_the_supervision_column_is_refused(tmp_path):
    # written before the column existed: it cannot say whether its codebooks were degenerate
    p = _write(tmp_path, "ramen", "full", _rows("ramen", "full", 0, [0.2]))
    df = pd.read_csv(p)
    df.drop(columns=["supervision_degenerate_scales"]).to_csv(p, index=False)
    with pytest.raises(
        ValueError, match=r"missing columns \['supervision_degenerate_scales'\].*rerun rule evaluate"
    ):
        build_tables([p], tmp_path / "t")
