"""Reading and checking the codebook's inputs: a features file and a tracks file of one scene and scale.

The two files are checked against each other through their attributes before any array is read:
frame names, mask counts per frame, the masks file and scene they were made from (`inputs` attr), and
the `scene`/`scale` in their parameters when recorded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.io.h5 import frame_names_of, open_h5_for_read, read_json_attr

FEATURES_KIND = "features"
TRACKS_KIND = "tracks"
# Rows whose norm is this far from 1 are not the L2-normalised features the contract promises
# (float16 storage keeps norms within ~1e-3 of 1).
NORM_TOLERANCE = 0.05


@dataclass(frozen=True, eq=False)
class CodebookInputs:
    """Every mask of a scene at one scale, frames concatenated in the scene's frame order."""

    features: np.ndarray  # [M, D] float32, L2-normalised rows
    labels: np.ndarray  # [M] int32, track label, −1 = unmatched
    frame_names: tuple[str, ...]  # [F]
    frame_offsets: np.ndarray  # [F + 1] int64, frame f owns rows frame_offsets[f]:frame_offsets[f + 1]
    features_model: dict[str, Any]  # `model` attr of the features file (backend, `simulated`)
    tracks_model: dict[str, Any]  # `model` attr of the tracks file
    masks_record: Any = (
        None  # the masks file both were made from ({path, sha256}), as the features file records it
    )

    @property
    def n_masks(self) -> int:
        return int(self.features.shape[0])

    @property
    def simulated(self) -> bool:
        """True when either input was made by a `sim` backend."""
        return bool(self.features_model.get("simulated", False) or self.tracks_model.get("simulated", False))


def _masks_source(inputs: dict[str, Any]) -> str | None:
    """The masks file an input file was derived from, as recorded in its `inputs` attr (or None)."""
    masks = inputs.get("masks")
    if isinstance(masks, dict):
        masks = masks.get("sha256") or masks.get("path")
    return None if masks is None else str(masks)


def _mismatch(features_path: Path, tracks_path: Path, what: str, f_val: Any, t_val: Any) -> ValueError:
    return ValueError(
        f"the features file {features_path} and the tracks file {tracks_path} are not of the same scene "
        f"and scale: {what} differ (features: {f_val}; tracks: {t_val}). Rebuild both from the same "
        "masks/{scale}.h5 (the workflow does: pass results/{scene}/features/{scale}.h5 and "
        "results/{scene}/tracks/{scale}.h5 of one scene and scale)"
    )


def _short(names: list[str], other: list[str]) -> str:
    if len(names) != len(other):
        return f"{len(names)} frames"
    first = next(i for i, (a, b) in enumerate(zip(names, other, strict=True)) if a != b)
    return f"frame {first} is {names[first]!r}"


def check_inputs_match(features_path: Path, tracks_path: Path, f: Any, t: Any) -> list[str]:
    """Refuse a features and a tracks file of different scenes or scales; return the frame names."""
    f_inputs, t_inputs = read_json_attr(f, "inputs", {}) or {}, read_json_attr(t, "inputs", {}) or {}
    f_masks, t_masks = _masks_source(f_inputs), _masks_source(t_inputs)
    if f_masks is not None and t_masks is not None and f_masks != t_masks:
        raise _mismatch(features_path, tracks_path, "the masks files they were made from", f_masks, t_masks)
    f_params, t_params = read_json_attr(f, "params", {}) or {}, read_json_attr(t, "params", {}) or {}
    for key, f_src, t_src in (
        ("scene", f_inputs, t_inputs),
        ("scene", f_params, t_params),
        ("scale", f_params, t_params),
    ):
        if key in f_src and key in t_src and f_src[key] != t_src[key]:
            raise _mismatch(features_path, tracks_path, f"the {key!r} attributes", f_src[key], t_src[key])

    f_names, t_names = frame_names_of(f), frame_names_of(t)
    if f_names != t_names:
        raise _mismatch(
            features_path, tracks_path, "the frame names", _short(f_names, t_names), _short(t_names, f_names)
        )
    for name in f_names:
        for path, group, dataset in ((features_path, f, "features"), (tracks_path, t, "labels")):
            if name not in group or dataset not in group[name]:
                raise ValueError(f"{path}: frame {name!r} has no dataset {dataset!r}; rebuild the file")
        m_f, m_t = f[name]["features"].shape[0], t[name]["labels"].shape[0]
        if m_f != m_t:
            raise _mismatch(
                features_path,
                tracks_path,
                f"the mask counts of frame {name!r}",
                f"{m_f} masks",
                f"{m_t} masks",
            )
    return f_names


def load_inputs(
    features_path: str | os.PathLike,
    tracks_path: str | os.PathLike,
    *,
    frame_names: list[str] | None = None,
) -> CodebookInputs:
    """Read and check the two files (`frame_names`: the scene's, checked when given)."""
    features_path, tracks_path = Path(features_path), Path(tracks_path)
    with (
        open_h5_for_read(features_path, kind=FEATURES_KIND) as f,
        open_h5_for_read(tracks_path, kind=TRACKS_KIND) as t,
    ):
        names = check_inputs_match(features_path, tracks_path, f, t)
        if frame_names is not None and list(frame_names) != names:
            raise ValueError(
                f"{features_path}: its frames ({_short(names, list(frame_names))}) are not the scene's "
                f"({_short(list(frame_names), names)}); it was made for another scene: rerun its rule"
            )
        dims = {f[n]["features"].shape[1] for n in names if f[n]["features"].ndim == 2}
        dim_attr = f.attrs.get("dim")
        if len(dims) > 1 or (dim_attr is not None and dims and int(dim_attr) not in dims):
            raise ValueError(
                f"{features_path}: feature dimensions differ between frames or from its `dim` attribute "
                f"({sorted(dims)} vs dim={dim_attr}); rebuild it"
            )
        dim = int(dim_attr) if dim_attr is not None else (dims.pop() if dims else 0)
        counts = [int(t[n]["labels"].shape[0]) for n in names]
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        feats = np.empty((int(offsets[-1]), dim), np.float32)
        labels = np.empty(int(offsets[-1]), np.int32)
        for i, n in enumerate(names):
            feats[offsets[i] : offsets[i + 1]] = f[n]["features"][:]
            labels[offsets[i] : offsets[i + 1]] = t[n]["labels"][:]
        features_model = read_json_attr(f, "model", {}) or {}
        tracks_model = read_json_attr(t, "model", {}) or {}
        masks_record = (read_json_attr(f, "inputs", {}) or {}).get("masks")

    norms = np.linalg.norm(feats, axis=1)
    bad = np.flatnonzero(~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE))
    if len(bad):
        frame = names[int(np.searchsorted(offsets, bad[0], side="right")) - 1]
        raise ValueError(
            f"{features_path}: {len(bad)} feature rows are not unit vectors (first in frame {frame!r}, "
            f"norm {norms[bad[0]]:.4g}); the features stage writes L2-normalised rows: rebuild the file"
        )
    if labels.size and int(labels.min()) < -1:
        raise ValueError(f"{tracks_path}: labels below -1 (min {int(labels.min())}); -1 means unmatched")
    feats /= norms[:, None]
    return CodebookInputs(
        features=feats,
        labels=labels,
        frame_names=tuple(names),
        frame_offsets=offsets,
        features_model=features_model,
        tracks_model=tracks_model,
        masks_record=masks_record,
    )
