"""The least a kopf operator can do for the fan-out: one Job per RecordFile, two writes.

The yardstick of bench/fanout.py: for each RecordFile it creates a Job running the Action's image and
command, notes the Job on the RecordFile, and notes the Job's end there too (annotations: the
RecordFile's status schema has no room for them). No Triggers,
globs, Invocations, queue or retries: what remains is the cost of kopf and the API per object.

Usage: KUBECONFIG=... python bench/minimal_operator.py NAMESPACE IMAGE COMMAND...
"""

import asyncio
import sys
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

NAMESPACE, IMAGE, COMMAND = sys.argv[1], sys.argv[2], sys.argv[3:]
LABEL = "bench.autoscene.io/file"


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    config.load_kube_config()
    settings.posting.enabled = False


@kopf.on.create("autoscene.io", "v1alpha1", "recordfiles")
async def file_created(name: str, body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
    job_name = f"min-{name}"[:52]
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name, "labels": {LABEL: name[:63]}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": IMAGE,
                            "command": COMMAND,
                            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                        }
                    ],
                }
            },
        },
    }
    kopf.adopt(job, owner=body)
    try:
        await asyncio.to_thread(client.BatchV1Api().create_namespaced_job, NAMESPACE, job)
    except ApiException as error:
        if error.status != 409:
            raise
    patch.metadata.annotations["bench.autoscene.io/job"] = job_name


@kopf.on.event("batch", "v1", "jobs", labels={LABEL: kopf.PRESENT})
async def job_changed(body: kopf.Body, **_: Any) -> None:
    conditions = (body.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Complete" and c.get("status") == "True" for c in conditions):
        owner = dict(body.metadata.labels)[LABEL]
        done = {"metadata": {"annotations": {"bench.autoscene.io/job-done": "true"}}}
        api = client.CustomObjectsApi()
        try:
            await asyncio.to_thread(
                api.patch_namespaced_custom_object,
                "autoscene.io", "v1alpha1", NAMESPACE, "recordfiles", owner, done,
            )  # fmt: skip
        except ApiException:
            pass


if __name__ == "__main__":
    kopf.run(namespaces=[NAMESPACE], standalone=True)
