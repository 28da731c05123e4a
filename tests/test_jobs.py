from typing import Any

from autoscene.jobs import build_job

INVOCATION = {
    "apiVersion": "autoscene.io/v1alpha1",
    "kind": "Invocation",
    "metadata": {"name": "auto-clip-0123456789", "namespace": "lab", "uid": "uid-1"},
    "spec": {"action": "extract-images", "record": "recordings", "file": "cam/clip.mp4", "trigger": "auto"},
}


def action(**spec: Any) -> dict[str, Any]:
    return {
        "spec": {
            "image": "autoscene/frame-extractor:0.1.0",
            "command": ["python", "/app/extract_frames.py"],
            **spec,
        }
    }


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    [container] = job["spec"]["template"]["spec"]["containers"]
    return container


def test_job_runs_the_action_on_the_record_volume() -> None:
    job = build_job(
        INVOCATION,
        action(args=["--every", "2"], resources={"limits": {"memory": "1Gi", "cpu": 2}}),
        "rec-claim",
    )
    assert job["metadata"]["name"] == "auto-clip-0123456789"
    assert job["metadata"]["namespace"] == "lab"
    [owner] = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Invocation",
        "name": "auto-clip-0123456789",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    container = container_of(job)
    assert container["image"] == "autoscene/frame-extractor:0.1.0"
    assert container["command"] == ["python", "/app/extract_frames.py"]
    assert container["args"] == ["--every", "2"]
    assert container["resources"] == {"limits": {"memory": "1Gi", "cpu": "2"}}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/cos/files"] == {
        "name": "record",
        "mountPath": "/cos/files",
        "subPath": "files",
        "readOnly": True,
    }
    assert mounts["/cos/outputs"]["subPath"] == "outputs/auto-clip-0123456789"
    assert not mounts["/cos/outputs"].get("readOnly")
    pod = job["spec"]["template"]["spec"]
    assert {"name": "record", "persistentVolumeClaim": {"claimName": "rec-claim"}} in pod["volumes"]
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_contract_environment_wins_over_the_actions() -> None:
    env = container_of(
        build_job(
            INVOCATION,
            action(
                env=[{"name": "AUTOSCENE_FILE", "value": "evil"}, {"name": "EXTRACT_QUALITY", "value": "90"}]
            ),
            "c",
        )
    )["env"]
    values = {entry["name"]: entry["value"] for entry in env}
    assert values["AUTOSCENE_FILE"] == "cam/clip.mp4"
    assert values["INPUT_FOLDER"] == "/cos/files" and values["OUTPUT_FOLDER"] == "/cos/outputs"
    assert values["EXTRACT_QUALITY"] == "90"
    assert [entry["name"] for entry in env].count("AUTOSCENE_FILE") == 1


def test_timeout_and_retries_map_to_the_job_limits() -> None:
    spec = build_job(INVOCATION, action(timeoutSeconds=600, retries=2), "c")["spec"]
    assert spec["activeDeadlineSeconds"] == 600 and spec["backoffLimit"] == 2
    spec = build_job(INVOCATION, action(), "c")["spec"]
    assert "activeDeadlineSeconds" not in spec and spec["backoffLimit"] == 0


def test_pods_run_restricted_without_a_token() -> None:
    pod = build_job(INVOCATION, action(), "c")["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in pod["containers"] + pod["initContainers"]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    [prepare] = pod["initContainers"]
    assert prepare["command"][-1] == "/volume/outputs/auto-clip-0123456789"
