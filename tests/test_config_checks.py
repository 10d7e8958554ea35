"""Every stage dataclass checks its values when it is built, in one style (ccl.config_checks), and
refuses what its schema refuses: a config object that exists is valid."""

from __future__ import annotations

import dataclasses
import re

import pytest
import yaml

from ccl.config import SCHEMA_DIR, SECTION_DATACLASSES, section, section_dataclass
from ccl.config_checks import check_section

# Schema bounds a dataclass leaves to someone else, and why.
LEFT_TO_THE_BACKEND = {
    # the sam backend's model-type registry decides (a caller may hand it builders of other models)
    ("masks", "sam_model_type"),
}


def _bounds(name: str):
    """(key, a value the schema refuses, one it allows) for every bound of the section's schema."""
    props = yaml.safe_load((SCHEMA_DIR / "stages" / f"{name}.schema.yaml").read_text())["properties"]
    for key, sub in props.items():
        step = 1 if sub.get("type") == "integer" else 1e-3
        if "minimum" in sub:
            yield key, sub["minimum"] - step, sub["minimum"]
        if "exclusiveMinimum" in sub:
            yield key, sub["exclusiveMinimum"], sub["exclusiveMinimum"] + step
        if "maximum" in sub:
            yield key, sub["maximum"] + step, sub["maximum"]
        if "exclusiveMaximum" in sub:
            yield key, sub["exclusiveMaximum"], sub["exclusiveMaximum"] - step
        if "enum" in sub and (name, key) not in LEFT_TO_THE_BACKEND:
            yield key, "not-" + str(sub["enum"][0]), sub["enum"][-1]


@pytest.mark.parametrize("name", sorted(SECTION_DATACLASSES))
def test_every_schema_bound_is_checked_when_the_config_is_built(name):
    cls = section_dataclass(name)
    checked = 0
    for key, bad, good in _bounds(name):
        cls(**{key: good})  # the schema's own bound is allowed
        with pytest.raises(ValueError) as e:
            cls(**{key: bad})
        msg = str(e.value)
        assert msg.startswith(f"{name}.{key} = {bad!r}: expected "), msg  # key, value, what is allowed
        assert msg.endswith(f"fix the `{name}` section of config.yaml"), msg  # and the fix
        checked += 1
    assert checked, f"{name}: no bound in its schema to check"


def test_a_built_config_is_valid_whichever_way_it_was_built():
    cls = section_dataclass("codebook")
    expected = re.escape(
        "codebook.n_prototypes = 1: expected >= 2; fix the `codebook` section of config.yaml"
    )
    with pytest.raises(ValueError, match=expected):
        section(cls, {"n_prototypes": 1}, where="config.yaml: codebook")
    with pytest.raises(ValueError, match=expected):
        dataclasses.replace(cls(), n_prototypes=1)
    with pytest.raises(ValueError, match=r"codebook.n_prototypes = 'many': expected >= 2"):
        cls(n_prototypes="many")  # a value its check cannot compare is refused, not a TypeError


def test_check_section_names_the_first_failing_key():
    @dataclasses.dataclass(frozen=True)
    class Small:
        a: int = 1
        b: int = -1

    check_section("small", Small(), [("a", lambda v: v >= 1, ">= 1")])
    with pytest.raises(ValueError, match=r"^small\.b = -1: expected >= 0; fix the `small` section"):
        check_section("small", Small(), [("a", lambda v: v >= 1, ">= 1"), ("b", lambda v: v >= 0, ">= 0")])
