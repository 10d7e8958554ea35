"""A scene's entry in the config (`scenes: {name: {...}}`), with its paths resolved against `data_root`.

The one definition of where a scene's folder and labels are: the workflow's rules, the manifest and the
preflight all read them through `resolve_entry`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

PATH_KEYS = ("path", "labels")  # entry keys that name files, relative to data_root unless absolute


def under_data_root(path: str | None, data_root: str) -> str | None:
    """`path` taken relative to `data_root` (when it is relative and `data_root` is set)."""
    if not path or os.path.isabs(path) or not data_root:
        return path
    return os.path.join(data_root, path)


def resolve_entry(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The scene's config entry with `path` and `labels` resolved against `data_root`."""
    entry = dict(config["scenes"][name])
    for key in PATH_KEYS:
        if key in entry:
            entry[key] = under_data_root(os.path.expanduser(entry[key]), config.get("data_root", ""))
    return entry
