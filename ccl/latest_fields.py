"""A run's fields as they stand now: the final file, or, while its training runs, the latest partial
checkpoint that training has written (`ccl.splat.checkpoint.partial_path`, every `checkpoint_every`
steps, atomically). `ccl export` and `ccl view` read them so; nothing here writes, locks or waits, so
training never waits on a reader.

A reader that follows a run as it trains (`ccl view`) asks `field_stamp` each time (one or two
`os.stat`s: the file's name, inode, size and modification time) and reads the field again only when
that changed; `LatestField.progress` is how far training had come by the file it read.

A partial checkpoint holds the training state: the Gaussian parameters under `param.*` (a colour run,
or a joint language run), or only `param.features` with the colour field's frozen geometry (a frozen
language run), and the decoder under `extra.decoder.*`.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RGB_FILE = "rgb.safetensors"


@dataclass(frozen=True)
class LatestField:
    """One field as it stands: what was read and how far its training had come."""

    path: Path  # the file read: the final field or its .partial.safetensors
    field: Any  # ccl.splat.model.Gaussians (colour) or ccl.splat.checkpoint.LanguageField
    step: int  # training steps behind it
    iterations: int  # steps its training runs to
    header: dict[str, Any] = dataclasses.field(default_factory=dict, repr=False)  # the file's JSON header

    @property
    def partial(self) -> bool:
        return self.path.name.endswith(".partial.safetensors")

    @property
    def progress(self) -> dict[str, Any]:
        """How training stood: a partial checkpoint's `progress` (the means over the steps since the one
        before: loss, psnr_train, accuracy_train; ccl.splat.trainer.window_progress), a final field's
        metrics (psnr_heldout, psnr_train, accuracy_all, ...); {} where the file records none."""
        return dict(self.header.get("progress" if self.partial else "metrics") or {})

    def describe(self) -> str:
        if self.partial:
            return f"still training: the partial checkpoint at step {self.step} of {self.iterations} ({self.path})"
        return f"trained: {self.iterations} steps ({self.path})"


def field_stamp(final: str | os.PathLike) -> tuple[str, int, int, int] | None:
    """What a reader of the field `final` takes now (`final`, else its partial checkpoint), as (name,
    inode, size, modification time in ns): a new checkpoint, written atomically, changes it. None when
    neither file is there. Only `os.stat`: cheap enough to ask every second."""
    from ccl.splat.checkpoint import partial_path

    for p in (Path(final), partial_path(final)):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue
        return (p.name, st.st_ino, st.st_size, st.st_mtime_ns)
    return None


def rgb_path(run_dir: str | os.PathLike) -> Path:
    """The colour field's final file of a run folder (results/{scene}/seed{N})."""
    return Path(run_dir) / "gaussians" / RGB_FILE


def _read_state(path: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(tensors, header) of a partial checkpoint, or None when it is gone (training just finished)."""
    from ccl.io.checkpoint import load_safetensors

    try:
        return load_safetensors(path)
    except FileNotFoundError:
        return None


def latest_rgb(run_dir: str | os.PathLike, *, scene: str | None = None) -> LatestField:
    """The colour field of a run folder (results/{scene}/seed{N}): final, else its latest partial."""
    from ccl.splat.checkpoint import load_rgb_field, partial_path
    from ccl.splat.model import Gaussians

    final = rgb_path(run_dir)
    part = partial_path(final)
    if not final.is_file() and part.is_file() and (state := _read_state(part)) is not None:
        tensors, header = state
        if scene is not None and header.get("scene", scene) != scene:
            raise ValueError(
                f"{part}: partial checkpoint of scene {header.get('scene')!r}, but this run is for scene "
                f"{scene!r}; point to that scene's own results folder"
            )
        params = {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}
        iterations = int(header.get("config", {}).get("iterations", header["iteration"]))
        gaussians = Gaussians.from_param_dict(params)
        return LatestField(part, gaussians, int(header["iteration"]), iterations, header)
    if not final.is_file():
        raise FileNotFoundError(
            f"{final}: not found, nor a partial checkpoint of it; the colour field is made by the workflow's "
            "rule train_rgb: run the workflow up to it"
        )
    gaussians, header = load_rgb_field(final, scene=scene)
    n = int(header.get("iteration", 0))
    return LatestField(final, gaussians, n, n, header)


def language_paths(run_dir: str | os.PathLike, variant: str) -> dict[str, Path]:
    """scale -> the field file a reader takes now: `{scale}.safetensors`, else `{scale}.partial.safetensors`."""
    gdir = Path(run_dir) / "gaussians" / variant
    out: dict[str, Path] = {}
    for p in sorted(gdir.glob("*.safetensors")):
        if p.name.endswith(".partial.safetensors"):
            out.setdefault(p.name.removesuffix(".partial.safetensors"), p)
        elif ".rejected-" not in p.name:
            out[p.name.removesuffix(".safetensors")] = p
    return out


def latest_language(path: str | os.PathLike, *, colour: Any = None, scene: str | None = None) -> LatestField:
    """The language field at `path` (final or partial, `language_paths`); a frozen run's partial takes the
    colour field's Gaussians `colour` (its geometry: that run never changes it)."""
    from ccl.splat.checkpoint import LanguageField, load_language_field
    from ccl.splat.decoder import decoder_from_tensors
    from ccl.splat.model import Gaussians

    path = Path(path)
    if not path.name.endswith(".partial.safetensors"):
        f = load_language_field(path, scene=scene)
        n = int(f.header.get("iteration", 0))
        return LatestField(path, f, n, n, f.header)
    state = _read_state(path)
    if state is None:  # training finished between listing and reading: the final file is there now
        return latest_language(path.with_name(path.name.replace(".partial", "")), colour=colour, scene=scene)
    tensors, header = state
    params = {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}
    joint = bool(header.get("config", {}).get("joint", False))
    if joint:
        gaussians = Gaussians.from_param_dict(params)
        iterations = header.get("rgb_config", {}).get("iterations", header["iteration"])
    else:
        if colour is None:
            raise ValueError(f"{path}: a frozen language run's partial checkpoint needs the colour field")
        gaussians = colour
        iterations = header.get("config", {}).get("iterations", header["iteration"])
    decoder = decoder_from_tensors(
        {k.removeprefix("extra."): v for k, v in tensors.items() if k.startswith("extra.")}, path=path
    )
    decoder.eval()
    field = LanguageField(gaussians, params["features"].detach(), decoder, header)
    return LatestField(path, field, int(header["iteration"]), int(iterations), header)
