"""`make wheels`: every wheel this project needs beyond the machine's own torch, for a GPU machine without
network (README, "GPU workstation").

A GPU machine often brings its own torch and torchvision (a site build for its CUDA) and no internet.
This script writes one folder that installs over that torch with `pip install --no-index --no-deps`:

- the distributions that `make setup` installed into .venv, at the same versions (the ones the tests
  ran against), reached from this project's dependencies and pytest (gpu-check runs tests/cuda), with
  environment markers evaluated for the target Python and platform;
- less torch, torchvision and what only they require (nvidia-*, triton, sympy, networkx, ...): the
  machine's torch comes with those. What this project needs as well (numpy, pillow, ...) is included
  at .venv's version, which shadows the machine's: opencv and pandas need numpy 2, which an older site
  install may not have;
- as binary wheels for the target (`pip download --only-binary=:all: --python-version --platform`),
  except the distributions published only as source (sam2, iopath, antlr4-python3-runtime): those are
  built here as wheels, and must come out pure Python (`*-none-any.whl`) to suit any machine;
- this project itself as a wheel.

gsplat's wheel from the index is its pure-Python one: it compiles its CUDA code on the GPU machine, on
first use, against that machine's torch.

    .venv/bin/python -m tools.offline_wheels --python-version 3.12 --platform manylinux_2_28_x86_64 --dest wheels
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PROJECT = "ccl-lgs"
# What the GPU machine brings, with what only these require.
MACHINE_PROVIDED = ("torch", "torchvision")
# gpu-check runs tests/cuda with pytest; its version range is the one of this project's `dev` extra.
TEST_RUNNER, TEST_EXTRA = "pytest", "dev"
# The folder is carried to the GPU machine by hand. The project's dependencies alone come to about 215 MiB
# for Python 3.12 (opencv-python-headless 61, pycolmap 36, pulp with its solver 16, numpy 16, pandas 12): a set that grows past this
# limit stops with its largest wheels named, to be looked at before it is carried.
MAX_MIB = 256
# sam2's CUDA extension (connected components) would tie its wheel to this machine's torch and CUDA;
# without it sam2 only loses hole filling, which ccl's sam2 backend turns off (docs/design.md).
SOURCE_BUILD_ENV = {"SAM2_BUILD_CUDA": "0"}
PARALLEL_DOWNLOADS = 4


class WheelsError(RuntimeError):
    """A failure the user can act on; main prints it without a traceback."""


def target_platforms(platform: str) -> list[str]:
    """The tags pip is to accept for `platform`. pip (23) takes `--platform manylinux_2_28_x86_64` as that
    tag alone, yet a machine with glibc 2.28 also runs every older manylinux wheel (most wheels are
    manylinux2014 = manylinux_2_17), so a `manylinux_2_N_arch` platform is spelled out down to 2_5, with
    the legacy names of 2_17, 2_12 and 2_5. Any other platform is taken as given."""
    m = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not m:
        return [platform]
    glibc_minor, arch = int(m.group(1)), m.group(2)
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for minor in range(glibc_minor, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in legacy:
            tags.append(f"{legacy[minor]}_{arch}")
    return tags


def marker_environment(python_version: str, platform: str) -> dict[str, str]:
    """The values environment markers see on the target machine (this machine's where the target's
    are unknown, such as the kernel release)."""
    env = dict(default_environment())
    env["python_version"] = python_version
    env["python_full_version"] = f"{python_version}.0"
    env["implementation_name"] = "cpython"
    env["platform_python_implementation"] = "CPython"
    if platform.startswith(("manylinux", "musllinux", "linux")):
        env.update(sys_platform="linux", platform_system="Linux", os_name="posix")
        env["platform_machine"] = re.sub(r"^(many|musl)?linux(_\d+_\d+|\d+)?_", "", platform)
    return env


def installed_distributions() -> dict[str, md.Distribution]:
    """This interpreter's distributions (the .venv that `make setup` made) by canonical name."""
    found: dict[str, md.Distribution] = {}
    for dist in md.distributions():
        found.setdefault(canonicalize_name(dist.metadata["Name"]), dist)
    return found


