"""3DGS PLY: the Gaussians as the original gaussian-splatting code saves them and every 3DGS viewer reads
them (SuperSplat, the antimatter15 and gsplat.js viewers, nerfstudio's and gsplat's exporters).

One `vertex` element of float32 properties, binary little-endian, in this order:

    x y z                 position (world)
    nx ny nz              zeros (3DGS writes them; viewers ignore them)
    f_dc_0 f_dc_1 f_dc_2  degree-0 SH coefficient, red green blue
    f_rest_0 ...          the 3·(K − 1) higher coefficients, K = (degree + 1)², CHANNEL-MAJOR:
                          f_rest_{c·(K−1) + k} is coefficient k + 1 of channel c (3DGS stores them
                          [G, K−1, 3] and saves `transpose(1, 2).flatten(1)`)
    opacity               logit (opacity = sigmoid)
    scale_0 scale_1 scale_2  log of the standard deviations
    rot_0 rot_1 rot_2 rot_3  quaternion w x y z, not necessarily normalised

These are exactly the unconstrained parameters of `ccl.splat.model.Gaussians` (same SH basis and signs,
same colour = SH + 0.5, same wxyz order), so writing and reading copy float32 values unchanged: a round
trip is lossless. The writer records what made the file as a `comment ccl {json}` header line, which
PLY readers skip.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ccl.io.ply import PLY_TYPES

if TYPE_CHECKING:
    from ccl.splat.model import Gaussians

SH_REST_COUNTS = {0: 0, 1: 9, 2: 24, 3: 45}  # degree -> number of f_rest_* properties
MADE_BY_COMMENT = "ccl"  # `comment ccl {json}`: the header line holding what made the file


def gaussians_ply_properties(sh_degree: int) -> list[str]:
    """The vertex properties of a 3DGS PLY of SH degree `sh_degree`, in the order 3DGS writes them."""
    if sh_degree not in SH_REST_COUNTS:
        raise ValueError(f"sh_degree {sh_degree}: a 3DGS PLY holds SH degree 0 to 3")
    return [
        "x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
        *(f"f_rest_{i}" for i in range(SH_REST_COUNTS[sh_degree])),
        "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3",
    ]  # fmt: skip


def gaussians_to_ply_table(gaussians: Gaussians) -> np.ndarray:
    """The Gaussians as a structured array [G] of the 3DGS vertex properties (little-endian float32)."""

    def arr(t: Any) -> np.ndarray:
        return np.asarray(t.detach().cpu().numpy(), dtype=np.float32)

    g, degree = len(gaussians), gaussians.sh_degree
    names = gaussians_ply_properties(degree)
    sh0, shn = arr(gaussians.sh0), arr(gaussians.shN)  # [G, 1, 3], [G, K-1, 3]
    columns = np.concatenate(
        [
            arr(gaussians.means),
            np.zeros((g, 3), np.float32),
            sh0[:, 0, :],
            shn.transpose(0, 2, 1).reshape(g, -1),  # channel-major, as 3DGS saves them
            arr(gaussians.opacity_logits)[:, None],
            arr(gaussians.log_scales),
            arr(gaussians.quats),
        ],
        axis=1,
    )
    assert columns.shape == (g, len(names)), (columns.shape, len(names))
    table = np.empty(g, dtype=[(n, "<f4") for n in names])
    for i, n in enumerate(names):
        table[n] = columns[:, i]
    return table


def write_gaussians_ply(
    path: str | os.PathLike,
    gaussians: Gaussians,
    *,
    keep: np.ndarray | None = None,
    made_by: Mapping[str, Any] | None = None,
    extra: np.ndarray | None = None,
) -> Path:
    """Write the Gaussians (those where `keep` [G] bool is true, when given) as a 3DGS PLY, atomically.

    `made_by` (JSON-able) is recorded as a `comment ccl {json}` header line. `extra` (a structured array
    [G] of numeric fields, e.g. language features) adds its fields as vertex properties after 3DGS's,
    which 3DGS viewers skip. Refuses an empty selection (a PLY with no Gaussian opens as nothing in a
    viewer) and non-finite parameters.
    """
    from ccl.splat.model import check_finite_gaussians

    path = Path(path)
    check_finite_gaussians(gaussians, where=f"{path} (refusing to write)")
    table = gaussians_to_ply_table(gaussians)
    if extra is not None:
        table = join_vertex_tables(table, extra, where=str(path))
    if keep is not None:
        keep = np.asarray(keep, dtype=bool).reshape(-1)
        if keep.shape != (len(table),):
            raise ValueError(f"{path}: keep has {keep.size} entries for {len(table)} Gaussians")
        table = table[keep]
    if len(table) == 0:
        raise ValueError(f"{path}: no Gaussian to write (the selection is empty); nothing was written")
    return write_vertex_ply(path, table, made_by=made_by)


def join_vertex_tables(a: np.ndarray, b: np.ndarray, *, where: str) -> np.ndarray:
    """Two structured arrays of one length side by side (a's fields, then b's)."""
    if len(a) != len(b):
        raise ValueError(f"{where}: {len(b)} extra vertex values for {len(a)} vertices")
    clash = sorted(set(a.dtype.names) & set(b.dtype.names))
    if clash:
        raise ValueError(f"{where}: extra vertex properties {clash} are already properties of the layout")
    out = np.empty(len(a), dtype=a.dtype.descr + b.dtype.descr)
    for table in (a, b):
        for n in table.dtype.names:
            out[n] = table[n]
    return out


_PLY_TYPE_OF = {"i1": "char", "u1": "uchar", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
                "f4": "float", "f8": "double"}  # fmt: skip


def write_vertex_ply(
    path: str | os.PathLike, table: np.ndarray, *, made_by: Mapping[str, Any] | None = None
) -> Path:
    """A structured array [N] of scalar numeric fields as a binary little-endian PLY `vertex` element,
    atomically; `made_by` (JSON-able) as a `comment ccl {json}` header line."""
    from ccl.io.atomic import _json_default, atomic_path

    path = Path(path)
    table = table.astype([(n, "<" + table.dtype[n].str[1:]) for n in table.dtype.names])
    lines = ["ply", "format binary_little_endian 1.0"]
    if made_by is not None:
        note = json.dumps(dict(made_by), sort_keys=True, default=_json_default)  # ASCII, one line
        lines.append(f"comment {MADE_BY_COMMENT} {note}")
    lines.append(f"element vertex {len(table)}")
    lines += [f"property {_PLY_TYPE_OF[table.dtype[n].str[1:]]} {n}" for n in table.dtype.names]
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")
    with atomic_path(path) as tmp:
        with tmp.open("wb") as f:
            f.write(header)
            f.write(table.tobytes())
    return path


@dataclass(frozen=True)
class _Header:
    fmt: str
    comments: tuple[str, ...]
    elements: tuple[tuple[str, int, tuple[tuple[str, str], ...]], ...]  # (name, count, ((prop, dtype),))
    body_offset: int


def _fix(path: Path, what: str) -> ValueError:
    return ValueError(
        f"{path}: {what}; expected a 3DGS PLY (a vertex element with x y z, f_dc_0..2, f_rest_*, "
        "opacity, scale_0..2, rot_0..3, binary), as gaussian-splatting's point_cloud.ply or "
        "`ccl query3d --format 3dgs` writes it"
    )


def _read_header(path: Path) -> _Header:
    with path.open("rb") as f:
        if f.readline().strip() != b"ply":
            raise _fix(path, "not a PLY file (its first line is not 'ply')")
        fmt, comments, elements = None, [], []
        while True:
            line = f.readline()
            if not line:
                raise _fix(path, "the header has no end_header line")
            t = line.decode("ascii", errors="replace").split()
            if not t:
                continue
            if t[0] == "end_header":
                break
            if t[0] == "comment":
                comments.append(line.decode("ascii", errors="replace").strip()[len("comment") :].strip())
            elif t[0] == "format":
                fmt = t[1] if len(t) > 1 else None
            elif t[0] == "element" and len(t) == 3:
                elements.append((t[1], int(t[2]), []))
            elif t[0] == "property" and elements:
                if t[1] == "list":
                    elements[-1][2].append((t[-1], "list"))
                elif t[1] in PLY_TYPES and len(t) == 3:
                    elements[-1][2].append((t[2], PLY_TYPES[t[1]]))
                else:
                    raise _fix(path, f"unknown property line {' '.join(t)!r}")
        offset = f.tell()
    return _Header(fmt or "", tuple(comments), tuple((n, c, tuple(p)) for n, c, p in elements), offset)


def gaussians_ply_made_by(path: str | os.PathLike) -> dict[str, Any] | None:
    """What made a 3DGS PLY (its `comment ccl {json}` line, as the writer's `made_by`), or None."""
    for c in _read_header(Path(path)).comments:
        if c.startswith(MADE_BY_COMMENT + " "):
            return json.loads(c[len(MADE_BY_COMMENT) + 1 :])
    return None


def read_gaussians_ply(path: str | os.PathLike) -> Gaussians:
    """A 3DGS PLY as `Gaussians` (float32 torch tensors, the file's unconstrained values unchanged).

    Properties are found by name (their order and any extra ones, such as a filter_3D, do not matter);
    the SH degree follows from the number of f_rest_* properties. Refuses, naming the file: not a PLY,
    ASCII or another layout (e.g. a compressed SuperSplat PLY), missing properties, a truncated body,
    non-finite values or zero scales.
    """
    import torch

    from ccl.splat.model import Gaussians, check_finite_gaussians

    path = Path(path)
    head = _read_header(path)
    endian = {"binary_little_endian": "<", "binary_big_endian": ">"}.get(head.fmt)
    if endian is None:
        raise _fix(path, f"format {head.fmt!r} is not supported (binary_little_endian or binary_big_endian)")
    names = [e[0] for e in head.elements]
    if "vertex" not in names:
        raise _fix(path, f"no `vertex` element (elements: {names})")
    vi = names.index("vertex")
    if vi != 0 or any(dt == "list" for _, dt in head.elements[0][2]):
        raise _fix(
            path,
            f"elements {names}: the vertex element must come first and hold no list property "
            "(a compressed PLY, such as SuperSplat's, must be decompressed first)",
        )
    _, count, props = head.elements[0]
    pnames = [p for p, _ in props]
    n_rest = sum(p.startswith("f_rest_") for p in pnames)
    degree = {v: k for k, v in SH_REST_COUNTS.items()}.get(n_rest)
    if degree is None:
        raise _fix(path, f"{n_rest} f_rest_* properties; a 3DGS PLY has 0, 9, 24 or 45 (SH degree 0 to 3)")
    missing = [p for p in gaussians_ply_properties(degree) if p not in pnames and p not in ("nx", "ny", "nz")]
    if missing:
        raise _fix(path, f"the vertex element lacks {missing} (it has {pnames})")
    dtype = np.dtype([(p, endian + dt) for p, dt in props])
    with path.open("rb") as f:
        f.seek(head.body_offset)
        body = f.read(count * dtype.itemsize)
    if len(body) < count * dtype.itemsize:
        raise _fix(path, f"the file ends before its {count} vertices (truncated)")
    table = np.frombuffer(body, dtype=dtype, count=count)

    def cols(*names: str) -> np.ndarray:
        return np.stack([np.asarray(table[n], dtype=np.float32) for n in names], axis=1).reshape(count, -1)

    k1 = n_rest // 3
    rest = cols(*(f"f_rest_{i}" for i in range(n_rest))) if n_rest else np.zeros((count, 0), np.float32)
    shn = rest.reshape(count, 3, k1).transpose(0, 2, 1)  # channel-major on file -> [G, K-1, 3]
    g = Gaussians(
        means=torch.from_numpy(cols("x", "y", "z").copy()),
        quats=torch.from_numpy(cols("rot_0", "rot_1", "rot_2", "rot_3").copy()),
        log_scales=torch.from_numpy(cols("scale_0", "scale_1", "scale_2").copy()),
        opacity_logits=torch.from_numpy(cols("opacity")[:, 0].copy()),
        sh0=torch.from_numpy(cols("f_dc_0", "f_dc_1", "f_dc_2")[:, None, :].copy()),
        shN=torch.from_numpy(np.ascontiguousarray(shn)),
    )
    check_finite_gaussians(g, where=str(path))
    return g
