"""Prometheus metrics of the operator, served on their own port (`autoscene operator --metrics-port`)."""

import threading

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


def serve(port: int) -> None:
    start_http_server(port)


class InFlight:
    """Invocations by phase as last seen, so the queue-depth gauge needs no listing."""

    TRACKED = ("Pending", "Running")

    def __init__(self) -> None:
        self._phases: dict[str, str] = {}
        self._lock = threading.Lock()  # handlers run on several threads

    def observe(self, uid: str, phase: str | None) -> None:
        with self._lock:
            self._phases[uid] = phase or "Pending"
            self._publish()

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phases.pop(uid, None)
            self._publish()

    def clear(self) -> None:
        """Forget everything seen: a (re)started operator learns the Invocations anew from its watch."""
        with self._lock:
            self._phases.clear()
            self._publish()

    def _publish(self) -> None:
        for phase in self.TRACKED:
            queue_depth.labels(phase).set(sum(1 for seen in self._phases.values() if seen == phase))


in_flight = InFlight()
