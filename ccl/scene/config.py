"""Config of scene loading: the `scene_load` section of config.yaml."""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section, is_int


@dataclass(frozen=True)
class SceneLoadConfig:
    """How a scene's images are read (defaults = workflow/schemas/stages/scene_load.schema.yaml)."""

    downscale: int = 1  # integer factor images are downscaled by (INTER_AREA); intrinsics follow
    colmap_model: str = "sparse/0"  # COLMAP model folder inside the scene folder
    # longest side of the images every stage sees, px (3DGS's 1.6k); larger ones are resized to it; 0: none
    max_image_side: int = 1600

    def __post_init__(self) -> None:
        check_section(
            "scene_load",
            self,
            [
                (
                    "downscale",
                    lambda v: is_int(v) and v >= 1,
                    "an integer >= 1, e.g. `scene_load: {downscale: 2}`",
                ),
                (
                    "max_image_side",
                    lambda v: is_int(v) and v >= 0,
                    "an integer >= 0 (pixels; 0 lifts the limit), e.g. `scene_load: {max_image_side: 3200}`",
                ),
                (
                    "colmap_model",
                    lambda v: isinstance(v, str) and v != "",
                    "a folder name such as 'sparse/0'",
                ),
            ],
        )
