"""Checkpoints of the Gaussian fields (safetensors + JSON header) and the resumable training state.

Final fields (docs/contracts.md, "Gaussian fields"):

- colour field `rgb.safetensors`: `means` [G,3], `quats` [G,4] wxyz, `log_scales` [G,3],
  `opacity_logits` [G], `sh0` [G,1,3], `shN` [G,K−1,3]; header kind "rgb_field";
- language field `{scale}.safetensors`: the same Gaussian tensors (the geometry it was rendered with,
  so the file stands alone), `features` [G,F] and `decoder.*`; header kind "language_field" with
  `n_classes`, `feature_dim`.

Both headers carry format_version, config, iteration, scene, device, seed. A training run writes, every
`checkpoint_every` steps, a sibling `<stem>.partial.safetensors` with everything needed to continue
bit-for-bit (parameters, Adam moments, strategy state, RNG state, decoder); it is deleted once the
final file is written. It is reused only if its `fingerprint` (config, seed, scene, inputs) matches.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccl.io.checkpoint import load_safetensors, save_safetensors
from ccl.splat.model import Gaussians, check_finite_gaussians

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
RGB_KIND = "rgb_field"
LANGUAGE_KIND = "language_field"
STATE_KIND = "train_state"
GAUSSIAN_KEYS = ("means", "quats", "log_scales", "opacity_logits", "sh0", "shN")


@dataclass
class LanguageField:
    """A language field: Gaussians with per-Gaussian features and the decoder into N classes."""

    gaussians: Gaussians
    features: Any  # [G, F] float32 language feature per Gaussian
    decoder: Any  # torch.nn.Module: [.., F] → [.., n_classes] logits
    header: dict[str, Any]  # the checkpoint's JSON header (config, scene, n_classes, ...)

    @property
    def n_classes(self) -> int:
        return int(self.decoder[-1].out_features)


def partial_path(path: str | os.PathLike) -> Path:
    """`x/rgb.safetensors` → `x/rgb.partial.safetensors` (the resumable state beside the final file)."""
    path = Path(path)
    return path.with_name(path.name.removesuffix(".safetensors") + ".partial.safetensors")


def fingerprint(obj: Any) -> str:
    """SHA-256 of a JSON-able description of a run (config, seed, scene, inputs)."""
    from ccl.io.atomic import _json_default

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=_json_default).encode()).hexdigest()


# --- final fields --------------------------------------------------------------------------------------


def save_rgb_field(path: str | os.PathLike, gaussians: Gaussians, *, header: dict[str, Any]) -> Path:
    check_finite_gaussians(gaussians, where=f"{path} (refusing to save)")
    head = {**header, "kind": RGB_KIND, "format_version": FORMAT_VERSION, "n_gaussians": len(gaussians)}
    head["sh_degree"] = gaussians.sh_degree
    return save_safetensors(path, gaussians.tensors(), head)


def load_rgb_field(path: str | os.PathLike, *, scene: str | None = None) -> tuple[Gaussians, dict[str, Any]]:
    """(Gaussians, header) of a colour field; refuses another scene's file, bad shapes, NaN, zero scales."""
    from ccl.io.checkpoint import check_state_dict_keys

    tensors, header = load_safetensors(path)
    _check_header(path, header, kind=RGB_KIND, scene=scene)
    check_state_dict_keys(path, tensors, GAUSSIAN_KEYS)
    g = _gaussians(path, tensors)
    return g, header


def save_language_field(path: str | os.PathLike, field: LanguageField, *, header: dict[str, Any]) -> Path:
    import torch

    from ccl.splat.decoder import decoder_tensors

    check_finite_gaussians(field.gaussians, where=f"{path} (refusing to save)")
    if not torch.isfinite(field.features).all():
        raise ValueError(f"{path}: refusing to save non-finite language features")
    head = {
        **header,
        "kind": LANGUAGE_KIND,
        "format_version": FORMAT_VERSION,
        "n_gaussians": len(field.gaussians),
        "n_classes": field.n_classes,
        "feature_dim": int(field.features.shape[1]),
    }
    tensors = {**field.gaussians.tensors(), "features": field.features, **decoder_tensors(field.decoder)}
    return save_safetensors(path, tensors, head)


