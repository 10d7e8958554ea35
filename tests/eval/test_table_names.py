"""Which tables exist is decided once (ccl.eval.tables.protocol_table_names): rule tables's outputs
(`table_names` of its config) and the files `build_tables` writes agree for every combination of
protocols, scales and variants the schema allows."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ccl.config import REPO_ROOT, SCHEMA_DIR, validate_config
from ccl.eval import QueryRow, rows_to_csv
from ccl.eval.tables import build_tables, protocol_table_names, table_files, table_names
from ccl.query.ops import scale_sets

_TOP = yaml.safe_load((SCHEMA_DIR / "config.schema.yaml").read_text())["properties"]
_ENTRY = yaml.safe_load((SCHEMA_DIR / "stages" / "scene_entry.schema.yaml").read_text())["properties"]
PROTOCOLS = tuple(_ENTRY["protocol"]["enum"])  # lerf_ovs, 3dovs, none
SCALES = tuple(_TOP["scales"]["items"]["enum"])  # sp, wp, all
VARIANTS = tuple(_TOP["variants"]["items"]["enum"])  # full, base, pull, push
# Two scenes per protocol, so every table has a mean over scenes; `room` is 3D-OVS's scene apart.
SCENES_OF = {"lerf_ovs": ("ramen", "teatime"), "3dovs": ("bed", "room"), "none": ("plain",)}


def _subsets(items: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every non-empty subset (the schema's minItems 1, uniqueItems), in the enum's order."""
    return [c for n in range(1, len(items) + 1) for c in itertools.combinations(items, n)]


def _config(protocols, scales, variants) -> dict:
    scenes = {s: {"source": "synthetic", "protocol": p} for p in protocols for s in SCENES_OF[p]}
    return {"scenes": scenes, "scales": list(scales), "variants": list(variants)}


def _rule_files(config) -> list[str]:
    """The files rule tables lists, computed as eval.smk computes them (its EVAL_PROTOCOLS, SCALES)."""
    evaluated = {e["protocol"] for e in config["scenes"].values() if e["protocol"] != "none"}
    return table_files(table_names(evaluated, config["scales"]))


def _queries_csvs(root: Path, config) -> list[Path]:
    """One queries.csv per evaluated (scene, variant), with a row per frame and candidate scale set, as
    rule evaluate writes it for this config."""
    paths = []
    for (scene, entry), variant in itertools.product(config["scenes"].items(), config["variants"]):
        protocol = entry["protocol"]
        if protocol == "none":
            continue
        rows = []
        for k, scale_set in enumerate(scale_sets(config["scales"])):
            for frame in range(2):
                lerf = protocol == "lerf_ovs"
                rows.append(
                    QueryRow(scene, variant, 0, f"frame_{frame:05d}", "egg", protocol, "paper",
                             "+".join(scale_set), scale_set[0], scale_set[0] if lerf else "",
                             0.1 * (k + frame + 1), float(frame) if lerf else math.nan, 0.4 if lerf else math.nan)
                )  # fmt: skip
        path = root / "results" / scene / "seed0" / "eval" / variant / "queries.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rows_to_csv(rows))
        paths.append(path)
    return paths


def _assert_writer_writes_the_rules_files(tmp_path: Path, config) -> None:
    out = tmp_path / "tables"
    csvs = _queries_csvs(tmp_path, config)
    if not csvs:  # every scene `protocol: none`: eval.smk defines no rule tables, the writer has nothing
        with pytest.raises(ValueError, match="no evaluation rows"):
            build_tables(csvs, out)
        return
    written = build_tables(csvs, out, benchmarks=tmp_path / "benchmarks")
    want = sorted(_rule_files(config))
    assert sorted(p.name for p in written) == want, config
    assert sorted(p.name for p in out.iterdir()) == want, config  # and nothing else on disk


# Every evaluated-protocol set with and without a `protocol: none` scene beside it, and all-`none`.
PROTOCOL_SETS = _subsets(PROTOCOLS)


@pytest.mark.parametrize("scales", _subsets(SCALES), ids="+".join)
@pytest.mark.parametrize("protocols", PROTOCOL_SETS, ids="+".join)
def test_rule_and_writer_agree_for_every_protocol_and_scale_set(tmp_path, protocols, scales):
    """Every protocol set × scale set, the variant sets taken in turn (each at least once)."""
    subsets = _subsets(VARIANTS)
    case = PROTOCOL_SETS.index(protocols) * len(_subsets(SCALES)) + _subsets(SCALES).index(scales)
    config = validate_config(_config(protocols, scales, subsets[case % len(subsets)]), source="test.yaml")
    _assert_writer_writes_the_rules_files(tmp_path, config)


