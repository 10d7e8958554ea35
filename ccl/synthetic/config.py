"""Config of the embedded synthetic scene: the `synthetic` section of config.yaml.

Defaults equal workflow/schemas/stages/synthetic.schema.yaml (tests/test_config.py holds them equal);
values are checked when a config is built (ccl.config_checks).
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config_checks import check_section


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

    def __post_init__(self) -> None:
        check_section(
            "synthetic",
            self,
            [
                ("n_views", lambda v: v >= 2, ">= 2"),
                ("width", lambda v: v >= 16, ">= 16"),
                ("height", lambda v: v >= 16, ">= 16"),
                ("fov_deg", lambda v: 0 < v < 170, "in (0, 170)"),
                ("orbit_radius", lambda v: 0.8 < v <= 3.5, "in (0.8, 3.5]"),
                ("orbit_height", lambda v: 0.2 < v <= 3.5, "in (0.2, 3.5]"),
                ("orbit_jitter", lambda v: 0 <= v <= 0.3, "in [0, 0.3]"),
                ("n_objects", lambda v: 1 <= v <= 8, "in [1, 8]"),
                ("supersample", lambda v: 1 <= v <= 4, "in [1, 4]"),
                ("label_every", lambda v: v >= 1, ">= 1"),
                ("n_points", lambda v: v >= 0, ">= 0"),
                ("point_noise", lambda v: v >= 0, ">= 0"),
                ("highlights", lambda v: 0 <= v <= 1, "in [0, 1]"),
                ("occluders", lambda v: 0 <= v <= 12, "in [0, 12]"),
                ("motion_blur", lambda v: v >= 0, ">= 0"),
                ("motion_blur_frames", lambda v: 0 <= v <= 1, "in [0, 1]"),
            ],
        )
