"""Fan-out benchmark: N matching files registered at once, on the embedded sandbox and on the real
control plane, side by side.

For each N (`--files`, default 100,1000) and each control plane (`--control-planes`, default both),
a fresh cluster gets an Action that runs `true` (busybox, 10m CPU), a Trigger on `*.bin` and a Record;
N tiny files are uploaded in one go by a process of its own, as `autoscene upload` would (the
embedded sandbox: into its volume folder; the real control plane: through the API, an uploader Pod
and a tar stream over exec), which registers them at once.
Then it measures, from the start of that upload (which registers the files as it goes):

  upload        seconds the upload took
  invocations   seconds until every file has its Invocation
  jobs          seconds until every Invocation has its Job
  succeeded     seconds until every Invocation is Succeeded
  reg→job       registration → Job, per file (its RecordFile and its Job first seen by watches):
                p50 / p95 / p99 seconds
  most running  the most Jobs active at once (status.active > 0)
  operator MB   the operator's peak RSS (a process of its own on both control planes)
  idle cp %     once every run is over, the API server side's CPU use over `--idle-seconds` (default
                20), in % of one core: what a quiet cluster with N finished runs costs
  cp CPU s      CPU seconds of the API server side (embedded: this process, with its kubelet, and its
                Job controller's process; real: etcd, kube-apiserver, kube-controller-manager) and of
                the operator

The same N also goes through a minimal kopf operator (bench/minimal_operator.py: one Job per file,
two writes) on the same control plane, for the ratio of the time to all Jobs complete.

`--concurrency 0,10` also runs autoscene with the Action's `spec.concurrency` at each limit (0: none):
the most Jobs running at once must stay within the limit (a row over it is marked OVER LIMIT, and the
script exits 1), and the total time is printed beside the unlimited run's.

Usage: python bench/fanout.py [--files 100,1000] [--control-planes embedded,real]
                              [--operators autoscene,minimal] [--concurrency 0] [--timeout 900]
The real control plane needs hack/build-control-plane.sh and root.
"""

from __future__ import annotations

import argparse
import functools
import logging
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from autoscene import cluster_upload, kube, labels, naming, upload, watching  # noqa: E402
from autoscene.sandbox.demo import noop_manifests  # noqa: E402

