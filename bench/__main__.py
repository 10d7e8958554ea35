"""Run every benchmark module under bench/ (each writes bench/out/<name>.json), except those that take
hours and are run on their own (`python -m bench.mutation`)."""

import importlib
import pkgutil
import sys
from pathlib import Path

RUN_ALONE = {"mutation"}  # mutation testing of 15 modules: hours on a workstation

if __name__ == "__main__":
    names = sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_") and m.name not in RUN_ALONE
    )
    failed = []
    for name in names:
        print(f"== bench.{name}", flush=True)
        module = importlib.import_module(f"bench.{name}")
        try:
            module.main()
        except Exception as e:  # one broken benchmark must not hide the others' figures
            print(f"bench.{name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            failed.append(name)
    sys.exit(1 if failed else 0)
