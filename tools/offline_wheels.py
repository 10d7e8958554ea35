"""`make wheels`: every wheel this project needs beyond the machine's own torch, for a GPU machine without
network (README, "GPU workstation").

A GPU machine often brings its own torch and torchvision (a site build for its CUDA) and no internet.
This script writes one folder that installs over that torch with `pip install --no-index --no-deps`:

- the distributions that `make setup` installed into .venv, at the same versions (the ones the tests
  ran against), reached from this project's dependencies and pytest (gpu-check runs tests/cuda), with
  environment markers evaluated for the target Python and platform;
- less torch, torchvision and what only they require (nvidia-*, triton, sympy, networkx, ...): the
  machine's torch comes with those;
- less what the machine lists (--machine-packages, its `pip list --format=freeze`) in a version that
  satisfies every requirement on it in the dependency tree, or without a version (taken on trust), and
  what only those require; a listed package in a version that does not fit is kept, at .venv's version,
  which shadows the machine's;
- less the optional packages named with --without (OPTIONAL: each used by one part of ccl only);
- as binary wheels for the target (`pip download --only-binary=:all: --python-version --platform`),
  except the distributions published only as source (sam2, iopath, antlr4-python3-runtime): those are
  built here as wheels, and must come out pure Python (`*-none-any.whl`) to suit any machine;
- this project itself as a wheel.

gsplat's wheel from the index is its pure-Python one: it compiles its CUDA code on the GPU machine, on
first use, against that machine's torch.

    .venv/bin/python -m tools.offline_wheels --python-version 3.12 --platform manylinux_2_28_x86_64 --dest wheels \
        --machine-packages gpu-packages.txt --without pycolmap --without av
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
from packaging.version import InvalidVersion, Version

from ccl.optional_deps import OPTIONAL

REPO = Path(__file__).resolve().parent.parent
PROJECT = "ccl-lgs"
# What the GPU machine brings, with what only these require.
MACHINE_PROVIDED = ("torch", "torchvision")
# gpu-check runs tests/cuda with pytest; its version range is the one of this project's `dev` extra.
TEST_RUNNER, TEST_EXTRA = "pytest", "dev"
# The folder travels to the GPU machine with the checkout, which takes at most 64 MiB. The project's
# dependencies alone come to about 215 MiB for Python 3.12 (opencv-python-headless 61, pycolmap 36, pulp
# with its solver 16, numpy 16, pandas 12), so the folder leaves out what the machine already has
# (--machine-packages) and, where still needed, the optional parts below; a set past the limit stops with
# its largest wheels named.
MAX_MIB = 64
# What the folder may go without (--without): ccl.optional_deps.OPTIONAL, each imported only inside the
# functions of one part of ccl that a run may not use (tests/test_offline_wheels.py checks this).
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
    asked: dict[str, list[tuple[Requirement, str]]] | None = None,
) -> dict[str, md.Distribution]:
    """Every installed distribution reached from `roots` ((requirement, who asked for it) pairs) through
    requirements that apply on the target, not entering the names in `stop_at` (the GPU machine brings
    those; what an extra asks of one of them beyond the distribution itself is still followed). `asked`,
    if given, collects every requirement met on the way, by canonical name."""
    reached: dict[str, md.Distribution] = {}
    extras_done: dict[str, set[str]] = {}
    queue = list(roots)
    while queue:
        req, asked_by = queue.pop()
        name = canonicalize_name(req.name)
        if asked is not None:
            asked.setdefault(name, []).append((req, asked_by))
        extras = set(req.extras)
        if name in stop_at:
            if extras - extras_done.get(name, set()) and name in installed:
                base = {str(r) for r in requirements_of(installed[name], (), env)}
                extra_only = requirements_of(installed[name], extras, env)
                queue.extend(
                    (r, f"{req.name}[{','.join(sorted(extras))}]") for r in extra_only if str(r) not in base
                )
                extras_done.setdefault(name, set()).update(extras)
            continue
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


FREEZE_LINE = re.compile(r"([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:===?\s*(\S+)|\s@\s*\S+)?")


def read_machine_packages(path: Path) -> dict[str, Version | None]:
    """What `python3 -m pip list --format=freeze` printed on the GPU machine (NAME==VERSION lines; bare
    names and `#` comments accepted): each distribution's version by canonical name, None where the
    file gives none."""
    how = "write it on the GPU machine with `python3 -m pip list --format=freeze > gpu-packages.txt`"
    try:
        text = path.read_text()
    except OSError as e:
        raise WheelsError(f"MACHINE_PACKAGES={path}: {e.strerror}: {how} and copy it here") from None
    found: dict[str, Version | None] = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        m = FREEZE_LINE.fullmatch(line)
        if m is None:
            raise WheelsError(f"{path}:{lineno}: {line!r} is not NAME==VERSION nor a bare NAME: {how}")
        try:
            found[canonicalize_name(m[1])] = Version(m[2]) if m[2] else None
        except InvalidVersion:
            raise WheelsError(f"{path}:{lineno}: {m[2]!r} is not a version: {how}") from None
    missing = [n for n in MACHINE_PROVIDED if n not in found]
    if missing:
        raise WheelsError(f"MACHINE_PACKAGES={path} lists no {' nor '.join(missing)}: the folder is for a "
                          "machine with its own torch and torchvision; list that machine's packages, or "
                          "follow README 'GPU workstation', 'The GPU machine has no torch'")  # fmt: skip
    return found


def split_by_machine(
    needed: dict[str, md.Distribution],
    asked: dict[str, list[tuple[Requirement, str]]],
    machine: dict[str, Version | None],
) -> tuple[dict[str, Version], list[str], dict[str, list[str]]]:
    """The needed distributions the GPU machine has: (those whose version satisfies every requirement
    on them in the dependency tree, by name; those the list gives without version, taken on trust;
    those in a version that does not fit, with the requirements it fails)."""
    fits: dict[str, Version] = {}
    trusted: list[str] = []
    unfit: dict[str, list[str]] = {}
    for name in sorted(needed):
        if name not in machine:
            continue
        version = machine[name]
        if version is None:
            trusted.append(name)
            continue
        failed = sorted({f"{by} requires {req}" for req, by in asked.get(name, [])
                         if not req.specifier.contains(version, prereleases=True)})  # fmt: skip
        if failed:
            unfit[name] = failed
        else:
            fits[name] = version
    return fits, trusted, unfit


def make_wheels(
    dest: Path,
    python_version: str,
    platform: str,
    max_mib: float = MAX_MIB,
    machine_packages: Path | None = None,
    without: Iterable[str] = (),
) -> list[str]:
    """Write the folder (replacing `dest` only once it is complete and within `max_mib`); the pins in it.
    `machine_packages`: the GPU machine's `pip list --format=freeze`, whose fitting distributions are
    left out; `without`: names from OPTIONAL to leave out as well."""
    if not re.fullmatch(r"3\.\d+", python_version):
        raise WheelsError(f"PYTHON_VERSION={python_version}: give major.minor, e.g. 3.12")
    without = sorted({canonicalize_name(n.strip()) for arg in without for n in arg.split(",") if n.strip()})
    unknown = [n for n in without if n not in OPTIONAL]
    if unknown:
        raise WheelsError(f"WITHOUT={' '.join(unknown)}: only {', '.join(OPTIONAL)} can be left out (each is "
                          "imported only by one part of ccl); the rest of the project needs the others")  # fmt: skip
    machine_list = read_machine_packages(machine_packages) if machine_packages else {}
    env = marker_environment(python_version, platform)
    installed = installed_distributions()
    roots = project_roots(installed, env)
    torch_side = frozenset(MACHINE_PROVIDED)
    asked: dict[str, list[tuple[Requirement, str]]] = {}
    full = closure(roots, installed, env, stop_at=torch_side, asked=asked)
    fits, trusted, unfit = split_by_machine(full, asked, machine_list)
    # what the machine has goes unvisited: its own copies come with what they require
    needed = closure(roots, installed, env, stop_at=torch_side | set(fits) | set(trusted) | set(without))
    without_only = set(full) - set(closure(roots, installed, env, stop_at=torch_side | set(without)))
    machine_only = set(full) - set(needed) - set(fits) - set(trusted) - without_only
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

    def names(found: Iterable[str]) -> str:
        return ", ".join(sorted(full[n].metadata["Name"] for n in found)) or "none"

    left_to_machine = sorted(d.metadata["Name"] for n, d in machine.items() if n not in full)
    print(f"the GPU machine's torch brings: {', '.join(left_to_machine)}")
    if machine_packages:
        torch_versions = ", ".join(f"{n} {machine_list[n] or '(no version given)'}" for n in MACHINE_PROVIDED)
        print(f"{machine_packages}: the GPU machine has {torch_versions}; left out as it has them:")
        print(f"  in a version every requirement on it accepts ({len(fits)}): "
              f"{', '.join(f'{names([n])} {v}' for n, v in fits.items()) or 'none'}")  # fmt: skip
        print(f"  without a version in the list, taken on trust ({len(trusted)}): {names(trusted)}")
        print(f"  required only by the machine's own copies of those ({len(machine_only)}): "
              f"{names(machine_only)}")  # fmt: skip
        for name, failed in unfit.items():
            print(f"kept: the GPU machine has {names([name])} {machine_list[name]}, but {'; '.join(failed)}")
    left_out = [n for n in without if n in full and n not in fits and n not in trusted]
    for name in left_out:
        print(f"left out (WITHOUT): {names([name])} {full[name].version}: {OPTIONAL[name]}")
    if rest := without_only - set(left_out) - set(fits) - set(trusted):
        print(f"  and what only they require: {names(rest)}")
    print(f"total: {size_mib:.1f} MiB in {dest} (limit {max_mib:g} MiB)")
    return pins


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--python-version", required=True, help="the GPU machine's Python, major.minor: 3.12")
    ap.add_argument("--platform", required=True, help="its wheel platform tag: manylinux_2_28_x86_64")
    ap.add_argument("--dest", required=True, type=Path, help="the folder to write (replaced when complete)")
    ap.add_argument(
        "--max-mib", type=float, default=MAX_MIB, help=f"the largest folder accepted (MiB, {MAX_MIB})"
    )
    ap.add_argument("--machine-packages", type=Path, metavar="FILE",
                    help="the GPU machine's `python3 -m pip list --format=freeze`: what it has that fits "
                    "is left out")  # fmt: skip
    ap.add_argument("--without", action="append", default=[], metavar="NAME",
                    help="leave this optional distribution out too (repeatable): "
                    + "; ".join(f"{k}: {v}" for k, v in OPTIONAL.items()))  # fmt: skip
    args = ap.parse_args(argv)
    try:
        make_wheels(args.dest.resolve(), args.python_version, args.platform, args.max_mib,
                    args.machine_packages, args.without)  # fmt: skip
    except WheelsError as e:
        print(f"make wheels: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
