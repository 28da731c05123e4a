"""Image references by distribution's grammar (github.com/distribution/reference), as the kubelet parses
them before a pull; one it cannot parse makes a container wait with reason InvalidImageName."""

import pytest

from autoscene.actions import readiness_of
from autoscene.imagerefs import kubelet_refusal, reference_problem

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    "image",
    [
        "busybox",
        "busybox:1.36.1",
        "library/busybox:latest",
        "autoscene/frame-extractor:0.1.0",
        "registry.example.com:5000/team/tool:v2",
        "Registry.Example.com/team/tool",  # a domain may have capitals
        "localhost/tool",
        f"ghcr.io/team/tool@{DIGEST}",
        f"ghcr.io/team/tool:v1@{DIGEST}",
        "[::1]:5000/tool:V_2.x",
        "a__b/c-d/e.f:TAG",
    ],
)
def test_valid_references(image: str) -> None:
    assert reference_problem(image) is None


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("Not A Valid Image!!", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("tool:", "invalid reference format"),
        (":v1", "invalid reference format"),
        ("-tool", "invalid reference format"),
        ("tool:-v1", "invalid reference format"),
        ("tool@sha256:abc", "invalid reference format"),
        ("Busybox", "invalid reference format: repository name must be lowercase"),
        ("example.com/Team/tool:v1", "invalid reference format: repository name must be lowercase"),
        ("a/" + "b" * 254, "repository name must not be more than 255 characters"),
    ],
)
def test_invalid_references_say_why_in_the_kubelets_words(image: str, problem: str) -> None:
    assert reference_problem(image) == problem


def test_the_kubelets_message() -> None:
    assert kubelet_refusal("Not A Valid Image!!", "invalid reference format") == (
        'Failed to apply default image tag "Not A Valid Image!!": couldn\'t parse image name '
        '"Not A Valid Image!!": invalid reference format'
    )


def test_an_action_whose_image_is_no_reference_is_not_ready() -> None:
    action = {"metadata": {"name": "a"}, "spec": {"image": "Not A Valid Image!!", "command": ["true"]}}
    status, reason, message = readiness_of(action)
    assert (status, reason) == ("False", "InvalidImageName")
    assert message.startswith('image "Not A Valid Image!!" is no image reference (invalid reference format)')
