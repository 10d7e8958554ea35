"""Config: the schema in workflow/schemas/ is the one source of keys and defaults.

Each stage owns a frozen dataclass whose field names are the keys of its section of config.yaml and
whose defaults equal the schema's (tests/test_config.py holds them equal). `section(Cls, mapping)`
builds one from a config section and names unknown keys, so a typo in config.yaml is an error, not a
silently ignored setting.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = REPO_ROOT / "workflow" / "schemas"
SCHEMA_PATH = SCHEMA_DIR / "config.schema.yaml"
DEFAULT_CONFIG_PATH = REPO_ROOT / "config.yaml"
DEFAULT_SEED = 0  # a config with neither `seed` nor `seeds`


# The config file(s) the run was given (the Snakefile's CONFIG_SOURCE: the --configfile names, or
# config.yaml), for messages that name the file to edit; set by the Snakefile for its jobs.
CONFIG_SOURCE_ENV = "CCL_CONFIG_SOURCE"


def config_source() -> str:
    """The config file(s) this run was given, as messages name them (config.yaml outside a run)."""
    return os.environ.get(CONFIG_SOURCE_ENV) or "config.yaml"


def config_where(key: str) -> str:
    """`section`'s `where` for config key `key` of this run: "configs/lerf_ovs.yaml: masks"."""
    return f"{config_source()}: {key}"


def section(cls: type[T], mapping: Mapping[str, Any] | None, *, where: str = "config") -> T:
    """Build the frozen dataclass `cls` from one config section; unknown keys raise ValueError."""
    mapping = dict(mapping or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(mapping) - names)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; known keys: {sorted(names)}")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in mapping.items()}
    return cls(**kwargs)


