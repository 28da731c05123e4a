"""The operator process: metrics, leader election, then kopf with the handlers of `handlers.py`."""

import contextlib
import http.server
import logging
import os
import socket
import threading
from collections.abc import Iterator
from urllib.parse import urlsplit

import kopf

from . import config, kube, metrics
from .leader import LeaderElector

logger = logging.getLogger(__name__)


def identity() -> str:
    """This replica's name in the Lease: the Pod's name in a cluster."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


def run_operator(settings: config.OperatorConfig) -> int:
    """Run until stopped (exit status 0). A replica that loses the lead stops acting, stands by and
    campaigns again, without a restart from outside."""
    from . import handlers  # noqa: F401  (registers the handlers with kopf)

    config.install(settings)
    leadership, liveness = settings.leadership, settings.liveness
    api = kube.configure()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    while True:
        stop, lost = threading.Event(), threading.Event()
        elector = None
        if leadership is not None:
            elector = LeaderElector(
                api,
                leadership.namespace,
                leadership.name,
                identity(),
                leadership.lease_seconds,
                leadership.renew_seconds,
            )
            with standby_health(liveness):
                if not elector.wait_until_leading(stop):
                    return 0
            threading.Thread(
                target=_keep_leading, args=(elector, stop, lost), daemon=True, name="lease"
            ).start()
        metrics.set_leading(True)
        try:
            kopf.run(
                clusterwide=not settings.namespaces,
                namespaces=list(settings.namespaces),
                liveness_endpoint=liveness,
                # The Lease makes this the only active replica; kopf's own peering is not needed.
                standalone=True,
                stop_flag=stop,
                # kopf waits for `stop` on a thread of its executor, which it then waits for as it
                # exits: stopped by a signal (SIGTERM from a Pod's deletion), it would hang there.
                # Its cleanup handler sets `stop` (handlers.stop_reconciling), so the process exits.
                memo=kopf.Memo(stop=stop),
            )
        finally:
            metrics.set_leading(False)
            stop.set()
            if elector is not None and not lost.is_set():
                elector.release()
        if not lost.is_set():
            return 0
        logger.warning("stopped acting after losing the lead; standing by to campaign again")


def _keep_leading(elector: LeaderElector, stop: threading.Event, lost: threading.Event) -> None:
    elector.keep_leading(stop)
    if not stop.is_set():
        metrics.set_leading(False)  # at once: kopf may take a moment to stop
        lost.set()
        stop.set()


@contextlib.contextmanager
def standby_health(liveness: str | None) -> Iterator[None]:
    """While a replica waits for the lead it is healthy: answer the liveness probe until kopf does."""
    if not liveness:
        yield
        return
    address = urlsplit(liveness)
    server = http.server.ThreadingHTTPServer((address.hostname or "0.0.0.0", address.port or 80), _Healthy)
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="standby-health")
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        body = b"standing by for the lead\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        logger.debug(format, *args)
