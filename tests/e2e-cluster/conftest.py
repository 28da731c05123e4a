"""Fixtures of the cluster end-to-end tests: a fresh namespace with the samples on a real cluster.

The cluster is the one AUTOSCENE_E2E_KUBECONFIG names; without it, the real control plane this
repository builds (`real_cluster` in tests/conftest.py), which skips with its reason when it cannot run
(and fails instead under AUTOSCENE_REQUIRE_CONTROL_PLANE=1).
"""

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# This folder is no package (its name has a hyphen): make its helper module importable under any
# import mode.
HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from e2e_cluster import (  # noqa: E402
    ACTION,
    ENV_KUBECONFIG,
    SKIP_REASON,
    Cluster,
    Settings,
    choose_extractor_image,
    namespace_name,
    operator_problem,
    sample_documents,
)

from autoscene import GROUP, VERSION, kube  # noqa: E402


@pytest.fixture(scope="session")
def e2e_settings(request: pytest.FixtureRequest) -> Settings:
    environ = dict(os.environ)
    if not environ.get(ENV_KUBECONFIG, "").strip():
        real = request.getfixturevalue("real_cluster")  # skips, saying why, when it cannot run
        environ[ENV_KUBECONFIG] = str(real.kubeconfig)
    try:
        settings = Settings.from_environ(environ)
    except ValueError as error:
        pytest.fail(str(error), pytrace=False)
    if settings is None:
        pytest.skip(SKIP_REASON)
    if not Path(settings.kubeconfig).is_file():
        pytest.fail(f"{ENV_KUBECONFIG}={settings.kubeconfig}: no such file", pytrace=False)
    return settings


@pytest.fixture(scope="session")
def cluster(e2e_settings: Settings, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """The test namespace, created for the session and deleted after it (unless asked to keep it)."""
    previous = kube._api_client  # the sandbox tests of the same session configure their own
    kube.configure(e2e_settings.kubeconfig)
    try:
        problem = operator_problem()
        if problem:
            pytest.fail(problem, pytrace=False)
        namespace = namespace_name()
        (action,) = [document for document in sample_documents() if document["kind"] == "Action"]
        deployed = kube.custom().list_cluster_custom_object(GROUP, VERSION, "actions")["items"]
        image, _ = choose_extractor_image(
            e2e_settings.extractor_image, action["spec"]["image"], deployed, namespace
        )
        running = Cluster(e2e_settings, namespace, image)
        running.create_namespace()
        try:
            running.apply_samples()
            yield running
        finally:
            if e2e_settings.keep_namespace:
                capture = request.config.pluginmanager.get_plugin("capturemanager")
                kept = f"\nkept namespace {namespace} (Action {ACTION} runs {image})"
                if capture is None:
                    print(kept)
                else:
                    with capture.global_and_fixture_disabled():
                        print(kept)
            else:
                # Tests that ran since may have pointed the client at a sandbox of their own.
                kube.configure(e2e_settings.kubeconfig)
                running.delete_namespace()
    finally:
        kube._api_client = previous
