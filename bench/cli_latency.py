"""How fast the `autoscene` command answers: every command's `--help`, `runs` failing against an API
server that is not there (a kubeconfig naming a closed port) and against a stopped sandbox's folder, and
the commands that read a live API (runs, invocations, logs, outputs, an unknown name) against a sandbox
that ran the demo (`autoscene sandbox --keep`, started here).

Each is started as a user starts it (the `autoscene` entry point, a process of its own, in an empty
folder), once untimed to warm the bytecode caches, then `--rounds` times; it prints the median, fastest
and slowest wall seconds, and exits 1 when a median is over `--target`.

Usage: python bench/cli_latency.py [--rounds 5] [--target 1.0] [--no-live]
"""

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from autoscene.sandbox.session import FolderLock  # noqa: E402

EXECUTABLE = Path(sys.executable).with_name("autoscene")


def closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def kubeconfig_for(server: str, path: Path) -> Path:
    """A kubeconfig whose one context points at `server`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def commands() -> list[str]:
    """The commands `autoscene --help` lists."""
    from typer.main import get_command

    from autoscene.cli import app

    return sorted(get_command(app).commands)  # type: ignore[attr-defined]


def wall_seconds(args: list[str], folder: Path, expected: int) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(EXECUTABLE), *args], cwd=folder, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != expected:
        raise SystemExit(f"autoscene {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return elapsed


def live_sandbox(folder: Path) -> subprocess.Popen[str]:
    """`autoscene sandbox --keep` in `folder`, once its demo has run (its chain: two Invocations)."""
    demo = subprocess.Popen(
        [str(EXECUTABLE), "sandbox", "--keep", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert demo.stdout is not None
    for line in demo.stdout:
        if "sandbox running" in line:
            return demo
    raise SystemExit(f"the sandbox stopped before its demo ended (exit {demo.wait()})")


def live_cases(folder: Path) -> list[tuple[str, list[str], int]]:
    config = ["--kubeconfig", str(folder / "kubeconfig")]
    from autoscene import kube

    kube.configure(str(folder / "kubeconfig"))
    runs = kube.list_custom("invocations", "default", label_selector="autoscene.io/action=extract-images")
    run = runs[0]["metadata"]["name"]
    return [
        ("runs, live", ["runs", *config], 0),
        ("runs -a extract-images, live", ["runs", "-a", "extract-images", *config], 0),
        ("invocations, live", ["invocations", *config], 0),
        ("logs, live", ["logs", run, *config], 0),
        ("outputs, live", ["outputs", run, *config], 0),
        ("logs of an unknown run, live", ["logs", "no-such-run", *config], 1),
    ]


def time_each(cases: list[tuple[str, list[str], int]], folder: Path, rounds: int, target: float) -> list[str]:
    """Print each case's median, fastest and slowest seconds; the labels whose median is over `target`."""
    width = max(len(label) for label, _, _ in cases)
    print(f"{'autoscene':<{width}}  {'median s':>8}  {'min s':>6}  {'max s':>6}")
    over = []
    for label, args, expected in cases:
        wall_seconds(args, folder, expected)
        times = [wall_seconds(args, folder, expected) for _ in range(rounds)]
        median = statistics.median(times)
        flag = "  OVER" if median > target else ""
        print(f"{label:<{width}}  {median:8.2f}  {min(times):6.2f}  {max(times):6.2f}{flag}")
        if flag:
            over.append(label)
    return over


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--target", type=float, default=1.0, help="Seconds a median may take.")
    parser.add_argument("--live", action=argparse.BooleanOptionalAction, default=True)
    options = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        nowhere = kubeconfig_for(f"http://127.0.0.1:{closed_port()}", folder / "nowhere" / "kubeconfig")
        stopped = folder / "stopped-sandbox"
        lock = FolderLock(stopped)
        lock.acquire()  # the folder of a sandbox that ran, then stopped
        lock.release()
        kubeconfig_for(f"http://127.0.0.1:{closed_port()}", stopped / "kubeconfig")
        cases: list[tuple[str, list[str], int]] = [("--help", ["--help"], 0)]
        cases += [(f"{name} --help", [name, "--help"], 0) for name in commands()]
        cases += [
            ("runs, API unreachable", ["runs", "--kubeconfig", str(nowhere)], 1),
            ("runs, sandbox stopped", ["runs", "--kubeconfig", str(stopped / "kubeconfig")], 1),
        ]

        demo = live_sandbox(folder / "live") if options.live else None
        try:
            if demo is not None:
                cases += live_cases(folder / "live")
            over = time_each(cases, folder, options.rounds, options.target)
        finally:  # the sandbox never outlives the benchmark, however it ends
            if demo is not None:
                demo.terminate()
                demo.wait(timeout=60)
    if over:
        print(f"over {options.target:g} s: {', '.join(over)}")
        raise SystemExit(1)
    print(f"every median under {options.target:g} s")


if __name__ == "__main__":
    main()
