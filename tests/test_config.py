"""The schema is the one source of config keys and defaults; the stage dataclasses mirror it."""

from __future__ import annotations

import dataclasses
import importlib.util

import pytest
import yaml

from ccl.config import (
    SCHEMA_DIR,
    SECTION_DATACLASSES,
    deep_update,
    load_config,
    section,
    section_dataclass,
    validate_config,
)


def _stage_schema(name: str) -> dict:
    return yaml.safe_load((SCHEMA_DIR / "stages" / f"{name}.schema.yaml").read_text())


def test_every_schema_section_has_a_dataclass():
    top = yaml.safe_load((SCHEMA_DIR / "config.schema.yaml").read_text())
    sections = {k for k, v in top["properties"].items() if "$ref" in v}
    assert sections == set(SECTION_DATACLASSES)


def _defined(name: str) -> bool:
    module = SECTION_DATACLASSES[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("name", sorted(SECTION_DATACLASSES))
def test_dataclass_defaults_equal_schema_defaults(name):
    if not _defined(name):
        pytest.fail(f"section {name!r}: {SECTION_DATACLASSES[name]} does not exist yet")
    cls = section_dataclass(name)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, (
        f"{cls} must be a frozen dataclass"
    )
    schema = _stage_schema(name)
    assert schema.get("additionalProperties") is False, f"{name}: schema must refuse unknown keys"
    props = schema["properties"]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(props) == set(fields), f"{name}: schema keys and {cls.__name__} fields differ"
    built = section(cls, {})  # every field must have a default
    for key, sub in props.items():
        assert "default" in sub, f"{name}.{key}: no default in the schema"
        assert "description" in sub, f"{name}.{key}: no description in the schema"
        got = getattr(built, key)
        want = sub["default"]
        if isinstance(want, list):
            want = tuple(want)
        assert got == want, f"{name}.{key}: dataclass default {got!r} != schema default {want!r}"


def test_default_config_is_valid_and_filled(default_config):
    assert default_config["scenes"]["synthetic"]["source"] == "synthetic"
    for name in SECTION_DATACLASSES:
        assert isinstance(default_config[name], dict)


def test_unknown_top_level_key_is_refused():
    with pytest.raises(ValueError, match="test.yaml.*Additional properties"):
        validate_config({"scenes": {"s": {"source": "synthetic"}}, "scalez": ["sp"]}, source="test.yaml")


SYNTHETIC = {"synthetic": {"source": "synthetic"}}


def test_a_config_without_scenes_names_the_config_it_adds_to():
    """configs/ablation.yaml alone: it adds to a config with scenes, and never runs one of its own."""
    with pytest.raises(
        ValueError, match=r"ablation.yaml: no `scenes`.*configs/lerf_ovs.yaml configs/ablation"
    ):
        validate_config({"variants": ["full", "base"]}, source="configs/ablation.yaml")


def test_bad_enum_names_the_key_path():
    with pytest.raises(ValueError, match="scales/0"):
        validate_config({"scenes": SYNTHETIC, "scales": ["xp"]}, source="c.yaml")


def test_real_scene_needs_a_path():
    with pytest.raises(ValueError, match="scenes/ramen.*path"):
        validate_config({"scenes": {"ramen": {"source": "colmap"}}}, source="c.yaml")


def test_section_refuses_unknown_keys():
    @dataclasses.dataclass(frozen=True)
    class Small:
        a: int = 1

    with pytest.raises(ValueError, match=r"unknown key\(s\) \['b'\]"):
        section(Small, {"b": 2}, where="config.yaml: small")


def test_load_config_overrides_and_missing_file(tmp_path):
    cfg = load_config(overrides={"seed": 3})
    assert cfg["seeds"] == [3] and "seed" not in cfg  # one form for the rules
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ValueError, match="bad.yaml.*mapping"):
        load_config(bad)


def test_seed_and_seeds_become_one_list_of_seeds():
    assert validate_config({"scenes": SYNTHETIC})["seeds"] == [0]  # neither: seed 0
    assert validate_config({"scenes": SYNTHETIC, "seed": 5})["seeds"] == [5]
    cfg = validate_config({"scenes": SYNTHETIC, "seeds": "[2, 0, 1]"})  # `--config seeds='[2,0,1]'`
    assert cfg["seeds"] == [2, 0, 1] and "seed" not in cfg  # the user's order: the first seeds shared stages
    assert validate_config(cfg)["seeds"] == [2, 0, 1]  # validating the result again changes nothing


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"seeds": []}, r"`seeds: \[\]` names no seed: list at least one, e.g. `seeds: \[0\]`"),
        ({"seeds": [0, 1, 0]}, r"`seeds: \[0, 1, 0\]` lists \[0\] more than once.*`seeds: \[0, 1\]`"),
        ({"seed": 1, "seeds": [0, 1, 2]}, r"both `seed` \(1\) and `seeds` \(\[0, 1, 2\]\) are set: give one"),
        ({"seeds": [-1]}, r"invalid config at 'seeds/0'"),
        ({"seeds": 3}, r"invalid config at 'seeds'"),
    ],
)
def test_bad_seeds_are_refused_with_the_fix(given, message):
    with pytest.raises(ValueError, match=r"my\.yaml: " + message):
        validate_config({"scenes": SYNTHETIC, **given}, source="my.yaml")


def test_deep_update_keeps_siblings():
    assert deep_update({"a": {"x": 1, "y": 2}}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}}


def test_strings_where_the_schema_wants_numbers_or_booleans_are_read_as_yaml():
    """What `snakemake --config codebook='{n_prototypes: 64}'` hands over (nested values stay strings)."""
    cfg = validate_config(
        {
            "scenes": SYNTHETIC,
            "seed": "3",
            "codebook": {"n_prototypes": "64", "lr": "1e-2"},
            "language": {"joint": "true"},
        }
    )
    assert cfg["seeds"] == [3] and cfg["codebook"]["n_prototypes"] == 64 and cfg["codebook"]["lr"] == 0.01
    assert cfg["language"]["joint"] is True
    for bad in ("many", "2.5"):  # not an integer however read: refused, naming the key
        with pytest.raises(ValueError, match="codebook/n_prototypes"):
            validate_config({"scenes": SYNTHETIC, "codebook": {"n_prototypes": bad}})
