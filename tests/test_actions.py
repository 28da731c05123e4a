"""An Action's Ready condition, from its spec alone (pure)."""

from typing import Any

import pytest
import yaml

from autoscene import actions
from autoscene.paths import SAMPLES


def sample(**resources: Any) -> dict[str, Any]:
    action = yaml.safe_load((SAMPLES / "action.yaml").read_text())
    action["metadata"]["namespace"] = "default"
    if resources:
        action["spec"]["resources"] = resources
    return dict(action)


def test_the_sample_action_is_ready() -> None:
    assert actions.readiness_of(sample())[:2] == ("True", "Valid")


@pytest.mark.parametrize(
    ("resources", "reason", "said"),
    [
        # The API server refuses a container whose request is above its limit (Kubernetes docs,
        # "Resource Management for Pods and Containers").
        ({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}, "RequestAboveLimit", "requests.cpu (2)"),
        (
            {"requests": {"memory": "2Gi"}, "limits": {"memory": "1Gi"}},
            "RequestAboveLimit",
            "limits.memory (1Gi)",
        ),
        ({"requests": {"cpu": "2x"}, "limits": {"cpu": "1"}}, "InvalidQuantity", "2x"),
    ],
)
def test_settings_a_cluster_would_refuse_make_it_not_ready(
    resources: dict[str, Any], reason: str, said: str
) -> None:
    state, found, message = actions.readiness_of(sample(**resources))
    assert (state, found) == ("False", reason) and said in message


def test_equal_request_and_limit_are_fine() -> None:
    assert actions.readiness_of(sample(requests={"cpu": "1"}, limits={"cpu": "1000m"}))[0] == "True"
