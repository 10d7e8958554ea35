"""Structure from motion with pycolmap: cameras for a folder of photos, points for posed scenes.

`recover_poses` (rule poses) turns a `source: images` folder into a COLMAP model that the rest of the
workflow reads as a `colmap` scene, with a JSON of how well it registered; `triangulate_points` (rule
triangulate_points) gives a scene with poses but no points (transforms.json without ply_file_path, a
COLMAP model without points3D) points triangulated from its known poses, which the colour field starts
from. `check_photo_folder` is the photo folder's check, run by the preflight before any job.
"""

from ccl.sfm.config import SfmConfig
from ccl.sfm.ops import centre_errors, scene_lacks_points, similarity_align
from ccl.sfm.photos import PhotoSet, check_photo_folder, existing_colmap_model, list_photo_files
from ccl.sfm.poses import recover_poses
from ccl.sfm.triangulate import triangulate_points

__all__ = [
    "PhotoSet",
    "SfmConfig",
    "centre_errors",
    "check_photo_folder",
    "existing_colmap_model",
    "list_photo_files",
    "recover_poses",
    "scene_lacks_points",
    "similarity_align",
    "triangulate_points",
]
