"""Mutation testing (mutmut) of the modules whose bugs give silently wrong numbers.

For each module of `TEST_SUBSET` (module -> the tests that are its judges), in a private copy of the
repository (`git archive` of a commit, default HEAD, under a temporary folder, so that the shared
working tree is never touched), mutmut rewrites that one module into mutants and runs, for each
mutant, the tests of the subset that execute the mutated function. A mutant is killed when a test
fails, survives when all pass; a timeout (the tests hang, mutmut's limit: 15× the clean run) counts
as detected, as in mutmut's own summary.

Figures, per module: killed, survived, timeout, other (mutmut's "no tests", "suspicious",
"segfault"), total, score = (killed + timeout) / total, the wall time of the run, and every surviving
mutant (its name, file, line and diff). Target (issue 27): score ≥ 0.90 in every module, and every
survivor either killed by a test or listed as equivalent, with the reason, in docs/mutation.md.

Not part of CI: a module takes minutes (hundreds of mutants, each a forked pytest run).

Writes bench/out/mutation.json (entries of modules not run this time are kept).
Run: python -m bench.mutation [--module ccl/splat/losses.py ...] [--ref HEAD] [--max-children 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out" / "mutation.json"

# module -> the pytest arguments that select its judges. A unit-tested module gets its unit tests only:
# mutmut runs every selected test that executes the mutated function, and the stage tests (a codebook
# fit, a SAM run) take tens of seconds each on a CPU, per mutant. Small modules first: `--module` left
# out runs them in this order; masks/backends/sam.py and eval/lerf_ovs.py last.
TEST_SUBSET: dict[str, list[str]] = {
    "ccl/splat/losses.py": ["tests/splat"],
    "ccl/query/relevance.py": ["tests/query"],
    "ccl/query/ops.py": ["tests/query"],
    "ccl/codebook/ops.py": [
        "tests/codebook/test_ops.py",
        "tests/codebook/test_codebook_seeding_and_lookup.py",
    ],
    "ccl/masks/nms.py": [
        "tests/masks/test_mask_nms.py",
        "tests/masks/test_mask_nms_boundaries.py",
        "tests/masks/test_mask_nms_inputs.py",
    ],
    "ccl/masks/merge.py": ["tests/masks/test_sim_masks.py", "tests/masks/test_merge_records.py"],
    "ccl/masks/ops.py": [
        "tests/masks/test_mask_ops.py",
        "tests/masks/test_mask_merge_edges.py",
        "tests/masks/test_mask_ops_filters.py",
    ],
    "ccl/codebook/train.py": ["tests/codebook/test_train.py", "tests/codebook/test_train_settings.py"],
    # track.py and extract.py: the tests that run the stage on the sim backend (and the one OpenCLIP
    # test of each file); the SAM2, OpenCLIP and precision test files build a model per test, and on
    # this shared 2-core machine all of tests/features took 15 s to over a minute per surviving mutant.
    "ccl/tracks/track.py": [
        "tests/tracks/test_tracks_sim.py",
        "tests/tracks/test_tracks_records.py",
        "tests/tracks/test_tracks_ops.py",
    ],
    "ccl/features/extract.py": [
        "tests/features/test_features_sim.py",
        "tests/features/test_resume_features.py",
        "tests/features/test_features_extract_records.py",
    ],
    # open_clip.py: the four files that test the backend against open_clip's own API (about 15 s in
    # all); the rest of tests/features runs the stage (scenes, masks files) around the same calls, at
    # seconds a test: with all of tests/features its 507 mutants took 571 s.
    "ccl/features/backends/open_clip.py": [
        "tests/features/test_features_open_clip.py",
        "tests/features/test_features_open_clip_contract.py",
        "tests/features/test_features_model_config.py",
        "tests/features/test_features_precision.py",
    ],
    "ccl/eval/ovs3d.py": ["tests/eval"],
    # run.py and lerf_ovs.py: the eval tests that call them. With all of tests/eval, run.py took about
    # 7 s a mutant and 5 of its first 27 ran into the time limit (test_table_names builds every table
    # through the workflow's rule): over 40 minutes for its 363 mutants.
    "ccl/eval/run.py": [
        "tests/eval/test_eval_run.py",
        "tests/eval/test_eval_run_rows.py",
        "tests/eval/test_eval_tables.py",
    ],
    "ccl/eval/lerf_ovs.py": [
        "tests/eval/test_eval_lerf_ovs.py",
        "tests/eval/test_lerf_ovs_edges.py",
        "tests/eval/test_eval_run.py",
    ],
    # sam.py: the files that build a tiny SAM and run it or its checks (the first four, not slow: 9 s
    # together on this 2-core machine, against 13 s for all of tests/masks), and the tests written for
    # its survivors (docs/mutation.md). The other files judge ops, nms, merge
    # and the h5 layouts; test_resume_masks.py runs the sam backend too, for its resume logic (3 s more).
    "ccl/masks/backends/sam.py": [
        "tests/masks/test_sam_backend.py",
        "tests/masks/test_sam_overrides.py",
        "tests/masks/test_masks_precision.py",
        "tests/masks/test_sam_fast.py",
        "tests/masks/test_sam_backend_messages_and_records.py",
    ],
}
# Always passed to pytest: slow tests are left to `make test-all` (one of them per mutant would make a
# module take hours); no .pytest_cache in the copy; this module as a plugin (`pytest_configure` below).
PYTEST_ARGS = ["-m", "not slow", "-p", "no:cacheprovider", "-p", "bench.mutation"]
# What the tests read besides ccl/ and tests/ (configs, the workflow, the bench's own scenes).
ALSO_COPY = [
    "config.yaml",
    "configs",
    "workflow",
    "Snakefile",
    "profiles",
    "bench",
    "docs",
    "Makefile",
    "README.md",
]


def pytest_configure(config) -> None:
    """In each forked mutant run: a new lock for tqdm (ccl.runlog.progress's bar). mutmut forks every
    mutant's pytest run from one process, and tqdm's class-wide lock (a multiprocessing semaphore, shared
    by the forks) stays taken when a run holding it is killed at the time limit, or was taken by the
    parent's monitor thread at the fork: every later run that draws a bar then waits on it until its own
    time limit (eval/run.py: 20 time-outs in a row, each 15 s, the child asleep on a futex)."""
    import threading

    from tqdm.std import tqdm

    def classes(cls):  # tqdm.auto's class keeps a lock of its own once one of its bars was drawn
        return [cls, *(c for sub in cls.__subclasses__() for c in classes(sub))]

    for cls in classes(tqdm):
        cls.set_lock(threading.RLock())


def private_copy(ref: str) -> Path:
    """The repository at `ref` in a new temporary folder, with a mutmut section for one module to come."""
    root = Path(tempfile.mkdtemp(prefix="ccl-mutation-"))
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True)
    return root


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def configure(root: Path, module: str) -> None:
    """Append mutmut's section to the copy's pyproject.toml: mutate `module` only, judged by its subset."""
    section = (
        "\n[tool.mutmut]\n"
        'source_paths = ["ccl"]\n'
        f"only_mutate = {toml_list([module])}\n"
        f"pytest_add_cli_args_test_selection = {toml_list(TEST_SUBSET[module])}\n"
        f"pytest_add_cli_args = {toml_list(PYTEST_ARGS)}\n"
        f"also_copy = {toml_list(ALSO_COPY)}\n"
    )
    with open(root / "pyproject.toml", "a") as f:
        f.write(section)


def check_copy_is_imported(root: Path) -> None:
    """mutmut runs the tests from mutants/ with that folder first on sys.path; .venv's editable install
    of ccl points at the shared tree, so make sure the copy wins (else every mutant would 'survive')."""
    out = subprocess.run(
        [sys.executable, "-c", "import ccl; print(ccl.__file__)"],
        cwd=root,
        env=child_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not Path(out).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"the private copy {root} imports ccl from {out}, not from itself")


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # one thread per test process: mutmut runs --max-children of them side by side
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def mutmut_bin() -> str:
    path = Path(sys.executable).parent / "mutmut"
    if not path.exists():
        raise FileNotFoundError(f"{path}: mutmut is not installed; run `make setup` (it is in the dev extra)")
    return str(path)


def changed_line(source_lines: list[str], diff: str) -> int | None:
    """Line (1-based) in the module of the first line the mutant removes. mutmut diffs the function
    alone (a method without its class indent), so the hunk's offset is relative to the function:
    find the hunk's old text (context and removed lines) in the module instead."""
    hunk = [ln for ln in diff.splitlines() if not ln.startswith(("---", "+++", "@@"))]
    old = [ln[1:].strip() for ln in hunk if not ln.startswith("+")]
    first_removed = [ln for ln in hunk if not ln.startswith("+")].index(
        next(ln for ln in hunk if ln.startswith("-"))
    )
    stripped = [ln.strip() for ln in source_lines]
    for start in range(len(stripped) - len(old) + 1):
        if stripped[start : start + len(old)] == old:
            return start + first_removed + 1
    return None


def survivor_record(root: Path, module: str, name: str, source_lines: list[str]) -> dict:
    shown = subprocess.run(
        [mutmut_bin(), "show", name], cwd=root, env=child_env(), check=True, capture_output=True, text=True
    ).stdout
    diff = "\n".join(ln for ln in shown.splitlines() if not ln.startswith("# ")).strip("\n")
    return {"mutant": name, "file": module, "line": changed_line(source_lines, diff), "diff": diff}


def mutate_module(module: str, *, ref: str, max_children: int) -> dict:
    from mutmut.stats import status_by_exit_code  # the tool's own reading of its exit codes

    root = private_copy(ref)
    try:
        configure(root, module)
        check_copy_is_imported(root)
        t0 = time.perf_counter()
        run = subprocess.run(
            ["nice", "-n", "10", mutmut_bin(), "run", "--max-children", str(max_children)],
            cwd=root,
            env=child_env(),
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - t0
        meta = root / "mutants" / (module + ".meta")
        if run.returncode != 0 or not meta.exists():
            tail = (run.stdout + run.stderr).replace("\r", "\n")[-3000:]
            raise RuntimeError(f"mutmut run on {module} failed (exit {run.returncode}):\n{tail}")
        exit_codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = {name: status_by_exit_code[code] for name, code in exit_codes.items()}
        counts = {s: sum(1 for v in status.values() if v == s) for s in ("killed", "survived", "timeout")}
        total = len(status)
        source_lines = (root / module).read_text().splitlines()
        survivors = [
            survivor_record(root, module, n, source_lines) for n, s in status.items() if s == "survived"
        ]
        return {
            **counts,
            "other": total - sum(counts.values()),
            "other_statuses": sorted({s for s in status.values() if s not in counts}),
            "total": total,
            "score": round((counts["killed"] + counts["timeout"]) / total, 4) if total else None,
            "run_s": round(seconds, 1),
            "tests": TEST_SUBSET[module] + PYTEST_ARGS,
            "survivors": survivors,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    # here, not at the top: this module is also the tests' pytest plugin, loaded before mutmut's copy of ccl
    from ccl.io.atomic import atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--module", nargs="+", choices=list(TEST_SUBSET), default=list(TEST_SUBSET))
    parser.add_argument("--ref", default="HEAD", help="the commit to mutate (git archive of it)")
    parser.add_argument("--max-children", type=int, default=1, help="mutants tested side by side")
    args = parser.parse_args(argv)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", args.ref], check=True, capture_output=True, text=True
    ).stdout.strip()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    failed: list[str] = []
    for module in args.module:
        print(f"mutmut: {module} ({' '.join(TEST_SUBSET[module])})", flush=True)
        try:
            entry = mutate_module(module, ref=commit, max_children=args.max_children)
        except (
            RuntimeError
        ) as e:  # e.g. a test of the subset already fails unmutated: the other modules still run
            print(f"  {e}", file=sys.stderr, flush=True)
            failed.append(module)
            continue
        entry.update(commit=commit, machine=f"{platform.machine()}, {os.cpu_count()} cores")
        # read again just before writing: runs of other modules side by side write the same file
        report = json.loads(OUT.read_text()) if OUT.exists() else {"modules": {}}
        report["modules"][module] = entry
        report["target"] = "score >= 0.90 per module; every survivor killed or equivalent (docs/mutation.md)"
        report["meets_target"] = {
            m: e["score"] is not None and e["score"] >= 0.90 for m, e in report["modules"].items()
        }
        # written after every module, so that a long run keeps what it has measured
        atomic_write_text(OUT, json.dumps(report, indent=2) + "\n")  # whole for a reader beside it
        print(
            f"  {entry['killed']} killed, {entry['survived']} survived, {entry['timeout']} timeout, "
            f"{entry['other']} other of {entry['total']}: score {entry['score']}, {entry['run_s']} s",
            flush=True,
        )
    if failed:
        sys.exit(
            f"mutmut could not run on: {', '.join(failed)} (its entry in {OUT} is the previous run's, if any)"
        )


if __name__ == "__main__":
    main()
