"""A part of ccl whose own dependency is missing says which part needs it and how to install it (an offline
GPU machine's wheels may leave pycolmap, av or viser out: README "GPU workstation")."""

from __future__ import annotations

import sys

import pytest

from ccl.optional_deps import OPTIONAL, import_optional


@pytest.mark.parametrize("name", sorted(OPTIONAL))
def test_a_missing_optional_dependency_names_what_needs_it_and_the_fix(monkeypatch, name):
    monkeypatch.setitem(sys.modules, name, None)  # `import name` raises ImportError
    with pytest.raises(ImportError) as e:
        import_optional(name)
    assert f"{name} is not installed" in str(e.value) and OPTIONAL[name] in str(e.value)
    assert f"pip install {name}" in str(e.value)


def test_pose_recovery_without_pycolmap_says_so_before_any_work(monkeypatch, tmp_path):
    from ccl.sfm import SfmConfig
    from ccl.sfm.poses import recover_poses

    monkeypatch.setitem(sys.modules, "pycolmap", None)
    with pytest.raises(ImportError, match="pycolmap is not installed, and the SfM stages"):
        recover_poses(tmp_path / "photos", tmp_path / "model", cfg=SfmConfig(), report_path=tmp_path / "r.json")
    assert not (tmp_path / "model").exists() and not (tmp_path / "r.json").exists()
