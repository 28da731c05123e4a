"""Records of many files: registration cost as a Record grows, dispatch latency, object sizes, memory.

On the embedded sandbox, with the operator as a process of its own (`autoscene operator -A`, as in a
cluster), it registers `--files` files (default 100,000) into one Record in batches of `--batch`
(default 1,000), the way uploads register them (one RecordFile each), and prints:

  batch s      seconds to register a batch, for the first and the last batches (flat = no growth)
  reg→inv      for probe files registered at the start and at the end, registration → Invocation seen
               by a watch: p50 / p99 seconds
  largest      the largest object the API server holds, in bytes (the Record, a RecordFile)
  operator MB  the operator's peak RSS
  totals       the Record's fileCount once the operator caught up

The files are registered, not copied (the cost of bytes is the upload's, not the Record's). Probe
files match a Trigger whose Action runs `true`; the others match none.

Usage: python bench/records.py [--files 100000] [--batch 1000] [--probes 50]
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from kubernetes import watch  # noqa: E402

from autoscene import files, kube, upload  # noqa: E402
from autoscene.sandbox.demo import noop_manifests  # noqa: E402
from autoscene.sandbox.session import Sandbox, wait_for  # noqa: E402
from fanout import claim, peak_rss_mb, rss_mb  # noqa: E402  (bench/ is on sys.path when run as a script)

RECORD, CLAIM = "big", "big-files"


def manifests() -> list[dict[str, Any]]:
    group = "autoscene.io/v1alpha1"
    return [
        *noop_manifests("probe-*.dat", trigger="probes"),
        {
            "apiVersion": group,
            "kind": "Record",
            "metadata": {"name": RECORD},
            "spec": {"storage": {"claimName": CLAIM}},
        },
    ]


def fake(path: str) -> upload.UploadedFile:
    return upload.UploadedFile(path, 1024, hashlib.sha256(path.encode()).hexdigest())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--probes", type=int, default=50)
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="records-bench-"))
    with Sandbox(folder / "sandbox", with_operator=False) as sandbox:
        namespace = sandbox.namespace
        kube.core().create_namespaced_persistent_volume_claim(namespace, claim(CLAIM))
        sandbox.apply(manifests())
        operator = subprocess.Popen(
            [str(Path(sys.executable).with_name("autoscene")), "operator", "-A", "--no-leader-election"],
            env={**os.environ, "KUBECONFIG": str(sandbox.kubeconfig)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # Whatever happens below, the operator does not outlive the benchmark.
        atexit.register(lambda: operator.poll() is None and operator.kill())
        seen: dict[str, float] = {}
        stop = threading.Event()

        def watch_invocations() -> None:
            while not stop.is_set():
                for event in watch.Watch().stream(
                    kube.custom().list_namespaced_custom_object,
                    "autoscene.io", "v1alpha1", namespace, "invocations", timeout_seconds=2,
                ):  # fmt: skip
                    seen.setdefault(event["object"]["spec"]["file"], time.monotonic())

        threading.Thread(target=watch_invocations, daemon=True).start()
        time.sleep(3)  # the operator's start-up

        def probe(tag: str) -> list[float]:
            registered = {}
            for index in range(options.probes):
                path = f"probe-{tag}-{index}.dat"
                upload.register(namespace, RECORD, [fake(path)])
                registered[path] = time.monotonic()
                time.sleep(0.05)
            try:
                wait_for(
                    lambda: all(path in seen for path in registered) or None, 300, f"the {tag} probes' runs"
                )
            except TimeoutError:
                print(
                    f"the {tag} probes' runs: {len([p for p in registered if p in seen])} of "
                    f"{len(registered)} within 300 s",
                    flush=True,
                )
            # A probe that got no run within the wait counts as never (infinite latency).
            return sorted(seen.get(path, float("inf")) - when for path, when in registered.items())

        early = probe("start")
        batch_seconds = []
        for start in range(0, options.files, options.batch):
            batch = [
                fake(f"data/{index:07d}.bin")
                for index in range(start, min(start + options.batch, options.files))
            ]
            began = time.monotonic()
            upload.register(namespace, RECORD, batch)
            batch_seconds.append(time.monotonic() - began)
            if len(batch_seconds) % 10 == 0:
                print(
                    f"{start + len(batch)} files registered; operator RSS {rss_mb(operator.pid):.0f} MB, "
                    f"peak {peak_rss_mb(operator.pid):.0f} MB",
                    flush=True,
                )
        late = probe("end")
        total = options.files + 2 * options.probes

        def caught_up() -> int | None:
            record = kube.get_custom("records", namespace, RECORD) or {}
            count = (record.get("status") or {}).get("fileCount")
            return count if count == total else None

        try:
            wait_for(caught_up, 900, "the Record's totals")
        except TimeoutError:
            print("the Record's totals did not catch up within 900 s", flush=True)
        record = kube.get_custom("records", namespace, RECORD) or {}
        one_file = kube.list_custom(files.PLURAL, namespace, label_selector=f"autoscene.io/record={RECORD}")[
            :1
        ]
        largest_record = len(json.dumps(record))
        largest_file = max((len(json.dumps(item)) for item in one_file), default=0)
        operator_mb = peak_rss_mb(operator.pid)
        stop.set()
        operator.terminate()
        operator.wait(timeout=30)

    def quantile(values: list[float], share: float) -> float:
        return values[min(len(values) - 1, int(share * len(values)))]

    first, last = batch_seconds[:5], batch_seconds[-5:]
    print(f"\n{options.files} files in batches of {options.batch}")
    print(
        "batch s (first 5 median / last 5 median): "
        f"{statistics.median(first):.3f} / {statistics.median(last):.3f}"
    )
    print(f"  ratio last / first: {statistics.median(last) / statistics.median(first):.2f}")
    for tag, values in (("start", early), ("end", late)):
        print(f"reg→inv at the {tag}: p50 {quantile(values, 0.5):.3f} s, p99 {quantile(values, 0.99):.3f} s")
    print(f"largest objects: Record {largest_record} bytes, RecordFile {largest_file} bytes")
    print(f"operator peak RSS: {operator_mb:.0f} MB")
    print(
        f"Record totals: {record.get('status', {}).get('fileCount')} files, "
        f"{record.get('status', {}).get('bytes')} bytes"
    )


if __name__ == "__main__":
    main()
