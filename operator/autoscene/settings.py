"""How the operator runs under kopf: storage of its bookkeeping, watch timeouts, concurrency."""

import logging

import kopf


def apply(settings: kopf.OperatorSettings) -> None:
    # Bookkeeping in annotations only: a `status.kopf` field would be pruned by our structural schemas.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="autoscene.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
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