def requirements_of(dist: md.Distribution, extras: Iterable[str], env: dict[str, str]) -> list[Requirement]:
    """`dist`'s requirements that apply on the target with the extras asked of it."""
    wanted = {"", *extras}
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({**env, "extra": e}) for e in wanted):
            out.append(req)
    return out


def closure(
    roots: list[tuple[Requirement, str]],
    installed: dict[str, md.Distribution],
    env: dict[str, str],
    stop_at: frozenset[str] = frozenset(),
) -> dict[str, md.Distribution]:
    """Every installed distribution reached from `roots` ((requirement, who asked for it) pairs) through
    requirements that apply on the target, not entering the names in `stop_at`."""
    reached: dict[str, md.Distribution] = {}
    extras_done: dict[str, set[str]] = {}
    queue = list(roots)
    while queue:
        req, asked_by = queue.pop()
        name = canonicalize_name(req.name)
        if name in stop_at:
            continue
        extras = set(req.extras)
        if name in extras_done and extras <= extras_done[name]:
            continue
        dist = installed.get(name)
        if dist is None:
            raise WheelsError(
                f"{req} (required by {asked_by} on Python {env['python_version']}) is not installed in "
                f"{sys.prefix}, whose distributions this script collects: install it there "
                f"({sys.executable} -m pip install '{req}') and rerun, or run this script with a Python "
                f"{env['python_version']} environment made by `make setup`"
            )
        if dist.version not in req.specifier:
            raise WheelsError(
                f"{sys.prefix} has {dist.metadata['Name']} {dist.version}, but {asked_by} requires {req}: "
                "rerun `make setup` (it reinstalls from pyproject.toml)"
            )
        reached[name] = dist
        extras_done.setdefault(name, set()).update(extras)
        queue.extend((r, name) for r in requirements_of(dist, extras, env))
    return reached


def project_roots(
    installed: dict[str, md.Distribution], env: dict[str, str]
) -> list[tuple[Requirement, str]]:
    """This project's requirements on the target, and the test runner from its `dev` extra."""
    project = installed.get(PROJECT)
    if project is None:
        raise WheelsError(f"{PROJECT} is not installed in {sys.prefix}: run `make setup` first")
    roots = [(r, PROJECT) for r in requirements_of(project, (), env)]
    runner = [
        r for r in requirements_of(project, (TEST_EXTRA,), env) if canonicalize_name(r.name) == TEST_RUNNER
    ]
    if not runner:
        raise WheelsError(
            f"pyproject.toml: [project.optional-dependencies] {TEST_EXTRA} names no {TEST_RUNNER}"
        )
    return roots + [(runner[0], f"{PROJECT}[{TEST_EXTRA}]")]


def pip(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})


def download_binary(pin: str, dest: Path, python_version: str, platforms: list[str]) -> bool:
    """Download `pin`'s wheel for the target into `dest`: True, or False where the index has no wheel for
    it (a source-only distribution); any other failure raises with pip's message."""
    platform_args = [a for p in platforms for a in ("--platform", p)]
    r = pip("download", "--quiet", "--no-deps", "--only-binary=:all:", "--implementation", "cp",
            "--python-version", python_version, *platform_args, "--dest", str(dest), pin)  # fmt: skip
    if r.returncode == 0:
        return True
    if "No matching distribution found" in r.stderr:
        return False
    raise WheelsError(f"pip download {pin} failed:\n{r.stderr.strip()}")


def build_pure_wheel(pin: str, dest: Path, python_version: str, platform: str) -> None:
    """Build `pin` from its source archive into `dest`; refuse a wheel that is not pure Python."""
    name = Requirement(pin).name
    with tempfile.TemporaryDirectory(prefix=f"wheel-{canonicalize_name(name)}-") as build_dir:
        r = pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--no-binary", name,
                "--wheel-dir", build_dir, pin, env=SOURCE_BUILD_ENV)  # fmt: skip
        if r.returncode != 0:
            raise WheelsError(f"{pin} has no wheel for Python {python_version} on {platform}, and building "
                              f"it from source failed:\n{r.stderr.strip()}")  # fmt: skip
        for wheel in Path(build_dir).glob("*.whl"):
            if not wheel.name.endswith("-none-any.whl"):
                raise WheelsError(f"{pin} has no wheel for Python {python_version} on {platform}, and its "
                                  f"source builds {wheel.name}, which runs only on this machine: build it on "
                                  "the GPU machine, or pick a version that publishes a wheel for that Python")  # fmt: skip
            shutil.move(wheel, dest / wheel.name)


