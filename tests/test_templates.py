"""Parameters and placeholders: resolution order, errors that name what is wrong, the Job they build."""

from typing import Any

import pytest
import yaml

from autoscene import jobs, templates
from autoscene.paths import SAMPLES
from autoscene.templates import ParameterError

DECLARED = [
    {"name": "mode", "default": "all"},
    {"name": "fps", "default": "1"},
    {"name": "token", "required": True},
    {"name": "note"},
]


def test_the_most_specific_value_wins_then_the_default() -> None:
    resolved = templates.resolve(
        DECLARED, ("the Invocation", {"fps": "5", "token": "t"}), ("the Trigger", {"fps": "2", "mode": "fps"})
    )
    assert resolved == {"mode": "fps", "fps": "5", "token": "t", "note": ""}


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ({}, '"token"'),  # required and unset
        ({"token": "t", "speed": "9"}, '"speed"'),  # not declared by the Action
    ],
)
def test_an_unusable_value_fails_with_its_name(given: dict[str, str], named: str) -> None:
    with pytest.raises(ParameterError, match=named):
        templates.resolve(DECLARED, ("the Invocation", given))


def test_placeholders_are_replaced_and_an_unknown_one_is_named_with_where_it_is() -> None:
    values = templates.context({"mode": "fps"}, "recordings", "day1/cam 0.mp4", "run-1")
    assert templates.expand(
        "{{parameter.mode}}:{{ file.stem }}@{{record.name}}/{{invocation.name}}", values, "x"
    ) == ("fps:cam 0@recordings/run-1")
    assert templates.expand("{{file.path}}", values, "x") == "day1/cam 0.mp4"
    with pytest.raises(ParameterError, match=r"unknown placeholder \{\{parameter.speed\}\} in args\[1\]"):
        templates.expand("{{parameter.speed}}", values, "args[1]")
    assert templates.expand("no placeholders {here}", values, "x") == "no placeholders {here}"


def test_the_sample_actions_parameters_reach_its_container() -> None:
    action: dict[str, Any] = yaml.safe_load((SAMPLES / "action.yaml").read_text())
    invocation = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Invocation",
        "metadata": {"name": "run-1", "namespace": "default", "uid": "u"},
        "spec": {
            "action": "extract-images",
            "record": "recordings",
            "file": "a.mp4",
            "parameters": {"mode": "fps"},
        },
    }
    parameters = templates.resolve(
        action["spec"]["parameters"], ("the Invocation", invocation["spec"]["parameters"])
    )
    values = templates.context(parameters, "recordings", "a.mp4", "run-1")
    job = jobs.build_job(invocation, action, "claim", values=values)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry.get("value") for entry in container["env"]}
    assert (env["EXTRACT_MODE"], env["EXTRACT_FPS"], env["EXTRACT_QUALITY"], env["EXTRACT_FORMAT"]) == (
        "fps",
        "1",
        "95",
        "jpeg",
    )
    assert not any("{{" in str(value) for value in env.values())
