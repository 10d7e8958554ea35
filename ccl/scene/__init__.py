"""Scenes: posed pinhole cameras and sparse points from COLMAP models or NeRF transforms.json.

`load_scene` reads and checks a scene folder; `load_image` returns a camera's undistorted, downscaled
image (cached); `write_manifest` / `load_scene_from_manifest` are the workflow's hand-off.
"""

from ccl.scene.config import SceneLoadConfig
from ccl.scene.images import load_image
from ccl.scene.load import load_scene
from ccl.scene.manifest import (
    SceneManifest,
    load_scene_cameras,
    load_scene_from_manifest,
    read_manifest,
    write_manifest,
)
from ccl.scene.types import Camera, Distortion, Scene

__all__ = [
    "Camera",
    "Distortion",
    "Scene",
    "SceneLoadConfig",
    "SceneManifest",
    "load_image",
    "load_scene",
    "load_scene_cameras",
    "load_scene_from_manifest",
    "read_manifest",
    "write_manifest",
]
