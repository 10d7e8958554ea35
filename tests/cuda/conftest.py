"""CUDA tests: each compares a CUDA path (gsplat, the models, the trainings, the DAG) with its CPU twin.

They run where torch sees a CUDA device (`make gpu-check` runs them) and are skipped with that reason
elsewhere; tests/cuda/test_cuda_messages.py checks what can be checked without a GPU.
"""

from __future__ import annotations

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped with the reason without one)")


@pytest.fixture(scope="session")
def gsplat_cuda():
    """gsplat's CUDA extension, built once for the session (ccl's message when it cannot be)."""
    from ccl.splat._gsplat import ensure_gsplat_cuda

    ensure_gsplat_cuda()


@pytest.fixture(autouse=True)
def float32_without_tf32():
    """Every CUDA test compares float32 as float32: TF32 off (cuda_testkit.exact_float32 says why)."""
    from cuda_testkit import exact_float32

    with exact_float32():
        yield


@pytest.fixture(scope="module")
def tiny(tiny_scene_dir):
    """The tiny synthetic scene, its images, and every fourth sparse point: (scene, images, xyz, rgb)."""
    from ccl.scene import SceneLoadConfig, load_image, load_scene

    scene = load_scene(tiny_scene_dir, source="synthetic", cfg=SceneLoadConfig(), name="tiny")
    images = [load_image(c, cfg=SceneLoadConfig()) for c in scene.cameras]
    return scene, images, scene.points_xyz[::4], scene.points_rgb[::4]
