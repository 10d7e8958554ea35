"""The dependencies that one part of ccl alone needs, and the message when one is missing.

Each is imported only inside the functions of its part, never when ccl, the workflow or another stage is
imported, so that a machine without it (an offline GPU machine whose wheels were made with
`make wheels WITHOUT=...`, README "GPU workstation") runs everything else.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# distribution (= module) name → what needs it
OPTIONAL = {
    "pycolmap": "the SfM stages (poses and triangulate_points: scenes of photos without poses)",
    "av": "`ccl render -o <file>.mp4` (.gif and frame folders do not)",
    "viser": "`ccl view`",
}


def import_optional(name: str) -> ModuleType:
    """Module `name` of OPTIONAL, or an ImportError saying what needs it and how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as e:
        raise ImportError(
            f"{name} is not installed, and {OPTIONAL[name]} needs it ({e}). Fix: `pip install {name}` in "
            f"this environment (offline: carry its wheel, as `make wheels` writes it without WITHOUT={name})"
        ) from e
