"""`make wheels` (tools/offline_wheels.py): the folder a GPU machine without network installs over its own
torch. Built here for this Python and installed with `pip install --no-index --no-deps --target`; a clean
interpreter that has only a torch of its own (.venv's torch, torchvision and what they require, linked in
as a site's torch would be) then imports the project and its model libraries from that folder alone.

Slow: `make wheels` downloads about 215 MiB of wheels; the module takes about 4 minutes here, and CI runs it
(.ci/run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from ccl.config import REPO_ROOT
from tools.offline_wheels import (
    MACHINE_PROVIDED,
    MAX_MIB,
    WheelsError,
    check_size,
    closure,
    installed_distributions,
    marker_environment,
    target_platforms,
)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORM = "manylinux_2_28_x86_64"
IMPORTS = ("ccl", "gsplat", "segment_anything", "sam2", "open_clip", "snakemake")


def test_a_manylinux_platform_accepts_the_older_manylinux_wheels():
    tags = target_platforms("manylinux_2_28_x86_64")
    # most binary wheels are tagged manylinux2014 (= manylinux_2_17) or older; pip alone would refuse them
    assert {
        "manylinux_2_28_x86_64",
        "manylinux_2_17_x86_64",
        "manylinux2014_x86_64",
        "manylinux1_x86_64",
    } <= set(tags)
    assert "manylinux_2_29_x86_64" not in tags
    assert target_platforms("macosx_11_0_arm64") == ["macosx_11_0_arm64"]
    assert marker_environment("3.12", "manylinux_2_28_aarch64")["platform_machine"] == "aarch64"
    assert marker_environment("3.12", "manylinux2014_x86_64")["python_version"] == "3.12"


@pytest.fixture(scope="module")
def wheels_dir(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("offline") / "wheels"
    r = subprocess.run(
        ["make", "wheels", f"PYTHON_VERSION={PYTHON_VERSION}", f"PLATFORM={PLATFORM}", f"WHEELS_DIR={dest}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return dest


def machine_site_with_own_torch(root: Path) -> Path:
    """A clean venv (no pip, no packages) whose site-packages holds torch, torchvision and what they
    require, linked from .venv: a GPU machine's own torch. Its python."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    env = marker_environment(PYTHON_VERSION, PLATFORM)
    installed = installed_distributions()
    machine = closure([(Requirement(n), "test") for n in MACHINE_PROVIDED], installed, env)
    for dist in machine.values():
        tops = {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "bin"}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return root / "bin" / "python"


@pytest.mark.slow
def test_the_wheels_install_offline_over_a_machine_torch_and_import(wheels_dir, tmp_path):
    wheels = sorted(p.name for p in wheels_dir.iterdir())
    assert not [w for w in wheels if w.startswith(("torch-", "torchvision-", "nvidia_", "triton-"))], wheels
    gsplat = [w for w in wheels if w.startswith("gsplat-")]
    assert len(gsplat) == 1 and gsplat[0].endswith("-py3-none-any.whl"), gsplat  # compiled on the GPU machine
    assert any(w.startswith("sam2-") and w.endswith("-none-any.whl") for w in wheels), wheels
    assert any(w.startswith("ccl_lgs-") for w in wheels), wheels

    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target),
         *(str(p) for p in wheels_dir.iterdir())],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]

    python = machine_site_with_own_torch(tmp_path / "machine")
    code = (
        f"import sys, numpy, torch, {', '.join(IMPORTS)}\n"
        "print(torch.__file__)\n"
        "print(numpy.__file__)\n"
        "print(ccl.__file__)\n"
        "print(sys.modules['segment_anything'].__file__)\n"
        "print(torch.zeros(2).add(1).sum().item())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([str(python), "-s", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    torch_file, numpy_file, ccl_file, sam_file, total = r.stdout.split()
    assert torch_file.startswith(str(tmp_path / "machine")), torch_file  # the machine's torch, not a wheel's
    assert numpy_file.startswith(str(target)), numpy_file  # the project's numpy 2 before the machine's
    assert ccl_file.startswith(str(target)) and sam_file.startswith(str(target)), (ccl_file, sam_file)
    assert float(total) == 2.0

    # the workflow's command line runs from the folder too
    r = subprocess.run([str(python), "-s", "-m", "snakemake", "--version"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().startswith("9."), r.stdout + r.stderr[-2000:]


@pytest.mark.slow
def test_the_folder_is_within_the_size_limit_and_a_larger_one_is_refused(wheels_dir):
    size_mib = check_size(wheels_dir, MAX_MIB)
    assert 0 < size_mib <= MAX_MIB
    with pytest.raises(WheelsError) as e:
        check_size(wheels_dir, size_mib / 2)
    assert "WHEELS_MAX_MIB" in str(e.value) and "opencv_python_headless" in str(e.value)
