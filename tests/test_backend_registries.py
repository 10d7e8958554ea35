"""Masks, tracks and features find their backends one way: a registry from the config's `backend` to a
module with `check(cfg, scene)` and `build(cfg, *, scene, device, seed, load_image)`, and for the real
model `check_weights(cfg)` and `expected_weight_shapes(cfg)` (what the preflight calls)."""

from __future__ import annotations

import importlib
import inspect

import pytest
import yaml

from ccl.config import SCHEMA_DIR
from ccl.preflight import REAL_BACKEND_MODULES, STAGE_BACKENDS

STAGES = ("masks", "tracks", "features")


def _registry(stage: str):
    return importlib.import_module(f"ccl.{stage}.backends")


@pytest.mark.parametrize("stage", STAGES)
def test_the_registry_the_config_and_the_schema_name_the_same_backends(stage):
    config_module = importlib.import_module(f"ccl.{stage}.config")
    schema = yaml.safe_load((SCHEMA_DIR / "stages" / f"{stage}.schema.yaml").read_text())
    registry = _registry(stage).REGISTRY
    assert set(registry) == set(config_module.BACKENDS) == set(schema["properties"]["backend"]["enum"])
    assert set(STAGE_BACKENDS[stage]) == set(registry)  # the preflight's sim and real backends


@pytest.mark.parametrize("stage", STAGES)
def test_every_backend_module_has_the_stage_protocol(stage):
    registry = _registry(stage)
    for name in registry.REGISTRY:
        module = registry.backend_module(name)
        check = inspect.signature(module.check).parameters
        assert list(check)[:2] == ["cfg", "scene"], (stage, name)
        build = inspect.signature(module.build).parameters
        assert list(build)[0] == "cfg", (stage, name)
        for keyword in ("scene", "device", "seed", "load_image"):
            assert build[keyword].kind is inspect.Parameter.KEYWORD_ONLY, (stage, name, keyword)
    real = registry.backend_module(STAGE_BACKENDS[stage][1])
    assert real.__name__ == REAL_BACKEND_MODULES[stage]
    assert callable(real.check_weights) and callable(real.expected_weight_shapes)


@pytest.mark.parametrize("stage", STAGES)
def test_an_unknown_backend_names_the_key(stage):
    with pytest.raises(ValueError, match=rf"{stage}\.backend: unknown backend 'nope'"):
        _registry(stage).backend_module("nope")
