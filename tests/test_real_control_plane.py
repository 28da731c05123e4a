"""What only the real control plane can show: the authorizer, admission, the kubelet API, scheduling.

Runs on the session's real cluster (tests/conftest.py `real_cluster`): Kubernetes' own API server and
controller manager, the node agent, autoscene deployed from manifests/.
"""

import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from autoscene import kube
from autoscene.sandbox.realcluster import OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE, RealCluster
from autoscene.sandbox.session import wait_for

OPERATOR_ACCOUNT = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_DEPLOYMENT}"


@pytest.fixture
def namespace(real_cluster: RealCluster) -> Iterator[str]:
    kube.configure(str(real_cluster.kubeconfig))
    name = f"real-{secrets.token_hex(3)}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    real_cluster.kubectl_apply(
        [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}]
    )
    yield name
    real_cluster.kubectl("delete", "namespace", name, "--wait=false")


def kubectl(cluster: RealCluster, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
    return cluster.plane.kubectl(*args, input=input)


def restricted_pod(name: str, *command: str, cpu: str = "10m") -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": "busybox:1.36.1",
                    "command": list(command),
                    "resources": {"requests": {"cpu": cpu, "memory": "16Mi"}},
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def pod_story(cluster: RealCluster, namespace: str, name: str) -> str:
    """What a failed wait needs to say: the Pod's phase, conditions and containers, the namespace's
    Events, and every Pod of the node that is not finished (what the scheduler counts)."""
    pod = json.loads(kubectl(cluster, "get", "pod", "-n", namespace, name, "-o", "json").stdout or "{}")
    events = kubectl(cluster, "get", "events", "-n", namespace, "-o", "wide").stdout
    others = kubectl(
        cluster,
        "get",
        "pods",
        "-A",
        "--field-selector=status.phase!=Succeeded,status.phase!=Failed",
        "-o",
        "wide",
    ).stdout
    return f"pod status: {json.dumps(pod.get('status'))}\nevents:\n{events}\nunfinished pods:\n{others}"


def test_the_operator_may_do_what_its_cluster_role_grants_and_nothing_more(real_cluster: RealCluster) -> None:
    def can(verb: str, resource: str) -> bool:
        done = kubectl(real_cluster, "auth", "can-i", verb, resource, "--as", OPERATOR_ACCOUNT, "-A")
        return done.stdout.strip() == "yes"

    # The README's table, asked of the real authorizer (SubjectAccessReview).
    for verb, resource in (
        ("create", "jobs.batch"),
        ("patch", "invocations.autoscene.io/status"),
        ("create", "persistentvolumeclaims"),
        ("get", "pods/log"),
        ("update", "leases.coordination.k8s.io"),
        ("create", "records.autoscene.io"),  # an Action's output Record
        ("patch", "recordfiles.autoscene.io"),  # registering outputs
    ):
        assert can(verb, resource), f"the operator may not {verb} {resource}"
    for verb, resource in (
        ("get", "secrets"),
        ("delete", "pods"),
        ("create", "pods/exec"),
        ("delete", "persistentvolumeclaims"),
        ("delete", "records.autoscene.io"),
        ("update", "recordfiles.autoscene.io"),
        ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ):
        assert not can(verb, resource), f"the operator may {verb} {resource}"


def test_pod_security_admission_refuses_what_restricted_forbids(
    real_cluster: RealCluster, namespace: str
) -> None:
    pod = restricted_pod("root", "true")
    pod["spec"]["securityContext"] = {}  # type: ignore[index]
    refused = kubectl(real_cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
    assert refused.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in refused.stderr
    allowed = kubectl(
        real_cluster, "apply", "-n", namespace, "-f", "-", input=json.dumps(restricted_pod("ok", "true"))
    )
    assert allowed.returncode == 0, allowed.stderr


def test_logs_and_exec_go_through_the_api_server_to_the_node(
    real_cluster: RealCluster, namespace: str
) -> None:
    script = "for i in 1 2 3 4 5; do echo line $i; done; sleep 30"
    real_cluster.kubectl_apply([restricted_pod("talker", "sh", "-c", script)], namespace)
    answers: list[str] = []

    def log_read() -> bool | None:
        # A bounded wait per try: a read that hangs is tried again, and said below if none succeeds.
        read = kubectl(real_cluster, "logs", "-n", namespace, "talker", "--request-timeout=20s")
        answers.append(read.stderr.strip())
        return "line 5" in read.stdout or None

    wait_for(
        log_read,
        60,
        "the Pod's log",
        explain=lambda: (
            f"kubectl said: {answers[-3:]}\n{pod_story(real_cluster, namespace, 'talker')}\n"
            f"kube-apiserver's log:\n{real_cluster.plane.log_tail('kube-apiserver')}"
        ),
    )
    tail = kubectl(real_cluster, "logs", "-n", namespace, "talker", "--tail=2")
    assert tail.stdout.splitlines() == ["line 4", "line 5"]
    # kubectl exec speaks websocket v5 to the API server, which proxies it to the node.
    done = kubectl(
        real_cluster,
        "exec",
        "-n",
        namespace,
        "talker",
        "-i",
        "--",
        "sh",
        "-c",
        "cat; echo done >&2; exit 3",
        input="piped in\n",
    )
    assert done.stdout == "piped in\n" and "done" in done.stderr and done.returncode == 3
    # A command line longer than a default HTTP server takes (it travels in the URL): 32 KiB.
    long = kubectl(real_cluster, "exec", "-n", namespace, "talker", "--", "echo", "x" * 32768)
    assert long.returncode == 0 and long.stdout.strip() == "x" * 32768, long.stderr
    missing = kubectl(real_cluster, "exec", "-n", namespace, "talker", "--", "no-such-program")
    assert missing.returncode != 0 and "no-such-program" in missing.stderr


def test_a_pod_that_does_not_fit_the_node_waits_unschedulable(
    real_cluster: RealCluster, namespace: str
) -> None:
    real_cluster.kubectl_apply([restricted_pod("greedy", "true", cpu="64")], namespace)

    def unschedulable() -> dict[str, str] | None:
        pod = kube.core().read_namespaced_pod("greedy", namespace)
        for condition in pod.status.conditions or []:
            if condition.type == "PodScheduled" and condition.status == "False":
                return {"reason": condition.reason, "message": condition.message}
        return None

    said = wait_for(unschedulable, 30, "the scheduler's verdict")
    assert said == {"reason": "Unschedulable", "message": "0/1 nodes are available: 1 Insufficient cpu."}
    assert kube.core().read_namespaced_pod("greedy", namespace).spec.node_name is None


def test_the_operator_runs_as_its_deployment_with_its_own_token(real_cluster: RealCluster) -> None:
    pods = kube.core().list_namespaced_pod(
        OPERATOR_NAMESPACE, label_selector=f"app.kubernetes.io/name={OPERATOR_DEPLOYMENT}"
    )
    [pod] = [pod for pod in pods.items if pod.status.phase == "Running"]
    assert pod.spec.service_account_name == OPERATOR_DEPLOYMENT
    assert pod.spec.node_name == real_cluster.plane.node_name
    # The ServiceAccount admission plugin gave it a projected token, which the node agent mounted.
    assert any(volume.projected for volume in pod.spec.volumes)
    lease = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease(
        OPERATOR_DEPLOYMENT, OPERATOR_NAMESPACE
    )
    assert lease.spec.holder_identity == pod.metadata.name


def test_binaries_are_the_pinned_release(real_cluster: RealCluster) -> None:
    version = json.loads(real_cluster.kubectl("get", "--raw", "/version"))
    assert version["gitVersion"] == "v1.37.2"
    assert Path(real_cluster.plane.binaries.kubectl).name == "kubectl"
