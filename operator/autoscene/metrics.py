"""Prometheus metrics of the operator, served on their own port (`autoscene operator --metrics-port`).

Every replica serves them; only the one holding the Lease acts, so only its counters move. The
monitoring kit (`manifests/components/monitoring`) alerts and draws its dashboard from these names.
"""

import threading
import time

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
DISPATCH_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)

invocations_created = Counter(
    "autoscene_invocations_created", "Invocations whose Job the operator created, per Action.", ["action"]
)
invocations_finished = Counter(
    "autoscene_invocations_finished", "Invocations that ended, per Action and phase.", ["action", "phase"]
)
run_duration = Histogram(
    "autoscene_invocation_duration_seconds",
    "From Job start to its end, per Action.",
    ["action"],
    buckets=RUN_BUCKETS,
)
dispatch_latency = Histogram(
    "autoscene_dispatch_latency_seconds",
    "From a file's registration in a Record to its Job's creation.",
    buckets=DISPATCH_BUCKETS,
)
queue_depth = Gauge("autoscene_invocations_in_flight", "Invocations not finished yet, per phase.", ["phase"])
handler_errors = Counter("autoscene_handler_errors", "Handler calls that raised, per handler.", ["handler"])
leader = Gauge("autoscene_leader", "1 while this replica acts (holds the Lease), 0 while it stands by.")
watch_events = Counter(
    "autoscene_watch_events", "Watch events the operator's handlers received, per resource.", ["resource"]
)
watch_last_event = Gauge(
    "autoscene_watch_last_event_timestamp_seconds",
    "Unix time of the last watch event received, per resource.",
    ["resource"],
)
reconcile_passes = Counter(
    "autoscene_reconcile_passes", "Periodic reconciliation passes, per result (ok, error).", ["result"]
)
reconcile_last_success = Gauge(
    "autoscene_reconcile_last_success_timestamp_seconds",
    "Unix time at which the last periodic reconciliation pass completed without error.",
)
reconcile_repairs = Counter(
    "autoscene_reconcile_repairs",
    "Changes the periodic pass made that a watch event should have made, per kind "
    "(file: a file dispatched late; invocation: a run synced with its Job late).",
    ["kind"],
)


def serve(port: int) -> None:
    start_http_server(port)


def set_leading(leading: bool) -> None:
    """Whether this replica acts now: set on taking the Lease, cleared on losing or releasing it.

    A replica that stands by sees no Invocations, so its in-flight gauge drops to zero: summed over
    the replicas, the gauges count each run once."""
    leader.set(1 if leading else 0)
    if not leading:
        in_flight.clear()


def watch_event(resource: str) -> None:
    """A watch event arrived for `resource` (a plural: "invocations", "jobs", "recordfiles", ...).

    Called first thing in each event handler; the alerts take a leader whose events stop while the
    periodic pass keeps repairing for a stalled watch."""
    watch_events.labels(resource).inc()
    watch_last_event.labels(resource).set(time.time())


def reconciled(ok: bool) -> None:
    """One periodic reconciliation pass ended, without error (`ok`) or with one."""
    reconcile_passes.labels("ok" if ok else "error").inc()
    if ok:
        reconcile_last_success.set_to_current_time()


def repaired(kind: str, count: int = 1) -> None:
    """The periodic pass did `count` things of `kind` ("file", "invocation") a watch event should have
    done: a missed dispatch or a finished Job whose run was not synced."""
    if count:
        reconcile_repairs.labels(kind).inc(count)


class InFlight:
    """Invocations by phase as last seen, so the queue-depth gauge needs no listing. Counted as
    they change: a burst of 5,000 runs sees some 20,000 events, and counting all runs at each was
    most of the operator's time at that size."""

    TRACKED = ("Pending", "Queued", "Running")

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}  # the runs in a tracked phase only: finished ones are let go
        self._counts = dict.fromkeys(self.TRACKED, 0)
        self._lock = threading.Lock()  # handlers run on several threads

    def observe(self, uid: str, phase: str | None) -> None:
        with self._lock:
            self._move(uid, phase or "Pending")

    def forget(self, uid: str) -> None:
        with self._lock:
            self._move(uid, None)

    def clear(self) -> None:
        """Forget everything seen: a (re)started operator learns the Invocations anew from its watch."""
        with self._lock:
            self._phases.clear()
            self._counts = dict.fromkeys(self.TRACKED, 0)
            for phase in self.TRACKED:
                queue_depth.labels(phase).set(0)

    def _move(self, uid: str, phase: str | None) -> None:
        before = self._phases.pop(uid, None)
        if phase in self._counts:
            self._phases[uid] = phase
        if before == phase:
            return
        for changed, step in ((before, -1), (phase, 1)):
            if changed in self._counts:
                self._counts[changed] += step
                queue_depth.labels(changed).set(self._counts[changed])


in_flight = InFlight()
# Zero from the start, so the dashboard and the alerts see a series before the first run.
set_leading(False)