def build_project_wheel(dest: Path) -> None:
    scratch = REPO / "build"  # setuptools builds in the source tree and leaves this folder there
    scratch_was_there = scratch.exists()
    r = pip("wheel", "--quiet", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dest), str(REPO))
    if not scratch_was_there:
        shutil.rmtree(scratch, ignore_errors=True)
    if r.returncode != 0:
        raise WheelsError(f"building {PROJECT}'s wheel failed:\n{r.stderr.strip()}")


def check_size(folder: Path, max_mib: float) -> float:
    """The folder's size in MiB; an error naming its largest wheels if that is over `max_mib`."""
    files = sorted(folder.iterdir(), key=lambda f: f.stat().st_size, reverse=True)
    size_mib = sum(f.stat().st_size for f in files) / 2**20
    if size_mib > max_mib:
        listing = ", ".join(f"{f.name} ({f.stat().st_size / 2**20:.1f} MiB)" for f in files[:5])
        raise WheelsError(f"the wheels in {folder} come to {size_mib:.1f} MiB, over the limit of {max_mib:g} "
                          f"MiB (WHEELS_MAX_MIB); the largest: {listing}")  # fmt: skip
    return size_mib


def make_wheels(dest: Path, python_version: str, platform: str, max_mib: float = MAX_MIB) -> list[str]:
    """Write the folder (replacing `dest` only once it is complete and within `max_mib`); the pins in it."""
    if not re.fullmatch(r"3\.\d+", python_version):
        raise WheelsError(f"PYTHON_VERSION={python_version}: give major.minor, e.g. 3.12")
    env = marker_environment(python_version, platform)
    installed = installed_distributions()
    needed = closure(project_roots(installed, env), installed, env, stop_at=frozenset(MACHINE_PROVIDED))
    machine = closure([(Requirement(n), "the GPU machine") for n in MACHINE_PROVIDED], installed, env)
    pins = sorted(f"{d.metadata['Name']}=={d.version}" for d in needed.values())

    staging = dest.with_name(dest.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    platforms = target_platforms(platform)
    with ThreadPoolExecutor(PARALLEL_DOWNLOADS) as pool:
        has_wheel = list(pool.map(lambda p: download_binary(p, staging, python_version, platforms), pins))
    source_only = [pin for pin, wheel in zip(pins, has_wheel, strict=True) if not wheel]
    for pin in source_only:
        build_pure_wheel(pin, staging, python_version, platform)
    build_project_wheel(staging)

    size_mib = check_size(staging, max_mib)
    shutil.rmtree(dest, ignore_errors=True)
    staging.rename(dest)
    print(f"{dest}: {len(pins) + 1} wheels for CPython {python_version} on {platform}, {size_mib:.1f} MiB "
          f"({len(source_only)} built from source: {', '.join(source_only) or 'none'})")  # fmt: skip
    left_to_machine = sorted(d.metadata["Name"] for n, d in machine.items() if n not in needed)
    print(f"the GPU machine's torch brings: {', '.join(left_to_machine)}")
    return pins


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-version", required=True, help="the GPU machine's Python, major.minor: 3.12")
    ap.add_argument("--platform", required=True, help="its wheel platform tag: manylinux_2_28_x86_64")
    ap.add_argument("--dest", required=True, type=Path, help="the folder to write (replaced when complete)")
    ap.add_argument(
        "--max-mib", type=float, default=MAX_MIB, help=f"the largest folder accepted (MiB, {MAX_MIB})"
    )
    args = ap.parse_args(argv)
    try:
        make_wheels(args.dest.resolve(), args.python_version, args.platform, args.max_mib)
    except WheelsError as e:
        print(f"make wheels: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
