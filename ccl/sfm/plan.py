"""Which scenes of a run need structure from motion (the workflow's poses.smk reads these)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ccl.scene.entries import resolve_entry
from ccl.sfm.ops import scene_lacks_points
from ccl.sfm.photos import existing_colmap_model


def photo_scenes(config: Mapping[str, Any]) -> list[str]:
    """`source: images` scenes whose folder is not a COLMAP scene already: rule poses makes their model."""
    model = config["scene_load"]["colmap_model"]
    out = []
    for name in config["scenes"]:
        entry = resolve_entry(config, name)
        if entry["source"] == "images" and not existing_colmap_model(entry["path"], colmap_model=model):
            out.append(name)
    return out


def colmap_photo_scenes(config: Mapping[str, Any]) -> list[str]:
    """`source: images` scenes whose folder holds a COLMAP scene already: used as it is."""
    return [
        name
        for name, entry in config["scenes"].items()
        if entry["source"] == "images" and name not in photo_scenes(config)
    ]


def pointless_scenes(config: Mapping[str, Any]) -> list[str]:
    """colmap / nerf scenes with poses but no points, to triangulate (unless `sfm.triangulate` is off)."""
    if not config["sfm"]["triangulate"]:
        return []
    model = config["scene_load"]["colmap_model"]
    return [n for n in config["scenes"] if scene_lacks_points(resolve_entry(config, n), colmap_model=model)]