@pytest.mark.slow
def test_rule_and_writer_agree_for_every_combination(tmp_path):
    """The whole product: protocol sets × scale sets × variant sets (about a minute of pandas on one core)."""
    checked = 0
    for n, (protocols, scales, variants) in enumerate(
        itertools.product(PROTOCOL_SETS, _subsets(SCALES), _subsets(VARIANTS))
    ):
        config = _config(protocols, scales, variants)  # validated per protocol x scale set above
        _assert_writer_writes_the_rules_files(tmp_path / str(n), config)
        checked += 1
    assert checked == 7 * 7 * 15


def test_table_names_per_protocol_and_scale():
    assert table_names(["lerf_ovs"], ["sp", "wp"]) == ["table1", "table2", "localization", "efficiency"]
    assert table_names(["3dovs", "3dovs"], ["all"]) == [
        "table1_3dovs",
        "table2_3dovs",
        "table5_3dovs",
        "efficiency",
    ]
    assert table_names({"3dovs", "lerf_ovs"}, ["wp", "all"]) == table_names(
        ["lerf_ovs", "3dovs"], ["all", "wp"]
    )
    assert table_files(["table1"]) == ["table1.csv", "table1.md", "efficiency_rules.csv"]
    with pytest.raises(ValueError, match=r"protocol 'none' has no tables.*`protocol: none` is not evaluated"):
        table_names(["lerf_ovs", "none"], ["sp"])


def test_csvs_of_two_configs_get_each_protocols_own_tables(tmp_path):
    """`all` evaluated on the LERF-OVS scenes but not on the 3D-OVS ones (CSVs of two runs, which no
    one config makes): each protocol gets the tables of the scales it was evaluated on."""
    lerf = _queries_csvs(tmp_path / "a", _config(["lerf_ovs"], ["sp", "wp", "all"], ["full"]))
    ovs = _queries_csvs(tmp_path / "b", _config(["3dovs"], ["sp", "wp"], ["full"]))
    written = build_tables(lerf + ovs, tmp_path / "tables")
    want = protocol_table_names("lerf_ovs", ["sp", "wp", "all"]) + protocol_table_names("3dovs", ["sp", "wp"])
    assert sorted(p.name for p in written) == sorted(table_files(want + ["efficiency"]))
    assert "table5.csv" in {p.name for p in written} and "table5_3dovs.csv" not in {p.name for p in written}


def test_a_protocol_without_tables_is_refused_naming_the_file(tmp_path):
    path = _queries_csvs(tmp_path, _config(["lerf_ovs"], ["sp"], ["full"]))[0]
    path.write_text(path.read_text().replace(",lerf_ovs,", ",lerf,"))
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: rows with protocol \['lerf'\]"):
        build_tables([path], tmp_path / "tables")


# Includes the real Snakefile and prints rule tables's output files.
WRAPPER = """
include: {snakefile!r}


import json

print({mark!r} + json.dumps(list(rules.tables.output)))
"""
MARK = "CCL_TEST_TABLES "


def test_the_rule_takes_its_outputs_from_table_names(tmp_path):
    """One combination through Snakemake: eval.smk's outputs are `table_files` of its config."""
    config = _config(["lerf_ovs", "3dovs", "none"], ["sp", "all"], ["base", "push"])
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    wrapper = tmp_path / "Snakefile"
    wrapper.write_text(WRAPPER.format(snakefile=str(REPO_ROOT / "Snakefile"), mark=MARK))
    snakemake = str(Path(sys.executable).with_name("snakemake"))
    r = subprocess.run(
        [snakemake, "-n", "--quiet", "rules", "--snakefile", str(wrapper), "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    outputs = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith(MARK)).removeprefix(MARK))
    assert {str(Path(p).parent) for p in outputs} == {"results/tables"}
    want = table_files(table_names(["lerf_ovs", "3dovs"], ["sp", "all"]))
    assert sorted(Path(p).name for p in outputs) == sorted(want)
    assert "table5_3dovs.csv" in want and "localization.md" in want  # the combination tells them apart
