"""What verifying adds to each stage, measured in the workflow itself: every job of a whole run, with
the time each of its processes spent taking or checking checksums and content hashes beside the
process's own wall time (issue 23's budget: at most 5 % of any stage).

The workflow runs in a fresh folder (`--directory`, the repository's Snakefile, the default config.yaml
unless --configfile, plus --config settings) with `bench/verify_cost_hook` first on PYTHONPATH: its
sitecustomize times ccl.io.hashing.file_sha256 (recorded inputs, image content hashes, weights),
ccl.io.h5.bytes_sha256 and ccl.io.checkpoint.tensors_sha256 (the checksums HDF5 files and checkpoints
carry, taken by writers, checked by readers; h5_content_sha256 for an earlier ccl's files) in every
process, Snakemake's own included, and appends one line per process. The user's hash cache is replaced
by an empty one, so a first run's weights hashes are counted.

Figures per rule: jobs, process wall seconds (sum), verification seconds (sum, and per kind), share =
verification / wall in %, and the largest share of any one job of the rule; `meets_target` = every job's
share <= 5 %. "snakemake" is Snakemake's own process (its planning reads files too). With the `sim`
backends the model stages take a fraction of the real models' time, so their shares are upper bounds.

Writes bench/out/verify_cost.json. Run: python -m bench.verify_cost [--configfile F] [--cores N] [--config KEY=VALUE ...]
e.g. a larger scene: --config "synthetic={n_views: 60, width: 640, height: 480}" --out bench/out/verify_cost_640.json
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
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOOK = Path(__file__).resolve().parent / "verify_cost_hook"
OUT = ROOT / "bench" / "out" / "verify_cost.json"
TARGET_PCT = 5.0


def run_workflow(work: Path, configfile: Path, cores: int, log: Path, settings: list[str]) -> float:
    """The whole default target of `configfile` (+ `settings`, Snakemake's --config) in `work`, every
    process timed by the hook; wall s."""
    shutil.copy(configfile, work / "config.yaml")
    env = {**os.environ, "CCL_BENCH_VERIFY_LOG": str(log), "CCL_HASH_CACHE": str(work / "hash_cache"),
           "PYTHONPATH": os.pathsep.join([str(HOOK), *filter(None, [os.environ.get("PYTHONPATH")])])}  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(cores),
           *(["--config", *settings] if settings else [])]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=work, env=env)
    return time.perf_counter() - start


def summarise(records: list[dict]) -> dict:
    """Per rule: the figures of the module docstring."""
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_rule[r["rule"] or r["process"]].append(r)  # a job's rule, else the program (snakemake)
    rules = {}
    for rule, jobs in sorted(by_rule.items()):
        wall = sum(j["wall_s"] for j in jobs)
        kinds = {k: sum(j["hash_s"][k] for j in jobs) for k in jobs[0]["hash_s"]}
        verify = sum(kinds.values())
        shares = [100 * sum(j["hash_s"].values()) / j["wall_s"] for j in jobs if j["wall_s"] > 0]
        rules[rule] = {
            "jobs": len(jobs),
            "wall_s": round(wall, 2),
            "verify_s": round(verify, 4),
            "verify_s_by_kind": {k: round(v, 4) for k, v in kinds.items()},
            "calls_by_kind": {k: sum(j["calls"][k] for j in jobs) for k in jobs[0]["calls"]},
            "share_pct": round(100 * verify / wall, 2) if wall else None,
            "max_job_share_pct": round(max(shares), 2) if shares else None,
        }
    return rules


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", type=Path, default=ROOT / "config.yaml")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="settings passed to Snakemake's --config (e.g. a larger synthetic scene)",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    from ccl.io import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="ccl-verify-cost-") as tmp:
        work, log = Path(tmp) / "work", Path(tmp) / "verify.jsonl"
        work.mkdir()
        wall = run_workflow(work, args.configfile.resolve(), args.cores, log, args.config)
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rules = summarise(records)
    worst = max((r["max_job_share_pct"] or 0.0) for r in rules.values())
    result = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench.verify_cost", *(argv if argv is not None else sys.argv[1:])]),
        "configfile": str(args.configfile),
        "settings": args.config,
        "run_wall_s": round(wall, 1),
        "processes": len(records),
        "rules": rules,
        "worst_job_share_pct": round(worst, 2),
        "target_pct": TARGET_PCT,
        "meets_target": worst <= TARGET_PCT,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    for rule, r in rules.items():
        print(f"{rule:24s} jobs {r['jobs']:3d}  wall {r['wall_s']:8.1f} s  verify {r['verify_s']:7.3f} s  "
              f"{r['share_pct']:5.2f} %  (worst job {r['max_job_share_pct']:5.2f} %)")  # fmt: skip
    print(f"worst job: {worst:.2f} % (target ≤ {TARGET_PCT} %) → {args.out}")
    return result


if __name__ == "__main__":
    main()