def load_language_field(path: str | os.PathLike, *, scene: str | None = None) -> LanguageField:
    """The language field of one scale; checks as `load_rgb_field`, plus features and decoder."""
    import torch

    from ccl.io.checkpoint import check_state_dict_keys
    from ccl.splat.decoder import DECODER_PREFIX, decoder_from_tensors

    tensors, header = load_safetensors(path)
    _check_header(path, header, kind=LANGUAGE_KIND, scene=scene)
    got = [k for k in tensors if not k.startswith(DECODER_PREFIX)]
    check_state_dict_keys(path, got, [*GAUSSIAN_KEYS, "features"])
    g = _gaussians(path, tensors)
    features = tensors["features"]
    if features.ndim != 2 or features.shape[0] != len(g):
        raise ValueError(f"{path}: features has shape {list(features.shape)}, expected [{len(g)}, F]")
    if not torch.isfinite(features).all():
        raise ValueError(f"{path}: features holds NaN or infinite values; retrain the language field")
    decoder = decoder_from_tensors(tensors, path=path)
    if decoder[0].in_features != features.shape[1]:
        raise ValueError(
            f"{path}: decoder takes {decoder[0].in_features}-dim features, the Gaussians carry {features.shape[1]}"
        )
    if "n_classes" in header and int(header["n_classes"]) != decoder[-1].out_features:
        raise ValueError(
            f"{path}: header says n_classes={header['n_classes']}, decoder has {decoder[-1].out_features}"
        )
    decoder.eval()
    return LanguageField(gaussians=g, features=features, decoder=decoder, header=header)


def _check_header(path: Any, header: dict[str, Any], *, kind: str, scene: str | None) -> None:
    got_kind = header.get("kind")
    if got_kind != kind:
        raise ValueError(f"{path}: holds a {got_kind!r} checkpoint, expected a {kind!r} (wrong file?)")
    version = header.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path}: format_version {version!r}, this ccl reads {FORMAT_VERSION}; retrain it with this version"
        )
    if scene is not None and header.get("scene") != scene:
        raise ValueError(
            f"{path}: checkpoint of scene {header.get('scene')!r}, but this run is for scene {scene!r}; "
            "point to that scene's own file (results/<scene>/seed<N>/gaussians/...)"
        )


def _gaussians(path: Any, tensors: dict[str, Any]) -> Gaussians:
    g = len(tensors["means"])
    shapes = {
        "means": (g, 3),
        "quats": (g, 4),
        "log_scales": (g, 3),
        "opacity_logits": (g,),
        "sh0": (g, 1, 3),
    }
    for k, want in shapes.items():
        if tuple(tensors[k].shape) != want:
            raise ValueError(
                f"{path}: tensor {k!r} has shape {list(tensors[k].shape)}, expected {list(want)}"
            )
    shn = tensors["shN"]
    if shn.ndim != 3 or shn.shape[0] != g or shn.shape[2] != 3 or shn.shape[1] not in (0, 3, 8, 15):
        raise ValueError(f"{path}: tensor 'shN' has shape {list(shn.shape)}, expected [{g}, 0|3|8|15, 3]")
    gs = Gaussians.from_tensors({k: tensors[k].float() for k in GAUSSIAN_KEYS})
    check_finite_gaussians(gs, where=str(path))
    return gs


# --- resumable training state --------------------------------------------------------------------------


@dataclass
class TrainState:
    """Everything a training loop needs to continue exactly where a partial checkpoint left it."""

    iteration: int  # steps completed
    params: dict[str, Any]  # strategy name → tensor
    optimizers: dict[str, dict[str, Any]]  # name → torch optimizer state_dict
    strategy_state: dict[str, Any]  # gsplat strategy state (tensors, floats, None)
    extra: dict[str, Any]  # other tensors (decoder weights, ...)
    rng_state: Any  # torch.ByteTensor, the global CPU generator
    header: dict[str, Any]


