import logging

import kopf
import pytest

from autoscene import settings


def test_watches_are_bounded_so_a_silently_dead_stream_is_noticed() -> None:
    configured = kopf.OperatorSettings()
    settings.apply(configured)
    # The server ends each watch, and the client gives up a little later if the server does not.
    assert configured.watching.server_timeout is not None and configured.watching.server_timeout > 0
    assert configured.watching.client_timeout is not None
    assert configured.watching.client_timeout > configured.watching.server_timeout
    assert configured.watching.connect_timeout is not None


def test_bookkeeping_lives_in_annotations_not_in_status() -> None:
    configured = kopf.OperatorSettings()
    settings.apply(configured)
    assert isinstance(configured.persistence.progress_storage, kopf.AnnotationsProgressStorage)
    assert isinstance(configured.persistence.diffbase_storage, kopf.AnnotationsDiffBaseStorage)


def test_routine_handler_successes_stay_out_of_the_log_unless_verbose(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.apply(kopf.OperatorSettings())
    settings.apply(kopf.OperatorSettings())  # applied again (a restart in-process): one filter still
    objects = logging.getLogger("kopf.objects")
    assert sum(isinstance(found, settings.RoutineSuccesses) for found in objects.filters) == 1
    root = logging.getLogger()
    previous = root.level
    try:
        root.setLevel(logging.INFO)
        with caplog.at_level(logging.INFO):
            objects.info("Handler 'job_changed' succeeded.")
            objects.info("Handler 'job_changed' failed temporarily: the API said 503")
            objects.warning("Handler 'job_changed' succeeded.")
        assert [record.getMessage() for record in caplog.records] == [
            "Handler 'job_changed' failed temporarily: the API said 503",
            "Handler 'job_changed' succeeded.",
        ]
        caplog.clear()
        root.setLevel(logging.DEBUG)
        objects.info("Handler 'job_changed' succeeded.")
        assert [record.getMessage() for record in caplog.records] == ["Handler 'job_changed' succeeded."]
    finally:
        root.setLevel(previous)


def test_only_records_get_a_diff_base_since_only_their_handlers_compare_one() -> None:
    configured = kopf.OperatorSettings()
    settings.apply(configured)
    storage = configured.persistence.diffbase_storage
    record = kopf.Body({"apiVersion": "autoscene.io/v1alpha1", "kind": "Record", "metadata": {"name": "r"},
                        "spec": {"size": "1Gi"}, "status": {"phase": "Ready"}})  # fmt: skip
    invocation = kopf.Body({"apiVersion": "autoscene.io/v1alpha1", "kind": "Invocation",
                            "metadata": {"name": "i"}, "spec": {"action": "a"}})  # fmt: skip
    assert storage.build(body=record) == {"spec": {"size": "1Gi"}}
    assert storage.build(body=invocation) == {}
