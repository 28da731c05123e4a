"""What kube-apiserver sets on a built-in object when it is created, where clients can tell.

Jobs (Kubernetes docs, "Jobs": "Specifying your own Pod selector"; the Job registry strategy): unless
`manualSelector` is true, the server generates `spec.selector` matching the Job's uid and labels the Pod
template with it and with the Job's name, so that `kubectl logs job/<name>` finds that Job's Pods and
no other's; and it fills in the spec's defaults (one Pod, six retries, non-indexed, not suspended).
"""

from typing import Any

CONTROLLER_UID_LABELS = ("batch.kubernetes.io/controller-uid", "controller-uid")
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")
JOB_SPEC_DEFAULTS = {
    "parallelism": 1,
    "completions": 1,
    "backoffLimit": 6,
    "completionMode": "NonIndexed",
    "suspend": False,
    "manualSelector": False,
    "podReplacementPolicy": "TerminatingOrFailed",
}


def default_job(job: dict[str, Any]) -> None:
    """Generate the selector and template labels of a new Job (its uid set), and its defaults."""
    metadata, spec = job["metadata"], job.setdefault("spec", {})
    for field, value in JOB_SPEC_DEFAULTS.items():
        spec.setdefault(field, value)
    if spec["manualSelector"]:
        return
    template_metadata = spec.setdefault("template", {}).setdefault("metadata", {})
    labels = template_metadata.setdefault("labels", {})
    for key in CONTROLLER_UID_LABELS:
        labels[key] = metadata["uid"]
    for key in JOB_NAME_LABELS:
        labels[key] = metadata["name"]
    spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABELS[0]: metadata["uid"]}}
