"""The Job that runs an Invocation: the Action's container with the Record's volume mounted."""

from collections.abc import Mapping
from typing import Any

from . import labels, naming, ownership, templates

INPUT_FOLDER = "/cos/files"
OUTPUT_FOLDER = "/cos/outputs"
TERMINATION_LOG = "/dev/termination-log"
# Folders inside a Record's volume: uploaded files, and one output folder per Invocation.
FILES_SUBPATH = "files"
OUTPUTS_SUBPATH = "outputs"
ACTION_CONTAINER = "action"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
# Creates the Invocation's output folder as the run's own user before the action starts: the kubelet
# would create a missing subPath owned by root, which a non-root action could not write to.
PREPARE_IMAGE = "busybox:1.36.1"
RUN_AS_USER = 10001


def output_subpath(invocation: str) -> str:
    return f"{OUTPUTS_SUBPATH}/{invocation}"


def build_job(
    invocation: Mapping[str, Any],
    action: Mapping[str, Any],
    claim: str,
    ttl_seconds: int | None = None,
    values: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Job body for `invocation`, owned by it, running `action` on the Record volume `claim`.

    With `ttl_seconds`, the Job and its Pods are deleted that long after it finished (the TTL controller
    does it); the Invocation's status keeps what a user needs after that. `values` fill the
    placeholders of the Action's command, args and env values (`templates.context`); without them
    the Action's text is used as it is. `templates.ParameterError` for an unknown placeholder.
    """
    meta, spec = invocation["metadata"], invocation["spec"]
    name = naming.job_name(meta["name"])
    job_labels = {
        **labels.for_invocation(action=spec["action"], record=spec["record"], trigger=spec.get("trigger")),
        labels.INVOCATION: meta["name"],
    }
    action_spec = action["spec"]
    job_spec: dict[str, Any] = {
        "backoffLimit": int(action_spec.get("retries", 0)),
        "podFailurePolicy": pod_failure_policy(action_spec),
        "template": {
            "metadata": {"labels": job_labels},
            "spec": _pod_spec(meta["name"], spec["file"], _expanded(action_spec, values), claim),
        },
    }
    if ttl_seconds is not None:
        job_spec["ttlSecondsAfterFinished"] = ttl_seconds
    if action_spec.get("queueName"):
        # Kueue admits a Job by unsuspending it (kueue.sigs.k8s.io: "Run a Kubernetes Job").
        job_spec["suspend"] = True
    if action_spec.get("timeoutSeconds"):
        job_spec["activeDeadlineSeconds"] = int(action_spec["timeoutSeconds"])
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": {**job_labels, **_queue_label(action_spec)},
            "ownerReferences": ownership.owned_by(invocation),
        },
        "spec": job_spec,
    }


def _pod_spec(invocation: str, file: str, action_spec: Mapping[str, Any], claim: str) -> dict[str, Any]:
    contract_env = [
        {"name": "INPUT_FOLDER", "value": INPUT_FOLDER},
        {"name": "OUTPUT_FOLDER", "value": OUTPUT_FOLDER},
        {"name": "AUTOSCENE_FILE", "value": file},
        {"name": "AUTOSCENE_INVOCATION", "value": invocation},
        {"name": "AUTOSCENE_TERMINATION_LOG", "value": TERMINATION_LOG},
    ]
    contract_names = {entry["name"] for entry in contract_env}
    # The Action's own variables first; the contract ones cannot be overridden by an Action.
    action_env = [
        dict(entry) for entry in action_spec.get("env") or [] if entry["name"] not in contract_names
    ]
    container: dict[str, Any] = {
        "name": ACTION_CONTAINER,
        "image": action_spec["image"],
        "env": action_env + contract_env,
        "volumeMounts": [
            {"name": "record", "mountPath": INPUT_FOLDER, "subPath": FILES_SUBPATH, "readOnly": True},
            {"name": "record", "mountPath": OUTPUT_FOLDER, "subPath": output_subpath(invocation)},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container_context(),
    }
    for key in ("command", "args"):
        if action_spec.get(key):
            container[key] = list(action_spec[key])
    if action_spec.get("resources"):
        container["resources"] = quantities_as_strings(action_spec["resources"])
    if action_spec.get("envFrom"):
        container["envFrom"] = [dict(entry) for entry in action_spec["envFrom"]]
    return {
        "restartPolicy": "Never",
        # No API credentials unless the Action asks for them.
        "automountServiceAccountToken": bool(action_spec.get("serviceAccountToken", False)),
        **_placement(action_spec),
        "enableServiceLinks": False,
        "securityContext": restricted_pod_context(),
        "initContainers": [
            {
                "name": "prepare-outputs",
                "image": PREPARE_IMAGE,
                "command": [
                    "mkdir",
                    "-p",
                    f"/volume/{FILES_SUBPATH}",
                    f"/volume/{output_subpath(invocation)}",
                ],
                "volumeMounts": [{"name": "record", "mountPath": "/volume"}],
                "securityContext": restricted_container_context(),
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "16Mi"}},
            }
        ],
        "containers": [container],
        "volumes": [
            {"name": "record", "persistentVolumeClaim": {"claimName": claim}},
            {"name": "tmp", "emptyDir": {}},
        ],
    }


def _expanded(action_spec: Mapping[str, Any], values: Mapping[str, str] | None) -> Mapping[str, Any]:
    """The Action's spec with its placeholders filled in command, args and env values."""
    if values is None:
        return action_spec
    expanded = dict(action_spec)
    for key in ("command", "args"):
        if action_spec.get(key):
            expanded[key] = [
                templates.expand(str(item), values, f"{key}[{index}]")
                for index, item in enumerate(action_spec[key])
            ]
    expanded["env"] = [
        {**entry, "value": templates.expand(str(entry["value"]), values, f"env {entry['name']}")}
        if "value" in entry
        else dict(entry)
        for entry in action_spec.get("env") or []
    ]
    return expanded


def _placement(action_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Where the run's Pod may land and as whom: nodeSelector, tolerations, serviceAccountName."""
    placed: dict[str, Any] = {}
    if action_spec.get("nodeSelector"):
        placed["nodeSelector"] = dict(action_spec["nodeSelector"])
    if action_spec.get("tolerations"):
        placed["tolerations"] = [dict(toleration) for toleration in action_spec["tolerations"]]
    if action_spec.get("serviceAccountName"):
        placed["serviceAccountName"] = action_spec["serviceAccountName"]
    return placed


def _queue_label(action_spec: Mapping[str, Any]) -> dict[str, str]:
    return {KUEUE_QUEUE_LABEL: action_spec["queueName"]} if action_spec.get("queueName") else {}


def pod_failure_policy(action_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Which failed Pods count against `retries`, as the Job controller reads it (Kubernetes docs,
    "Handling retriable and non-retriable pod failures with Pod failure policy"), rules in order:

    1. an exit code listed in the Action's `retryExitCodes`: counted, so retried up to `retries`;
    2. any other non-zero exit of the action's container: the run fails at once (reason
       PodFailurePolicy): running the same action on the same input again gives the same answer;
    3. a Pod disrupted (evicted, preempted: condition DisruptionTarget): replaced, not counted.
    Other failures (an init container's, a Pod deleted) count as usual.
    """
    rules: list[dict[str, Any]] = []
    retried = sorted(set(action_spec.get("retryExitCodes") or []))
    if retried:
        rules.append(
            {
                "action": "Count",
                "onExitCodes": {"containerName": ACTION_CONTAINER, "operator": "In", "values": retried},
            }
        )
    rules.append(
        {
            "action": "FailJob",
            "onExitCodes": {"containerName": ACTION_CONTAINER, "operator": "NotIn", "values": [0]},
        }
    )
    rules.append({"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]})
    return {"rules": rules}


def quantities_as_strings(resources: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """`cpu: 2` and `cpu: "2"` are the same quantity; clients want the string form."""
    return {
        kind: {name: str(value) for name, value in (amounts or {}).items()}
        for kind, amounts in resources.items()
    }


def helper_pod_spec(
    name: str,
    command: list[str],
    env: Mapping[str, str],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    memory_limit: str,
) -> dict[str, Any]:
    """The Pod spec of a short helper of the operator's (publishing outputs, keeping logs): one busybox
    container running `command`, "restricted", with no API credentials."""
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_context(),
        "containers": [
            {
                "name": name,
                "image": PREPARE_IMAGE,
                "command": command,
                "env": [{"name": key, "value": value} for key, value in env.items()],
                "volumeMounts": mounts,
                "securityContext": restricted_container_context(),
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"memory": memory_limit},
                },
            }
        ],
        "volumes": volumes,
    }


def restricted_pod_context() -> dict[str, Any]:
    """The Pod-level part of Pod Security "restricted", for every Pod autoscene makes: all run as one
    user and group, so that the Record's volume is theirs alike (runs, uploads, publishing, logs)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS_USER,
        "runAsGroup": RUN_AS_USER,
        "fsGroup": RUN_AS_USER,
        # Only the volume's root is checked: a recursive chown of every earlier output would slow
        # each run's start as the Record grows.
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def restricted_container_context() -> dict[str, Any]:
    """What the Pod Security "restricted" profile asks of every container."""
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