RECORD, ACTION, TRIGGER, CLAIM = "fanout", "noop", "on-bin", "fanout-files"
MINIMAL = Path(__file__).with_name("minimal_operator.py")
# minimal_operator.py's LABEL, its Jobs' RecordFile (that script reads sys.argv when imported).
MINIMAL_LABEL = "bench.autoscene.io/file"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def claim(name: str = CLAIM) -> dict[str, Any]:
    """A claim for a Record of the benchmark, which works with or without the autoscene operator."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def manifests(concurrency: int = 0) -> list[dict[str, Any]]:
    group = "autoscene.io/v1alpha1"
    action: dict[str, Any] = {
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
    }
    if concurrency:
        action["concurrency"] = concurrency
    return [
        *noop_manifests("*.bin", action=ACTION, trigger=TRIGGER, **action),
        # On a claim of its own, so that uploads work with either operator (the minimal one makes none).
        {
            "apiVersion": group,
            "kind": "Record",
            "metadata": {"name": RECORD},
            "spec": {"storage": {"claimName": CLAIM}},
        },
    ]


@dataclass
class Observed:
    """What the watches saw, with the moment each thing was first seen."""

    invocations: dict[str, float] = field(default_factory=dict)
    jobs: dict[str, float] = field(default_factory=dict)
    jobs_done: dict[str, float] = field(default_factory=dict)
    succeeded: dict[str, float] = field(default_factory=dict)
    active: set[str] = field(default_factory=set)
    most_active: int = 0
    registered: dict[str, float] = field(default_factory=dict)  # RecordFile name → first seen
    file_of_job: dict[str, str] = field(default_factory=dict)  # Job name → its RecordFile's name

    def latencies(self) -> list[float]:
        """Registration → Job seen, per file (its RecordFile and its Job first seen by the watches)."""
        return [
            seen - self.registered[self.file_of_job[job]]
            for job, seen in self.jobs.items()
            if self.file_of_job.get(job) in self.registered
        ]


def observe(
    kubeconfig: str, namespace: str, ours: bool, stop: Any, ready: Any, finished: Any, results: Any
) -> None:
    """The benchmark's observer, run as a process of its own (as any client of a cluster is): its
    watches' reading costs nothing to the embedded control plane, which runs in the benchmark's own
    process. Sets `ready` once every watch has listed, keeps `finished` (a shared integer) at the
    number of runs done, and puts what it saw on `results` once `stop` is set."""
    kube.configure(kubeconfig)
    observed, stopped = Observed(), threading.Event()
    listed = follow(namespace, observed, stopped)
    while not stop.wait(0.1):
        if all(event.is_set() for event in listed):
            ready.set()
        finished.value = len(observed.succeeded if ours else observed.jobs_done)
    stopped.set()
    results.put(observed)


def upload_files(
    kubeconfig: str, volumes: str, namespace: str, sources: str, ready: Any, go: Any, took: Any
) -> None:
    """The upload, run as a process of its own, as `autoscene upload` is: into the volume folder of the
    embedded control plane (`volumes`), else through an uploader Pod. Sets `ready` once it is set up,
    starts when `go` is set, and leaves its length in seconds in `took`."""
    kube.configure(kubeconfig)
    planned = upload.plan(sorted(Path(sources).iterdir()))
    ready.set()
    go.wait()
    started = time.monotonic()
    if volumes:
        upload.upload_to_folder(Path(volumes), namespace, RECORD, planned, lambda _: None)
    else:
        cluster_upload.upload_via_exec(namespace, RECORD, planned, lambda _: None)
    took.value = time.monotonic() - started


def follow(namespace: str, observed: Observed, stop: threading.Event) -> list[threading.Event]:
    """Record when each RecordFile, Invocation and Job is first seen, done and active, from one list
    and watch each (`watching.follow`, raw JSON); one Event per watch, set once it has listed."""

    def file_seen(file: dict[str, Any]) -> None:
        observed.registered.setdefault(file["metadata"]["name"], time.monotonic())

    def invocation_seen(invocation: dict[str, Any]) -> None:
        name, now = invocation["metadata"]["name"], time.monotonic()
        observed.invocations.setdefault(name, now)
        # A run's Job is named after it (and its RecordFile after the Record and path).
        spec = invocation["spec"]
        observed.file_of_job[name] = naming.file_name(spec["record"], spec["file"])
        if (invocation.get("status") or {}).get("phase") == "Succeeded":
            observed.succeeded.setdefault(name, now)

    def job_seen(job: dict[str, Any], deleted: bool = False) -> None:
        name, now, job_status = job["metadata"]["name"], time.monotonic(), job.get("status") or {}
        observed.jobs.setdefault(name, now)
        if MINIMAL_LABEL in (job["metadata"].get("labels") or {}):  # the minimal operator's Job
            observed.file_of_job[name] = job["metadata"]["labels"][MINIMAL_LABEL]
        if any(c["type"] == "Complete" and c["status"] == "True" for c in job_status.get("conditions") or []):
            observed.jobs_done.setdefault(name, now)
        if int(job_status.get("active") or 0) > 0 and not deleted:
            observed.active.add(name)
        else:
            observed.active.discard(name)
        observed.most_active = max(observed.most_active, len(observed.active))

    invocations = functools.partial(
        kube.custom().list_namespaced_custom_object, "autoscene.io", "v1alpha1", namespace, "invocations"
    )
    jobs = functools.partial(kube.batch().list_namespaced_job, namespace)
    record_files = functools.partial(
        kube.custom().list_namespaced_custom_object, "autoscene.io", "v1alpha1", namespace, "recordfiles"
    )
    followers = [
        (record_files, file_seen, lambda _: None, {}),
        (invocations, invocation_seen, lambda _: None, {}),
        (jobs, job_seen, functools.partial(job_seen, deleted=True), {"label_selector": f"!{labels.ROLE}"}),
    ]
    listed = [threading.Event() for _ in followers]
    for (list_function, seen, gone, selectors), done in zip(followers, listed, strict=True):
        threading.Thread(
            target=watching.follow,
            args=(list_function, seen, gone, stop, lambda _, done=done: done.set()),
            kwargs={"watch_seconds": 5, **selectors},
            daemon=True,
        ).start()
    return listed


def process_cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far, in MB (VmHWM)."""
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    """The process's resident memory now, in MB (VmRSS)."""
    return _status_mb(pid, "VmRSS:")


