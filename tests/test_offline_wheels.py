"""`make wheels` (tools/offline_wheels.py): the folder a GPU machine without network installs over its own
torch and scientific stack. Made with the package list of the GPU machines this project is checked on
(tests/fixtures/gpu_machine_packages.txt, `pip list --format=freeze` there) and `WITHOUT="pycolmap av"`:
for their Python 3.12 it must stay within 64 MiB, what travels with the checkout. Made again for this
Python and installed with `pip install --no-index --no-deps --target`, a clean interpreter that has only
that machine's packages (.venv's copies of torch, torchvision and the listed packages, linked in as a
site's would be) imports the project, its model libraries and every ccl module from the folder.

Slow: `make wheels` downloads about 45 MiB of wheels per Python; the module takes about 4.5 minutes here, and
CI runs it (.ci/run)."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ccl.config import REPO_ROOT
from tools.offline_wheels import (
    MACHINE_PROVIDED,
    MAX_MIB,
    OPTIONAL,
    WheelsError,
    check_size,
    closure,
    installed_distributions,
    make_wheels,
    marker_environment,
    project_roots,
    read_machine_packages,
    split_by_machine,
    target_platforms,
)

PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
PLATFORM = "manylinux_2_28_x86_64"
IMPORTS = ("ccl", "gsplat", "segment_anything", "sam2", "open_clip", "snakemake")
# the distributions behind IMPORTS
IMPORTED = ("ccl-lgs", "gsplat", "segment-anything", "sam2", "open-clip-torch", "snakemake")
MACHINE_PACKAGES = REPO_ROOT / "tests" / "fixtures" / "gpu_machine_packages.txt"
MACHINE_PYTHON = "3.12"  # the Python of the machines that list comes from
WITHOUT = ("pycolmap", "av")  # what the folder still needs to leave out to fit


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


def machine_list_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpu-packages.txt"
    path.write_text(text)
    return path


def test_the_machine_list_is_read_as_pip_list_freeze_writes_it(tmp_path):
    found = read_machine_packages(
        machine_list_file(tmp_path, "# pip list --format=freeze\nnumpy==2.5.2\nPillow\ntorch==2.11.0+cu130\n"
                          "torchvision==0.26.0\nopencv_python_headless==4.12.0.88\n")
    )  # fmt: skip
    assert found == {"numpy": Version("2.5.2"), "pillow": None, "torch": Version("2.11.0+cu130"),
                     "torchvision": Version("0.26.0"), "opencv-python-headless": Version("4.12.0.88")}  # fmt: skip
    # the fixture: the versions the issue gives, bare names for the rest
    machine = read_machine_packages(MACHINE_PACKAGES)
    assert machine["numpy"] == Version("2.5.2") and machine["torch"] == Version("2.11.0")
    assert machine["pandas"] is None and len(machine) == 170


def test_a_line_that_is_no_package_and_a_list_without_torch_are_refused(tmp_path):
    bad = machine_list_file(tmp_path, "torch==2.11.0\nnumpy>=2\n")
    with pytest.raises(
        WheelsError,
        match=rf"{re.escape(str(bad))}:2: 'numpy>=2' is not NAME==VERSION.*pip list --format=freeze",
    ):
        read_machine_packages(bad)
    no_torch = machine_list_file(tmp_path, "numpy==2.5.2\n")
    with pytest.raises(WheelsError, match="lists no torch nor torchvision"):
        read_machine_packages(no_torch)
    with pytest.raises(WheelsError, match="only pycolmap, av, viser can be left out"):
        make_wheels(tmp_path / "w", MACHINE_PYTHON, PLATFORM, without=["numpy"])


def test_a_machine_package_is_left_out_only_in_a_version_every_requirement_accepts():
    env = marker_environment(MACHINE_PYTHON, PLATFORM)
    installed = installed_distributions()
    asked: dict = {}
    full = closure(project_roots(installed, env), installed, env, frozenset(MACHINE_PROVIDED), asked)
    machine = {"numpy": Version("2.5.2"), "pandas": None, "gsplat": Version("1.4.0"), "h5py": Version("3.9")}
    fits, trusted, unfit = split_by_machine(full, asked, machine)
    assert fits == {"numpy": Version("2.5.2")} and trusted == ["pandas"]
    assert unfit["gsplat"] == ["ccl-lgs requires gsplat==1.5.3"]  # kept, the failed requirement named
    assert unfit["h5py"] == ["ccl-lgs requires h5py>=3.10"]
    old_numpy = split_by_machine(full, asked, {"numpy": Version("1.24")})[2]["numpy"]
    assert "ccl-lgs requires numpy>=1.26" in old_numpy


def module_level_imports(path: Path) -> set[str]:
    """The top-level packages `path` imports when it is imported (not inside a function)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            return
        if isinstance(node, ast.Import):
            found.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    return found


def test_the_packages_the_folder_may_go_without_are_imported_only_where_used():
    # ccl, the workflow's scripts and make gpu-check (bench/gpu_check.py, tests/cuda) import without them
    sources = [*(REPO_ROOT / "ccl").rglob("*.py"), *(REPO_ROOT / "workflow" / "scripts").glob("*.py"),
               REPO_ROOT / "bench" / "gpu_check.py", *(REPO_ROOT / "tests" / "cuda").glob("*.py")]  # fmt: skip
    offenders = {str(p.relative_to(REPO_ROOT)): module_level_imports(p) & set(OPTIONAL) for p in sources}
    assert not {p: names for p, names in offenders.items() if names}


