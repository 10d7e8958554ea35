"""Config of the embedded synthetic scene: the `synthetic` section of config.yaml.

Defaults equal workflow/schemas/stages/synthetic.schema.yaml (tests/test_config.py holds them equal).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SyntheticConfig:
    n_views: int = 30  # cameras on the orbit
    width: int = 160  # pixels
    height: int = 120  # pixels
    fov_deg: float = 50.0  # horizontal field of view
    orbit_radius: float = 1.4  # scene units from the table centre
    orbit_height: float = 0.85  # scene units above the table
    orbit_jitter: float = 0.04  # relative per-view jitter of radius and height
    n_objects: int = 8  # first n objects of the catalogue
    supersample: int = 2  # samples per pixel side for colours
    label_every: int = 5  # frames 0, k, 2k, ... get LERF-OVS labels
    n_points: int = 4000  # points in points3d.ply
    point_noise: float = 0.004  # std of the noise on points3d.ply positions, scene units
    shadows: bool = True
    highlights: float = 0.1  # specular strength, 0 = Lambertian
    occluders: int = 0  # thin poles between cameras and objects
    motion_blur: float = 0.0  # pixels of linear blur on blurred frames, 0 = off
    motion_blur_frames: float = 0.3  # fraction of frames blurred when motion_blur > 0

    def validate(self) -> None:
        """Raise ValueError naming the key, the value and the allowed range (the schema's, for callers
        that build the config in Python rather than through config.yaml)."""
        checks = [
            ("n_views", self.n_views >= 2, ">= 2"),
            ("width", self.width >= 16, ">= 16"),
            ("height", self.height >= 16, ">= 16"),
            ("fov_deg", 0 < self.fov_deg < 170, "in (0, 170)"),
            ("orbit_radius", 0.8 < self.orbit_radius <= 3.5, "in (0.8, 3.5]"),
            ("orbit_height", 0.2 < self.orbit_height <= 3.5, "in (0.2, 3.5]"),
            ("orbit_jitter", 0 <= self.orbit_jitter <= 0.3, "in [0, 0.3]"),
            ("n_objects", 1 <= self.n_objects <= 8, "in [1, 8]"),
            ("supersample", 1 <= self.supersample <= 4, "in [1, 4]"),
            ("label_every", self.label_every >= 1, ">= 1"),
            ("n_points", self.n_points >= 0, ">= 0"),
            ("point_noise", self.point_noise >= 0, ">= 0"),
            ("highlights", 0 <= self.highlights <= 1, "in [0, 1]"),
            ("occluders", 0 <= self.occluders <= 12, "in [0, 12]"),
            ("motion_blur", self.motion_blur >= 0, ">= 0"),
            ("motion_blur_frames", 0 <= self.motion_blur_frames <= 1, "in [0, 1]"),
        ]
        for key, ok, allowed in checks:
            if not ok:
                raise ValueError(
                    f"synthetic.{key} = {getattr(self, key)!r} is out of range: expected {allowed}; "
                    "fix the `synthetic` section of config.yaml"
                )