def _status_mb(pid: int, field: str) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def run_once(
    plane: str, operator: str, files: int, timeout: float, concurrency: int = 0, idle_seconds: float = 20
) -> dict[str, Any]:
    from autoscene.sandbox.realcluster import RealCluster
    from autoscene.sandbox.session import Sandbox

    folder = Path(tempfile.mkdtemp(prefix=f"fanout-{plane}-{operator}-"))
    ours = operator == "autoscene"
    # On the embedded control plane both operators run as processes of their own, as in a cluster (and
    # as the minimal one must): neither shares the API server's interpreter.
    cluster: Any = (
        Sandbox(folder / "cluster", with_operator=False)
        if plane == "embedded"
        else RealCluster(folder / "cluster", with_operator=ours)
    )
    with cluster:
        kube.core().create_namespaced_persistent_volume_claim(cluster.namespace, claim())
        cluster.apply(manifests(concurrency))
        minimal = None
        if not ours:
            command = [sys.executable, str(MINIMAL), cluster.namespace, "busybox:1.36.1", "true"]
        elif plane == "embedded":
            autoscene = Path(sys.executable).with_name("autoscene")
            command = [str(autoscene), "operator", "-n", cluster.namespace, "--no-leader-election"]
        if not ours or plane == "embedded":
            minimal = subprocess.Popen(
                command,
                env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(3)  # its start-up and first listing
        sources = folder / "files"
        sources.mkdir()
        for index in range(files):
            (sources / f"{index:06d}.bin").write_bytes(index.to_bytes(4, "big"))
        spawned = multiprocessing.get_context("spawn")
        stop, ready, finished, results = (
            spawned.Event(),
            spawned.Event(),
            spawned.Value("i", 0),
            spawned.Queue(),
        )
        observer = spawned.Process(
            target=observe,
            args=(str(cluster.kubeconfig), cluster.namespace, ours, stop, ready, finished, results),
            daemon=True,
        )
        observer.start()
        if not ready.wait(60):
            raise RuntimeError("the observer's watches did not start")
        components = (
            cluster.control_plane_processes
            if plane == "embedded"
            else [process for _, process, _ in cluster.plane._processes]
        )
        cpu_before = _cpu(plane, components)
        # From the start of the upload: the files are registered while it runs, and their runs start.
        prepared, go, took = spawned.Event(), spawned.Event(), spawned.Value("d", float("nan"))
        volumes = str(cluster.volumes) if plane == "embedded" else ""
        uploader = spawned.Process(
            target=upload_files,
            args=(str(cluster.kubeconfig), volumes, cluster.namespace, str(sources), prepared, go, took),
        )
        uploader.start()
        if not prepared.wait(60):
            raise RuntimeError("the uploader did not start")
        registered = time.monotonic()
        go.set()
        uploader.join(timeout)
        if uploader.exitcode != 0:
            raise RuntimeError(f"the upload failed (exit code {uploader.exitcode})")
        uploaded = took.value
        deadline = registered + timeout
        while finished.value < files and time.monotonic() < deadline:
            time.sleep(0.2)
        cp_cpu = _cpu(plane, components) - cpu_before
        stop.set()
        observed: Observed = results.get(timeout=60)
        observer.join(timeout=30)
        time.sleep(6)  # the observer's watches end (they are renewed every 5 s)
        idle_before = _cpu(plane, components)
        time.sleep(idle_seconds)
        idle = (_cpu(plane, components) - idle_before) / idle_seconds * 100
        operator_pid = minimal.pid if minimal else (None if plane == "embedded" else _operator_pid(cluster))
        result = {
            "plane": plane,
            "operator": operator,
            "files": files,
            "limit": concurrency,
            "done": len(observed.succeeded if ours else observed.jobs_done),
            "invocations": _span(observed.invocations, files, registered) if ours else float("nan"),
            "jobs": _span(observed.jobs, files, registered),
            "jobs_done": _span(observed.jobs_done, files, registered),
            "succeeded": _span(observed.succeeded, files, registered) if ours else float("nan"),
            "latencies": observed.latencies(),
            "upload": uploaded,
            "most_running": observed.most_active,
            "operator_mb": peak_rss_mb(operator_pid or os.getpid()),
            "cp_cpu": cp_cpu,
            "idle": idle,
            "operator_cpu": process_cpu_seconds(operator_pid) if operator_pid else float("nan"),
        }
        stop.set()
        if minimal is not None:
            minimal.terminate()
            minimal.wait(timeout=30)
        return result


def _cpu(plane: str, components: list[Any]) -> float:
    """CPU seconds of the control plane so far: its processes', and on the embedded one this process's
    (its API server and kubelet), which has its Job controller as `components`."""
    processes = sum(process_cpu_seconds(process.pid) for process in components if process.poll() is None)
    if plane == "embedded":
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime + processes
    return processes


def _operator_pid(cluster: Any) -> int | None:
    for local in cluster.agent.kubelet._pods.values():
        alive = [process for process in local.processes if process.poll() is None]
        if local.name.startswith("autoscene-operator-") and alive:
            return int(alive[-1].pid)
    return None


def _span(seen: dict[str, float], files: int, start: float) -> float:
    return max(seen.values()) - start if len(seen) >= files else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", default="100,1000")
    parser.add_argument("--control-planes", default="embedded,real")
    parser.add_argument("--operators", default="autoscene,minimal")
    parser.add_argument("--concurrency", default="0")
    parser.add_argument("--idle-seconds", type=float, default=20)
    parser.add_argument("--timeout", type=float, default=900)
    options = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    results = []
    for files in (int(part) for part in options.files.split(",")):
        for plane in options.control_planes.split(","):
            for operator in options.operators.split(","):
                # Only autoscene knows `spec.concurrency`; the minimal operator runs unlimited.
                limits = (
                    [int(part) for part in options.concurrency.split(",")] if operator == "autoscene" else [0]
                )
                for limit in limits:
                    print(
                        f"running {files} files on the {plane} control plane with the {operator} operator"
                        + (f", concurrency {limit}" if limit else "")
                        + " ...",
                        flush=True,
                    )
                    results.append(
                        run_once(plane, operator, files, options.timeout, limit, options.idle_seconds)
                    )
    header = (
        f"{'plane':<9} {'operator':<9} {'limit':>5} {'files':>6} {'done':>6} {'upload s':>8} "
        f"{'invoc. s':>9} {'jobs s':>8} "
        f"{'jobs ok s':>9} {'succ. s':>8} {'reg→job p50/p95/p99 s':>22} {'most run':>8} {'op. MB':>7} "
        f"{'idle cp %':>9} {'cp CPU s':>8} {'op. CPU s':>9}"
    )
    print("\n" + header)
    over_limit = False
    for row in results:
        quantiles = "/".join(f"{percentile(row['latencies'], share):.2f}" for share in (0.5, 0.95, 0.99))
        over = bool(row["limit"]) and row["most_running"] > row["limit"]
        over_limit |= over
        print(
            f"{row['plane']:<9} {row['operator']:<9} {row['limit'] or '-':>5} "
            f"{row['files']:>6} {row['done']:>6} {row['upload']:>8.1f} "
            f"{row['invocations']:>9.1f} {row['jobs']:>8.1f} {row['jobs_done']:>9.1f} "
            f"{row['succeeded']:>8.1f} "
            f"{quantiles:>22} {row['most_running']:>8} {row['operator_mb']:>7.0f} "
            f"{row['idle']:>9.1f} {row['cp_cpu']:>8.1f} {row['operator_cpu']:>9.1f}"
            + ("  OVER LIMIT" if over else "")
        )
    by_key = {(row["plane"], row["operator"], row["files"]): row for row in results if not row["limit"]}
    print()
    for plane in options.control_planes.split(","):
        for files in sorted({row["files"] for row in results}):
            ours, minimal = by_key.get((plane, "autoscene", files)), by_key.get((plane, "minimal", files))
            if ours and minimal:
                ratio = ours["jobs_done"] / minimal["jobs_done"]
                print(
                    f"{plane}, {files} files: autoscene / minimal operator, "
                    f"time to all Jobs complete = {ratio:.2f}"
                )
    for files in sorted({row["files"] for row in results}):
        embedded, real = (
            by_key.get(("embedded", "autoscene", files)),
            by_key.get(("real", "autoscene", files)),
        )
        if embedded and real:
            ratio = real["succeeded"] / embedded["succeeded"]
            print(
                f"{files} files: real / embedded control plane, "
                f"time to all Invocations Succeeded = {ratio:.2f}"
            )
    for row in results:
        unlimited = by_key.get((row["plane"], "autoscene", row["files"]))
        if row["limit"] and unlimited:
            print(
                f"{row['plane']}, {row['files']} files: concurrency {row['limit']} took "
                f"{row['succeeded']:.1f} s to all Succeeded, unlimited {unlimited['succeeded']:.1f} s; "
                "most running at once "
                f"{row['most_running']} (limit {row['limit']})"
            )
    print("one run each: these machines vary by ±20 %, so compare the rows of one run, not of two")
    sys.exit(1 if over_limit else 0)


if __name__ == "__main__":
    main()
