"""`ccl export`: a run's whole field as a PLY other tools open, optionally with its language features.

    3dgs    the colour field's Gaussians in the reference 3DGS layout (ccl.io.gaussians_ply), their float32
            values copied unchanged (a round trip renders bit-identically)
    points  x y z, red green blue (the degree-0 colour): a point per Gaussian

`with_language` adds, per scale s of the variant (finest first), `lang_{s}_0 .. lang_{s}_{F-1}` (float,
the Gaussian's own language feature) and `class_{s}` (int, the prototype its feature decodes to; the
prototypes are the rows of codebook/{variant}/{s}.h5). A frozen language field shares the colour
field's Gaussians; a joint one has its own, so then one scale (`scale`) is exported, with its Gaussians.
A field still training is exported from its latest partial checkpoint (ccl.latest_fields), said so.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ccl.latest_fields import LatestField, language_paths, latest_language, latest_rgb
from ccl.results_tree import RunFolders, as_run

log = logging.getLogger(__name__)

EXPORT_FORMATS = {
    "3dgs": "the Gaussians in the reference 3DGS PLY layout (SuperSplat, any 3DGS viewer)",
    "points": "x y z, red green blue: a point per Gaussian (MeshLab, CloudCompare, Open3D)",
}


@dataclass(frozen=True)
class ExportResult:
    path: Path
    format: str
    n_gaussians: int
    properties: tuple[str, ...]  # the vertex properties written, in order
    read: tuple[LatestField, ...]  # the fields read: colour first, then each language scale
    scales: tuple[str, ...]  # the language scales written (empty without with_language)


def check_export_format(format: str) -> str:
    if format not in EXPORT_FORMATS:
        raise ValueError(
            f"--format {format}: unknown; accepted: "
            + "; ".join(f"{k} ({v})" for k, v in EXPORT_FORMATS.items())
        )
    return format


def _same_geometry(a: Any, b: Any) -> bool:
    import torch

    return len(a) == len(b) and bool(torch.equal(a.means.cpu(), b.means.cpu()))


def language_table(fields: dict[str, Any]) -> np.ndarray:
    """Per scale (in order): lang_{s}_0..F-1 float32 and class_{s} int32, as one structured array [G]."""
    from ccl.query.view import decode_gaussian_classes

    cols: list[tuple[str, np.ndarray]] = []
    for s, f in fields.items():
        feats = f.features.detach().cpu().numpy().astype(np.float32)
        cols += [(f"lang_{s}_{i}", feats[:, i]) for i in range(feats.shape[1])]
        cols.append((f"class_{s}", decode_gaussian_classes(f).astype(np.int32)))
    table = np.empty(len(cols[0][1]), dtype=[(n, c.dtype.str) for n, c in cols])
    for n, c in cols:
        table[n] = c
    return table


def export_field(
    run: RunFolders | str | os.PathLike,
    out: str | os.PathLike,
    *,
    format: str = "3dgs",
    with_language: bool = False,
    variant: str = "full",
    scale: str = "auto",
    scene: str | None = None,
) -> ExportResult:
    """Write the run's whole field to `out` (a .ply) in `format`; see the module's docstring."""
    from ccl.io.gaussians_ply import join_vertex_tables, write_gaussians_ply, write_vertex_ply
    from ccl.io.provenance import file_record
    from ccl.query.fields import SCALE_ORDER
    from ccl.query.view import gaussian_colours

    check_export_format(format)
    run = as_run(run)
    colour = latest_rgb(run.run_dir, scene=scene)
    read, scales = [colour], ()
    gaussians, extra = colour.field, None
    if with_language:
        paths = language_paths(run.run_dir, variant)
        if not paths:
            raise FileNotFoundError(
                f"{run.run_dir / 'gaussians' / variant}: no language field of variant {variant!r}; the "
                "workflow's rule train_language makes them: run the workflow up to it, or drop --with-language"
            )
        order = sorted(paths, key=lambda s: SCALE_ORDER.index(s) if s in SCALE_ORDER else len(SCALE_ORDER))
        if scale != "auto" and scale not in paths:
            raise ValueError(f"--scale {scale}: no language field of that scale; have {order}")
        scales = tuple(order if scale == "auto" else [scale])
        lang = {s: latest_language(paths[s], colour=colour.field, scene=scene) for s in scales}
        own = [s for s in scales if not _same_geometry(lang[s].field.gaussians, colour.field)]
        if own and len(scales) > 1:
            raise ValueError(
                f"--with-language: the language fields of scales {own} have Gaussians of their own (joint "
                f"training), unlike the colour field's; export one scale with --scale (one of {order})"
            )
        if own:
            gaussians = lang[own[0]].field.gaussians
        read += [lang[s] for s in scales]
        extra = language_table({s: lang[s].field for s in scales})
    made_by = {
        "command": "ccl export", "format": format, "variant": variant if with_language else None,
        "scales": list(scales),
        "fields": [{**file_record(f.path), "step": f.step, "iterations": f.iterations} for f in read],
    }  # fmt: skip
    for f in read:
        if f.partial:
            log.warning("%s", f.describe())
    if format == "3dgs":
        path = write_gaussians_ply(out, gaussians, made_by=made_by, extra=extra)
    else:
        xyz = gaussians.means.detach().cpu().numpy().astype(np.float32)
        rgb = gaussian_colours(gaussians)
        table = np.empty(
            len(xyz), dtype=[(n, "<f4") for n in "xyz"] + [(n, "u1") for n in ("red", "green", "blue")]
        )
        for i, n in enumerate("xyz"):
            table[n] = xyz[:, i]
        for i, n in enumerate(("red", "green", "blue")):
            table[n] = rgb[:, i]
        if extra is not None:
            table = join_vertex_tables(table, extra, where=str(out))
        path = write_vertex_ply(out, table, made_by=made_by)
    props = tuple(_ply_properties(path))
    return ExportResult(Path(path), format, len(gaussians), props, tuple(read), scales)


def _ply_properties(path: Path) -> list[str]:
    with path.open("rb") as f:
        head = f.read(1 << 16).split(b"end_header", 1)[0].decode("ascii", errors="replace")
    return [ln.split()[-1] for ln in head.splitlines() if ln.startswith("property")]
