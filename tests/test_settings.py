import kopf

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