def make_wheels_with_machine_list(dest: Path, python_version: str) -> str:
    r = subprocess.run(
        ["make", "wheels", f"PYTHON_VERSION={python_version}", f"PLATFORM={PLATFORM}", f"WHEELS_DIR={dest}",
         f"MACHINE_PACKAGES={MACHINE_PACKAGES}", f"WITHOUT={' '.join(WITHOUT)}"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


@pytest.fixture(scope="module")
def machine_folder(tmp_path_factory) -> tuple[Path, str]:
    """The folder for the listed machines' Python, and what make wheels printed."""
    dest = tmp_path_factory.mktemp("offline") / "wheels"
    return dest, make_wheels_with_machine_list(dest, MACHINE_PYTHON)


@pytest.fixture(scope="module")
def wheels_dir(machine_folder, tmp_path_factory) -> Path:
    """The same folder for this Python, to install and import here."""
    if PYTHON_VERSION == MACHINE_PYTHON:
        return machine_folder[0]
    dest = tmp_path_factory.mktemp("offline-here") / "wheels"
    make_wheels_with_machine_list(dest, PYTHON_VERSION)
    return dest


def wheel_names(folder: Path) -> set[str]:
    return {canonicalize_name(w.name.split("-")[0]) for w in folder.glob("*.whl")}


def machine_site(root: Path, names: list[str]) -> Path:
    """A clean venv (no pip, no packages) whose site-packages holds the distributions `names` and what
    they require, linked from .venv: a GPU machine's own packages. Its python."""
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(root)], check=True)
    site = next(root.glob("lib/python*/site-packages"))
    env = marker_environment(PYTHON_VERSION, PLATFORM)
    installed = installed_distributions()
    machine = closure([(Requirement(n), "test") for n in names if n in installed], installed, env)
    for dist in machine.values():
        tops = {Path(str(f)).parts[0] for f in dist.files or []} - {"..", "bin"}
        for top in tops:
            source = Path(dist.locate_file(top))
            if source.exists() and not (site / top).exists():
                (site / top).symlink_to(source)
    return root / "bin" / "python"


@pytest.mark.slow
def test_the_folder_for_the_listed_machines_fits_in_64_mib_and_holds_what_they_lack(machine_folder):
    folder, printed = machine_folder
    assert MAX_MIB == 64
    size_mib = check_size(folder, MAX_MIB)  # the script's own check, measured again
    assert 0 < size_mib <= 64, size_mib
    assert f"total: {size_mib:.1f} MiB" in printed
    assert "taken on trust" in printed and OPTIONAL["pycolmap"] in printed  # what was left out, and why
    with pytest.raises(WheelsError) as e:
        check_size(folder, size_mib / 2)
    assert "WHEELS_MAX_MIB" in str(e.value) and "pulp" in str(e.value)

    machine = set(read_machine_packages(MACHINE_PACKAGES))
    env = marker_environment(MACHINE_PYTHON, PLATFORM)
    installed = installed_distributions()
    wanted = closure([(Requirement(n), "test") for n in IMPORTED], installed, env,
                     stop_at=frozenset(machine | set(WITHOUT)))  # fmt: skip
    assert set(wanted) - wheel_names(folder) == set()  # the six and all they need that the machines lack
    assert wheel_names(folder) & (machine | set(WITHOUT)) == set()
    gsplat = [w.name for w in folder.glob("gsplat-*")]
    assert len(gsplat) == 1 and gsplat[0].endswith("-py3-none-any.whl"), gsplat  # compiled on the GPU machine
    assert [w.name for w in folder.glob("sam2-*-none-any.whl")]


@pytest.mark.slow
def test_the_wheels_install_offline_over_the_machines_packages_and_import(wheels_dir, tmp_path):
    target = tmp_path / "site"
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--target", str(target),
         *(str(p) for p in wheels_dir.iterdir())],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]

    python = machine_site(tmp_path / "machine", list(read_machine_packages(MACHINE_PACKAGES)))
    code = (
        f"import importlib, importlib.util, pkgutil, sys, numpy, torch, pytest, {', '.join(IMPORTS)}\n"
        "print(torch.__file__)\n"
        "print(numpy.__file__)\n"
        "print(ccl.__file__)\n"
        "print(sys.modules['segment_anything'].__file__)\n"
        "print(torch.zeros(2).add(1).sum().item())\n"
        f"print(*[importlib.util.find_spec(n) is None for n in {WITHOUT!r}])\n"
        "for m in pkgutil.walk_packages(ccl.__path__, 'ccl.'):\n"
        "    m.name.endswith('__main__') or importlib.import_module(m.name)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    env["PYTHONPATH"] = str(target)
    r = subprocess.run([str(python), "-s", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    torch_file, numpy_file, ccl_file, sam_file, total, *absent = r.stdout.split()
    assert torch_file.startswith(str(tmp_path / "machine")), torch_file  # the machine's torch, not a wheel's
    assert numpy_file.startswith(str(tmp_path / "machine")), numpy_file  # the machine's numpy fits
    assert ccl_file.startswith(str(target)) and sam_file.startswith(str(target)), (ccl_file, sam_file)
    assert float(total) == 2.0
    assert absent == ["True"] * len(WITHOUT)  # every ccl module imported without pycolmap and av

    # the workflow's command line runs from the folder too
    r = subprocess.run([str(python), "-s", "-m", "snakemake", "--version"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().startswith("9."), r.stdout + r.stderr[-2000:]
