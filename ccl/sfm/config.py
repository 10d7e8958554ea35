"""Config of structure from motion: the `sfm` section of config.yaml.

Defaults equal workflow/schemas/stages/sfm.schema.yaml (tests/test_config.py holds them equal); values
are checked when a config is built (ccl.config_checks). The defaults suit a folder of phone photos: one
camera per image size with a radial distortion term, exhaustive matching up to a few hundred photos,
SIFT on images downscaled to 1600 px (CPU extraction time grows with the pixels, and 1600 px keeps
enough features on 12 MP photos).

Two defaults are stricter than COLMAP's, against repeated texture (floor tiles, a chequerboard, a
row of windows): look-alike patches match between photos that share no view, and a pair with 15 such
matches (COLMAP's minimum) passes verification and bends the model. DSP-SIFT descriptors with affine
keypoint shapes tell more of those patches apart, and a pair needs 30 verified matches.
Measured on the synthetic scene (`python -m bench.sfm_pairs --views 60`, 2026-12-01), where the
chequered floor makes most verified pairs wrong (772 of 1037 under COLMAP's defaults, 23 matches
each at the median), the mean camera-centre error as a share of the scene radius is 3.5 % with
COLMAP's defaults, 0.67 % with DSP-SIFT, and 0.30 % with both. The 30-match floor also drops true
pairs far apart: at 30 views (12 degrees apart) it costs (1.8 % with DSP-SIFT alone, 2.9 % with
both). It is for dense captures; a sparse one may do better with `min_pair_inliers: 15`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ccl.config import config_source
from ccl.config_checks import check_section, is_int

CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE", "SIMPLE_RADIAL", "RADIAL", "OPENCV")
CAMERA_MODES = ("per_size", "single", "per_folder", "per_image")
MATCHERS = ("auto", "exhaustive", "sequential", "vocab_tree")


@dataclass(frozen=True)
class SfmConfig:
    """Poses of a photo folder (`source: images`) and points of a scene with poses but no points."""

    camera_model: str = "SIMPLE_RADIAL"  # COLMAP camera model SfM fits; images are undistorted to PINHOLE
    camera_mode: str = "per_size"  # one camera per image size, one for all, per sub-folder, per image
    matcher: str = (
        "auto"  # auto: exhaustive up to exhaustive_max_images, then sequential (vocab_tree with a tree)
    )
    exhaustive_max_images: int = 200  # auto's limit for exhaustive matching (its cost grows with n²)
    sequential_overlap: int = 10  # sequential matching: each image with this many next ones (file order)
    vocab_tree_path: str = ""  # vocabulary-tree file (COLMAP's .bin) for `vocab_tree`; never downloaded
    max_image_size: int = 1600  # SIFT runs on images downscaled to this longest side, px
    max_num_features: int = 8192  # SIFT features kept per image
    dsp_sift: bool = True  # DSP-SIFT with affine-shaped keypoints: ~1.6x slower SIFT, fewer false matches
    min_pair_inliers: int = 30  # a photo pair needs this many geometrically verified matches to count
    min_registered_fraction: float = 0.9  # fewer registered photos than this share stops the run
    triangulate: bool = True  # scenes with poses but no points: triangulate them (else random init)

    def __post_init__(self) -> None:
        check_section(
            "sfm",
            self,
            [
                ("camera_model", lambda v: v in CAMERA_MODELS, f"one of {CAMERA_MODELS}"),
                ("camera_mode", lambda v: v in CAMERA_MODES, f"one of {CAMERA_MODES}"),
                ("matcher", lambda v: v in MATCHERS, f"one of {MATCHERS}"),
                ("exhaustive_max_images", lambda v: is_int(v) and v >= 2, "an integer >= 2"),
                ("sequential_overlap", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
                ("vocab_tree_path", lambda v: isinstance(v, str), "a path (string)"),
                ("max_image_size", lambda v: is_int(v) and v >= 100, "an integer >= 100 (pixels)"),
                ("max_num_features", lambda v: is_int(v) and v >= 100, "an integer >= 100"),
                ("dsp_sift", lambda v: isinstance(v, bool), "true or false"),
                ("min_pair_inliers", lambda v: is_int(v) and v >= 8, "an integer >= 8"),
                ("min_registered_fraction", lambda v: 0 < v <= 1, "in (0, 1]"),
                ("triangulate", lambda v: isinstance(v, bool), "true or false"),
            ],
        )


def check_vocab_tree(cfg: SfmConfig) -> None:
    """A vocabulary-tree matcher needs its tree file (a cross-key rule: each key alone is valid)."""
    from pathlib import Path

    if cfg.matcher == "vocab_tree" and not cfg.vocab_tree_path:
        raise ValueError(
            "sfm.matcher = 'vocab_tree' needs sfm.vocab_tree_path, a COLMAP vocabulary-tree file (ccl "
            "downloads nothing); set the path, or use `matcher: sequential` (photos in capture order) "
            f"or `exhaustive`; fix the `sfm` section of {config_source()}"
        )
    if cfg.vocab_tree_path and not Path(cfg.vocab_tree_path).expanduser().is_file():
        raise FileNotFoundError(
            f"{Path(cfg.vocab_tree_path).expanduser().absolute()}: sfm.vocab_tree_path names no file; point "
            'it at a COLMAP vocabulary tree (.bin), or set it to "" and use `matcher: sequential` or '
            f"`exhaustive`; fix the `sfm` section of {config_source()}"
        )
