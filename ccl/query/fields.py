"""A variant's trained language fields as a source of class maps and prototypes, one per scale.

Files (docs/contracts.md), in a seed's run folder (ccl.results_tree):
results/{scene}/seed{N}/gaussians/{variant}/{scale}.safetensors (the language field: Gaussians,
per-Gaussian features [G, 8], decoder) and results/{scene}/seed{N}/codebook/{variant}/{scale}.h5
(`prototypes` [N, D]); the features the text encoder is read from are the scene's, one level up. Rendering goes through ccl.splat.render; torch is imported only there.
The maps a field was trained on (its codebook painted on results/{scene}/masks/{scale}.h5) are read only
by the selection cleaning that asks them (`training_maps`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ccl.results_tree import RunFolders, as_run

SCALE_ORDER = ("sp", "wp", "all")


@dataclass
class LanguageFieldSource:
    """Class maps and prototypes of one variant's language fields, one per scale (loaded lazily)."""

    fields: Mapping[str, Path]  # scale -> results/{scene}/seed{N}/gaussians/{variant}/{scale}.safetensors
    codebooks: Mapping[str, Path]  # scale -> results/{scene}/seed{N}/codebook/{variant}/{scale}.h5
    scene: str | None = None
    device: str = "cpu"
    # scale -> results/{scene}/masks/{scale}.h5: the masks the field's training maps were painted on (read
    # by `training_maps` alone; a results folder copied without them answers every other question)
    masks: Mapping[str, Path] | None = None
    _fields: dict[str, Any] = field(default_factory=dict, repr=False)
    _protos: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _maps: dict[str, Mapping[str, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if set(self.fields) != set(self.codebooks):
            raise ValueError(
                f"scales of the language fields {sorted(self.fields)} and codebooks {sorted(self.codebooks)} differ"
            )
        for p in [*self.fields.values(), *self.codebooks.values()]:
            if not Path(p).is_file():
                raise FileNotFoundError(f"{p}: not found (an input of evaluation; run the workflow up to it)")

    @property
    def scales(self) -> tuple[str, ...]:
        order = SCALE_ORDER
        return tuple(sorted(self.fields, key=lambda s: order.index(s) if s in order else len(order)))

    def prototypes(self, scale: str) -> np.ndarray:
        if scale not in self._protos:
            self._protos[scale] = read_prototypes(self.codebooks[scale])
        return self._protos[scale]

    def language_field(self, scale: str):
        if scale not in self._fields:
            from ccl.splat.checkpoint import load_language_field

            f = load_language_field(self.fields[scale], scene=self.scene)
            from ccl.io.provenance import check_made_from

            check_made_from(
                self.fields[scale], (f.header.get("inputs") or {}).get("codebook"), self.codebooks[scale],
                role="codebook", fix="its prototype indices would name other prototypes; use the field and "
                "codebook of one run (rerun the workflow to retrain the field on this codebook)",
            )  # fmt: skip
            n = self.prototypes(scale).shape[0]
            if f.n_classes != n:
                raise ValueError(
                    f"{self.fields[scale]} decodes into {f.n_classes} classes but {self.codebooks[scale]} has "
                    f"{n} prototypes: they are of different runs; rerun the workflow"
                )
            self._fields[scale] = _to_device(f, self.device)
        return self._fields[scale]

    def masks_file(self, scale: str) -> Path:
        """The masks file the training maps of `scale` are painted on; FileNotFoundError, with the fix,
        where it is not on this machine (checked before any field is read)."""
        masks = Path((self.masks or {}).get(scale, f"<no masks file given for scale {scale}>"))
        if not masks.is_file():
            raise FileNotFoundError(
                f"{masks}: not found; the training maps of the {scale} field (to check a selection against "
                "what training taught) are painted on it: copy the scene's masks folder beside the run, or "
                "clean without them (ccl query3d --clean components)"
            )
        return masks

    def training_maps(self, scale: str) -> Mapping[str, np.ndarray]:
        """The index maps the field of `scale` was trained on: frame name -> [H, W] int64, the class each
        pixel was taught (-1: no mask there), each painted when asked (ccl.codebook.FrameIndexMaps).
        Refused unless the masks file is the one the field records (its header's inputs), naming both."""
        if scale in self._maps:
            return self._maps[scale]
        masks = self.masks_file(scale)
        from ccl.codebook.index_maps import FrameIndexMaps
        from ccl.io.provenance import check_made_from

        f = self.language_field(scale)
        check_made_from(
            self.fields[scale], (f.header.get("inputs") or {}).get("masks"), masks, role="masks file",
            fix="the field was trained on the maps of other masks; use the masks and field of one run "
            "(rerun the workflow)",
        )  # fmt: skip
        self._maps[scale] = FrameIndexMaps(self.codebooks[scale], masks)
        return self._maps[scale]

    def class_map(self, scale: str, camera) -> np.ndarray:
        from ccl.splat.render import render_class_map

        return render_class_map(self.language_field(scale), camera)


def _to_device(f: Any, device: str) -> Any:
    """The field on `device` (on the device it is already on, torch's `.to` returns the same tensors)."""
    from ccl.splat.checkpoint import LanguageField

    return LanguageField(f.gaussians.to(device), f.features.to(device), f.decoder.to(device), f.header)


def read_prototypes(path: str | os.PathLike) -> np.ndarray:
    """The codebook's `prototypes` [N, D] float32 (docs/contracts.md, "Codebook")."""
    from ccl.io.h5 import open_h5_for_read

    with open_h5_for_read(path, kind="codebook") as f:
        if "prototypes" not in f:
            raise ValueError(f"{path}: codebook file has no 'prototypes' dataset")
        return np.asarray(f["prototypes"][()], dtype=np.float32)


def scene_fields(
    run: RunFolders | str | os.PathLike, variant: str
) -> tuple[dict[str, Path], dict[str, Path]]:
    """(fields, codebooks) by scale of one variant in a run (a RunFolders, or a folder naming one: a
    results/{scene}/seed{N} folder, or a results/{scene} folder with one run; ccl.results_tree)."""
    run_dir = as_run(run).run_dir
    gdir, cdir = run_dir / "gaussians" / variant, run_dir / "codebook" / variant
    fields_ = {
        p.name.removesuffix(".safetensors"): p
        for p in sorted(gdir.glob("*.safetensors"))
        if not p.name.endswith(".partial.safetensors")
    }
    if not fields_:
        have = sorted(p.name for p in (run_dir / "gaussians").glob("*") if p.is_dir())
        raise FileNotFoundError(
            f"{gdir}: no trained language field (*.safetensors) for variant {variant!r}; "
            f"variants with fields here: {have}; run the workflow first"
        )
    codebooks = {s: cdir / f"{s}.h5" for s in fields_}
    missing = [str(p) for p in codebooks.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"codebook file(s) {missing} not found beside the fields in {gdir}")
    return fields_, codebooks


# Features settings that change no text embedding (a batch size only changes speed).
TEXT_NEUTRAL_FEATURES_KEYS = ("batch_size",)


def scene_text_encoder(scene_dir: str | os.PathLike) -> Any:
    """The features config (`ccl.features.FeaturesConfig`) the mask features of a results/{scene} folder
    (`RunFolders.scene_dir`) were made with, read
    from its features files (their `params`): the one text encoder whose embeddings share a space with
    the scene's prototypes. Never the current directory's config, which may be another run's."""
    from ccl.config import section
    from ccl.features import FeaturesConfig
    from ccl.io import open_h5_for_read
    from ccl.io.h5 import read_json_attr

    folder = Path(scene_dir) / "features"
    paths = sorted(folder.glob("*.h5"))
    if not paths:
        raise FileNotFoundError(
            f"{folder}: no features file (the workflow's rule clip_features makes them); queries embed their "
            "text with the model that made the scene's mask features, named there"
        )
    made_with, models = {}, {}
    for path in paths:
        with open_h5_for_read(path, kind="features") as f:
            params = read_json_attr(f, "params", {})
            models[path] = read_json_attr(f, "model", {})
        made_with[path] = {
            k: v for k, v in params.items() if k not in ("seed", "device", *TEXT_NEUTRAL_FEATURES_KEYS)
        }
    first = paths[0]
    for path in paths[1:]:
        if made_with[path] != made_with[first]:
            diff = sorted(
                k
                for k in made_with[first].keys() | made_with[path].keys()
                if made_with[first].get(k) != made_with[path].get(k)
            )
            raise ValueError(
                f"{first} and {path}: made with different features settings ({diff}), so no one text encoder "
                "fits both scales; rerun the workflow so that both come from one config"
            )
    cfg = section(FeaturesConfig, made_with[first], where=f"{first}: params")
    for path in paths:
        check_text_weights(path, models[path], cfg)
    return cfg


def check_text_weights(features_path: str | os.PathLike, model: Mapping[str, Any], cfg: Any) -> None:
    """Refuse weights at the configured path that are not those the features file was made with (its
    `model`'s `pretrained_sha256`, `model_config_sha256`): text embedded with other weights of the same
    architecture shares no space with the scene's prototypes, and nothing else would tell."""
    from ccl.io.hashing import weights_sha256

    for key, file_key, cfg_key in (
        ("pretrained_sha256", "pretrained", "pretrained"),
        ("model_config_sha256", "model_config_file", "model_config_file"),
    ):
        want = model.get(key)
        configured = getattr(cfg, cfg_key, None)
        if not want or not configured:
            continue
        path = Path(configured).expanduser()
        if not path.is_file():
            continue  # the encoder's build names a missing file, with its config key
        got = weights_sha256(path)
        if got != want:
            raise ValueError(
                f"{path} (features.{cfg_key}): sha256 {got[:12]}…, but {features_path} was made with "
                f"{model.get(file_key, 'another file')} of sha256 {want[:12]}…: text embedded with other "
                "weights would not share a space with the scene's prototypes. Put the weights the features "
                f"were made with back at {path}, or remake the features with these: "
                f"`snakemake {features_path} --forcerun clip_features`"
            )


def check_text_encoder_agrees(
    scene_cfg: Any, given: Mapping[str, Any], *, scene_dir: str | os.PathLike, config: str
) -> None:
    """Refuse an explicit config whose features settings differ from those the scene was made with."""
    from ccl.config import as_params

    made = as_params(scene_cfg)
    diff = sorted(
        k for k, v in given.items() if k not in TEXT_NEUTRAL_FEATURES_KEYS and k in made and made[k] != v
    )
    if diff:
        theirs = {k: made[k] for k in diff}
        yours = {k: given[k] for k in diff}
        raise ValueError(
            f"{config}: its features settings {yours} differ from those {Path(scene_dir) / 'features'} was made "
            f"with {theirs}: text embedded so would not share a space with the scene's prototypes; drop "
            "--config (the scene's own settings are used) or give the run's own config"
        )
