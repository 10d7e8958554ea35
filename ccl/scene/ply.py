"""PLY point clouds (ASCII and binary little-endian): positions x y z and colours red green blue."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ccl.io.ply import PLY_TYPES


def _fix(path: Path, what: str) -> ValueError:
    return ValueError(
        f"{path}: {what}; write the points as a PLY with a `vertex` element of x y z (and uchar red green "
        "blue) properties, ASCII or binary_little_endian (e.g. Open3D's write_point_cloud), "
        "or drop ply_file_path from transforms.json to start without sparse points"
    )


def read_ply_points(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """→ (xyz [P, 3] float32, rgb [P, 3] uint8). Missing colours are grey (128)."""
    path = Path(path)
    with path.open("rb") as f:
        if f.readline().strip() != b"ply":
            raise _fix(path, "not a PLY file (first line is not 'ply')")
        fmt = None
        elements: list[tuple[str, int, list[tuple[str, str]]]] = []  # name, count, [(prop, dtype|list)]
        while True:
            line = f.readline()
            if not line:
                raise _fix(path, "the header has no end_header line")
            t = line.decode("ascii", errors="replace").split()
            if not t or t[0] in ("comment", "obj_info"):
                continue
            if t[0] == "end_header":
                break
            if t[0] == "format":
                fmt = t[1]
            elif t[0] == "element":
                elements.append((t[1], int(t[2]), []))
            elif t[0] == "property" and elements:
                if t[1] == "list":
                    elements[-1][2].append((t[-1], "list"))
                elif t[1] in PLY_TYPES:
                    elements[-1][2].append((t[2], PLY_TYPES[t[1]]))
                else:
                    raise _fix(path, f"unknown property type {t[1]!r}")
        body = f.read()
    if fmt not in ("ascii", "binary_little_endian"):
        raise _fix(path, f"format {fmt!r} is not supported (ascii or binary_little_endian)")
    names = [e[0] for e in elements]
    if "vertex" not in names:
        raise _fix(path, f"no `vertex` element (elements: {names})")
    vi = names.index("vertex")
    if any(dt == "list" for e in elements[: vi + 1] for _, dt in e[2]):
        raise _fix(path, "a list property before or in the vertex element is not supported")
    _, count, props = elements[vi]
    pnames = [p for p, _ in props]
    missing = [k for k in ("x", "y", "z") if k not in pnames]
    if missing:
        raise _fix(path, f"the vertex element lacks {missing} (has {pnames})")
    if fmt == "ascii":
        lines = body.decode("ascii", errors="replace").splitlines()
        skip = sum(e[1] for e in elements[:vi])
        rows = [ln.split() for ln in lines[skip : skip + count]]
        if len(rows) < count or any(len(r) < len(props) for r in rows):
            raise _fix(path, f"expected {count} vertex lines of {len(props)} values")
        table = np.array(rows, dtype=np.float64).reshape(count, -1)
        col = {p: table[:, i] for i, p in enumerate(pnames)}
    else:
        offset = sum(e[1] * np.dtype([(p, "<" + dt) for p, dt in e[2]]).itemsize for e in elements[:vi])
        dtype = np.dtype([(p, "<" + dt) for p, dt in props])
        if len(body) < offset + count * dtype.itemsize:
            raise _fix(path, f"the file ends before its {count} vertices (truncated)")
        arr = np.frombuffer(body, dtype=dtype, count=count, offset=offset)
        col = {p: arr[p] for p in pnames}
    xyz = np.stack([col["x"], col["y"], col["z"]], axis=1).astype(np.float32)
    if all(k in col for k in ("red", "green", "blue")):
        rgb = np.stack([col["red"], col["green"], col["blue"]], axis=1)
        if dict(props)["red"].startswith("f") and rgb.size and rgb.max() <= 1.0:
            rgb = rgb * 255.0  # float colours in [0, 1]
        rgb = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    else:
        rgb = np.full((count, 3), 128, np.uint8)
    return xyz, rgb


def write_ply_points(path: str | Path, xyz: np.ndarray, rgb: np.ndarray, *, binary: bool = False) -> Path:
    """Write points as a PLY (x y z float, red green blue uchar); ASCII unless `binary`."""
    path = Path(path)
    xyz = np.asarray(xyz, np.float32).reshape(-1, 3)
    rgb = np.asarray(rgb, np.uint8).reshape(-1, 3)
    fmt = "binary_little_endian" if binary else "ascii"
    header = (
        f"ply\nformat {fmt} 1.0\nelement vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    ).encode("ascii")
    if binary:
        arr = np.empty(len(xyz), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
        arr["p"], arr["c"] = xyz, rgb
        body = arr.tobytes()
    else:
        body = "".join(
            f"{p[0]!r} {p[1]!r} {p[2]!r} {c[0]} {c[1]} {c[2]}\n"
            for p, c in zip(xyz.tolist(), rgb.tolist(), strict=True)
        ).encode("ascii")
    path.write_bytes(header + body)
    return path