def as_params(cfg: Any) -> dict[str, Any]:
    """A stage config as a plain dict (tuples as lists) for HDF5 attributes and JSON headers."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


def validate_config(config: dict[str, Any], *, source: str | os.PathLike = "config") -> dict[str, Any]:
    """Validate against the schema and fill all its defaults, those of the stage schemas included
    (Snakemake's `validate` fills only the top level's).

    Returns a new dict; raises ValueError naming the source file, the offending key path and the rule
    it broke.
    """
    import jsonschema
    import yaml
    from jsonschema import Draft202012Validator, validators
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["$id"] = SCHEMA_PATH.resolve().as_uri()

    def retrieve(uri: str) -> Resource:
        from urllib.parse import urlparse
        from urllib.request import url2pathname

        contents = yaml.safe_load(Path(url2pathname(urlparse(uri).path)).read_text())
        # A subschema's own `$schema` makes jsonschema validate it with that dialect's plain validator
        # (`evolve` → `validator_for`), which drops `set_defaults`: the stage schemas' defaults would
        # stay unfilled, as they do with Snakemake's `validate`. Every file here is draft 2020-12.
        dialect = contents.pop("$schema", base.META_SCHEMA["$schema"])
        assert dialect == base.META_SCHEMA["$schema"], f"{uri}: schema dialect {dialect}"
        return Resource(contents=contents, specification=DRAFT202012)

    registry = Registry(retrieve=retrieve)
    base = Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema_):
        if isinstance(instance, dict):
            for prop, sub in properties.items():
                if "default" in sub:
                    instance.setdefault(prop, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, schema_)

    validator_cls = validators.extend(base, {"properties": set_defaults})
    config = copy.deepcopy(config)
    validator = validator_cls(schema, registry=registry)
    _coerce_strings(validator, config)
    _check_seed_keys(config, source)
    try:
        validator.validate(config)
    except jsonschema.ValidationError as e:
        if e.validator == "required" and not e.absolute_path and "scenes" not in config:
            raise ValueError(
                f"{source}: no `scenes`: name a config that lists them first; configs/ablation.yaml adds to "
                "one, e.g. `--configfile configs/lerf_ovs.yaml configs/ablation.yaml`, or "
                "`--configfile config.yaml configs/ablation.yaml` for the synthetic scene"
            ) from None
        where = "/".join(str(p) for p in e.absolute_path) or "(top level)"
        raise ValueError(f"{source}: invalid config at '{where}': {e.message}") from None
    # One form for the rules: `seeds`, always a list (`seed: N` is `seeds: [N]`; neither is seed 0).
    seed = config.pop("seed", DEFAULT_SEED)
    config.setdefault("seeds", [seed])
    return config


def _check_seed_keys(config: Mapping[str, Any], source: str | os.PathLike) -> None:
    """Refuse `seed` with `seeds`, an empty `seeds` and a seed listed twice, each with its fix (the
    schema's own messages for the last two name no fix)."""
    if "seed" in config and "seeds" in config:
        raise ValueError(
            f"{source}: both `seed` ({config['seed']!r}) and `seeds` ({config['seeds']!r}) are set: give one, "
            "`seeds: [0, 1, 2]` to repeat the run with several seeds or `seed: N` for one (a `--config seed=N` "
            "over a config file with `seeds`, or the reverse, sets both)"
        )
    seeds = config.get("seeds")
    if not isinstance(seeds, list):
        return  # absent, or of the wrong type: the schema refuses the latter
    if not seeds:
        raise ValueError(
            f"{source}: `seeds: []` names no seed: list at least one, e.g. `seeds: [0]`, or leave the key out "
            f"for seed {DEFAULT_SEED}"
        )
    repeated = [s for s in dict.fromkeys(seeds) if seeds.count(s) > 1]
    if repeated:
        raise ValueError(
            f"{source}: `seeds: {seeds}` lists {repeated} more than once; a seed's runs share one folder "
            f"(results/{{scene}}/seed{{N}}), so each is run once: `seeds: {list(dict.fromkeys(seeds))}`"
        )


_SCHEMA_TYPES = {
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
    "null": lambda v: v is None,
}


_UNREADABLE = object()


def _read_as(text: str, wanted: list[str]) -> Any:
    """`text` read as YAML (or as a float, which YAML 1.1 misses for '1e-2'), if of a wanted type."""
    import yaml

    candidates = []
    try:
        candidates.append(yaml.safe_load(text))
    except yaml.YAMLError:
        pass
    try:
        candidates.append(float(text))
    except ValueError:
        pass
    for value in candidates:
        if any(_SCHEMA_TYPES.get(t, lambda v: False)(value) for t in wanted):
            return value
    return _UNREADABLE


def _coerce_strings(validator: Any, config: dict[str, Any]) -> None:
    """Read as YAML the strings that stand where the schema wants another type, in place.

    Snakemake parses `--config key=value` nested values with YAML's BaseLoader, so
    `--config codebook='{n_prototypes: 64}'` arrives as the string '64'; this makes it 64, as the same
    line in a config file would be. A string that does not read as the wanted type is left for the
    validation to refuse with its message.
    """

    for _ in range(100):  # each pass fixes every reported value; nested fixes may reveal more
        changed = False
        for err in validator.iter_errors(config):
            if err.validator != "type" or not isinstance(err.instance, str) or not err.absolute_path:
                continue
            wanted = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
            value = _read_as(err.instance, wanted)
            if value is _UNREADABLE:
                continue
            *parents, key = err.absolute_path
            target = config
            for p in parents:
                target = target[p]
            target[key] = value
            changed = True
        if not changed:
            return


def load_config(
    path: str | os.PathLike | None = None, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Read a config YAML (default: the repository's config.yaml), apply overrides, validate."""
    import yaml

    path = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if not path.is_file():
        raise FileNotFoundError(f"{path}: config file not found")
    with path.open() as f:
        config = yaml.safe_load(f) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a config must be a mapping of keys, got {type(config).__name__}")
    if overrides:
        config = deep_update(config, overrides)
    return validate_config(config, source=path)


def deep_update(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_update(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# Config section → the frozen dataclass that mirrors it ("module:Class"). tests/test_config.py checks
# that every section of the schema has one and that their defaults agree.
SECTION_DATACLASSES: dict[str, str] = {
    "synthetic": "ccl.synthetic:SyntheticConfig",
    "scene_load": "ccl.scene:SceneLoadConfig",
    "sfm": "ccl.sfm:SfmConfig",
    "masks": "ccl.masks:MasksConfig",
    "tracks": "ccl.tracks:TracksConfig",
    "features": "ccl.features:FeaturesConfig",
    "codebook": "ccl.codebook:CodebookConfig",
    "rgb": "ccl.splat:RgbConfig",
    "language": "ccl.splat:LanguageConfig",
    "query": "ccl.query:QueryConfig",
    "eval": "ccl.eval:EvalConfig",
}


def section_dataclass(name: str) -> type:
    import importlib

    module, cls = SECTION_DATACLASSES[name].split(":")
    return getattr(importlib.import_module(module), cls)
