"""Config of scene loading: the `scene_load` section of config.yaml."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SceneLoadConfig:
    """How a scene's images are read (defaults = workflow/schemas/stages/scene_load.schema.yaml)."""

    downscale: int = 1  # integer factor images are downscaled by (INTER_AREA); intrinsics follow
    colmap_model: str = "sparse/0"  # COLMAP model folder inside the scene folder

    def __post_init__(self) -> None:
        if isinstance(self.downscale, bool) or not isinstance(self.downscale, int) or self.downscale < 1:
            raise ValueError(
                f"scene_load.downscale: expected an integer >= 1, got {self.downscale!r}; "
                "set e.g. `scene_load: {downscale: 2}` in config.yaml"
            )
        if not isinstance(self.colmap_model, str) or not self.colmap_model:
            raise ValueError(
                f"scene_load.colmap_model: expected a folder name such as 'sparse/0', got {self.colmap_model!r}"
            )