def save_train_state(
    path: str | os.PathLike,
    *,
    iteration: int,
    params: Any,
    optimizers: dict[str, Any],
    strategy_state: dict[str, Any],
    extra: dict[str, Any],
    header: dict[str, Any],
) -> Path:
    import torch

    tensors: dict[str, Any] = {f"param.{k}": v.detach() for k, v in params.items()}
    optim_meta: dict[str, Any] = {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        meta: dict[str, Any] = {"param_groups": sd["param_groups"], "state": {}}
        for pid, st in sd["state"].items():
            meta["state"][str(pid)] = []
            for key, v in st.items():
                if isinstance(v, torch.Tensor):
                    tensors[f"optim.{name}.{pid}.{key}"] = v
                    meta["state"][str(pid)].append(key)
        optim_meta[name] = meta
    strat_meta: dict[str, Any] = {}
    for k, v in strategy_state.items():
        if isinstance(v, torch.Tensor):
            tensors[f"strategy.{k}"] = v
        else:
            strat_meta[k] = v
    for k, v in extra.items():
        tensors[f"extra.{k}"] = v
    tensors["rng.torch"] = torch.get_rng_state()
    head = {
        **header,
        "kind": STATE_KIND,
        "format_version": FORMAT_VERSION,
        "iteration": int(iteration),
        "optimizers": optim_meta,
        "strategy_scalars": strat_meta,
    }
    return save_safetensors(path, tensors, head)


def _set_aside(path: Path, why: str) -> Path:
    """Rename a partial checkpoint that cannot be resumed (never delete it: it is the evidence of what
    went wrong), warn the user, and let training start over."""
    from ccl.runlog import warn_user

    n = 1
    while (
        aside := path.with_name(f"{path.name.removesuffix('.safetensors')}.rejected-{n}.safetensors")
    ).exists():
        n += 1
    os.replace(path, aside)
    warn_user(log, f"{path}: partial checkpoint {why}; moved to {aside.name} and training starts over")
    return aside


def load_train_state(path: str | os.PathLike, *, fingerprint: str) -> TrainState | None:
    """The state saved at `path`, or None (with a log line saying why) if absent, unreadable or stale."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        tensors, header = load_safetensors(path)
    except ValueError as e:
        _set_aside(path, f"unreadable ({e})")
        return None
    if header.get("kind") != STATE_KIND or header.get("format_version") != FORMAT_VERSION:
        log.warning("%s: not a training state of this ccl version; starting over", path)
        return None
    if header.get("fingerprint") != fingerprint:
        log.warning(
            "%s: written by a run with another config, seed or inputs; starting over (it will be replaced)",
            path,
        )
        return None
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:  # a run that diverged after its last good save, or a damaged file: resuming would fail again
        _set_aside(path, f"holds non-finite values in {len(bad)} tensor(s) ({bad[:3]})")
        return None
    params = {k[len("param.") :]: v for k, v in tensors.items() if k.startswith("param.")}
    optimizers = {}
    for name, meta in header["optimizers"].items():
        state = {
            int(pid): {key: tensors[f"optim.{name}.{pid}.{key}"] for key in keys}
            for pid, keys in meta["state"].items()
        }
        optimizers[name] = {"state": state, "param_groups": meta["param_groups"]}
    strategy_state = dict(header.get("strategy_scalars", {}))
    strategy_state.update({k[len("strategy.") :]: v for k, v in tensors.items() if k.startswith("strategy.")})
    extra = {k[len("extra.") :]: v for k, v in tensors.items() if k.startswith("extra.")}
    return TrainState(
        iteration=int(header["iteration"]),
        params=params,
        optimizers=optimizers,
        strategy_state=strategy_state,
        extra=extra,
        rng_state=tensors["rng.torch"],
        header=header,
    )
