"""Exactly once under faults, at size: the operator SIGKILLed at random moments during a burst.

Runs what tests/test_faults.py runs (100 files, 3 kills) with more: `--files` (default 500) uploaded in
batches of 10 while the operator, a process of its own against the embedded API server, is killed
`--kills` times (default 10) and restarted each time. Prints how many files got exactly one
Invocation, how many Jobs there are, how many runs are not final, and the counts users see (the
Trigger's `fired`, the Record's `fileCount`); exits 1 on any mismatch.

Usage: python bench/chaos.py [--files 500] [--kills 10] [--seed 7]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from tests.test_faults import burst_with_kills  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=500)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    options = parser.parse_args()
    started = time.monotonic()
    outcome = burst_with_kills(
        Path(tempfile.mkdtemp(prefix="chaos-")), options.files, options.kills, options.seed
    )
    runs = outcome["runs"]
    files = [run["spec"]["file"] for run in runs]
    once = sum(1 for path in set(files) if files.count(path) == 1)
    jobs = [name for name in outcome["jobs"] if name.startswith("on-bin-")]
    unfinished = [run for run in runs if run["status"]["phase"] != "Succeeded"]
    print(f"{options.files} files, {options.kills} kills, {time.monotonic() - started:.0f} s")
    print(f"files with exactly one Invocation: {once} of {options.files}")
    print(
        f"Invocations: {len(runs)}, Jobs: {len(jobs)} ({len(set(jobs))} distinct), "
        f"not Succeeded: {len(unfinished)}"
    )
    ok = once == options.files == len(runs) == len(set(jobs)) == len(jobs) and not unfinished
    print(f"Trigger fired: {outcome['fired']}, Record fileCount: {outcome['fileCount']}")
    ok = ok and outcome["fired"] == outcome["fileCount"] == options.files
    print("exactly once: yes" if ok else "exactly once: NO")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
