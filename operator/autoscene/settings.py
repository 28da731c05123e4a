"""How the operator runs under kopf: storage of its bookkeeping, watch timeouts, concurrency."""

import logging
from collections.abc import Iterable

import kopf


def apply(settings: kopf.OperatorSettings) -> None:
    # Bookkeeping in annotations only: a `status.kopf` field would be pruned by our structural schemas.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autoscene.io")
    settings.persistence.diffbase_storage = RecordsDiffBase(
        prefix="autoscene.io", key="last-handled-configuration"
    )
    settings.persistence.finalizer = "autoscene.io/finalizer"
    # Handler log lines stay in the operator's log; users get the Events we post on purpose.
    settings.posting.level = logging.WARNING
    # A watch that silently stops delivering is ended by the server, and by us if the server does not.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.execution.max_workers = 8
    if not any(isinstance(found, RoutineSuccesses) for found in _KOPF_OBJECTS.filters):
        _KOPF_OBJECTS.addFilter(RoutineSuccesses())


_KOPF_OBJECTS = logging.getLogger("kopf.objects")


class RecordsDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf's diff base, built for Records only.

    kopf builds one (a deep copy of the whole body) on every watch event of every resource, before it
    looks whether any handler compares it; only the Records' handlers do (on.create, on.resume). For
    Invocations and Jobs, several events a run, the copy took about 6 % of the operator's CPU in a burst."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") != "Record":
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


class RoutineSuccesses(logging.Filter):
    """Drops kopf's "Handler '...' succeeded." lines unless the operator logs at DEBUG (`--verbose`).

    kopf logs one at INFO for every handled watch event, about eight per run: at thousands of runs
    they are nearly the whole log, and writing them a share of the operator's CPU. Failures, retries
    and everything else kopf says stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        message = record.getMessage()
        return not (message.startswith("Handler '") and message.endswith("' succeeded."))
