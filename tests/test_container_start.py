"""A container that cannot be started ends as on a node with containerd: terminated, reason StartError,
exit code 128, and its Pod Failed under restartPolicy Never (Kubernetes docs, "Pod Lifecycle"); one
with no command runs its image's default command ("Define a Command and Arguments for a Container")."""

from pathlib import Path
from typing import Any

import pytest

from autoscene import GROUP, VERSION, kube
from autoscene.sandbox.containers import PathMap, UnrunnableContainer, container_command, local_argv
from autoscene.sandbox.realcluster import real_images
from autoscene.sandbox.session import wait_for

from .conftest import ApiNamespace, RunningSandbox
from .test_end_to_end import create_invocation

IMAGES = real_images()  # the sandbox's stand-ins and the operator image


def pod(name: str, container: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "main", **container}]},
    }


def finished_pod(cluster: RunningSandbox, name: str) -> Any:
    def ended() -> Any:
        found = kube.core().read_namespaced_pod(name, cluster.namespace)
        return found if found.status.phase in ("Succeeded", "Failed") else None

    return wait_for(ended, 30, f"pod {name} to end")


def test_the_command_line_is_the_containers_over_its_images_defaults() -> None:
    assert container_command({"name": "c", "image": "busybox:1.36.1"}, IMAGES) == ["sh"]
    # `args` alone replace the CMD: busybox has no ENTRYPOINT, so they are the whole command line.
    assert container_command({"name": "c", "image": "busybox", "args": ["echo", "hi"]}, IMAGES) == [
        "echo",
        "hi",
    ]
    assert container_command({"name": "c", "image": "busybox", "command": ["true"]}, IMAGES) == ["true"]
    extractor = {"name": "c", "image": "autoscene/frame-extractor:1", "args": ["--every", "2"]}
    assert container_command(extractor, IMAGES) == ["python", "/app/extract_frames.py", "--every", "2"]
    operator = {"name": "c", "image": "autoscene/operator:0.1"}
    assert container_command(operator, IMAGES) == ["autoscene", "operator", "--all-namespaces"]
    with pytest.raises(UnrunnableContainer, match="no command specified") as refused:
        container_command({"name": "c", "image": "example.com/unknown:1"}, IMAGES)
    assert refused.value.reason == "StartError"


def test_a_pod_whose_program_does_not_exist_fails_with_start_error(sandbox: RunningSandbox) -> None:
    core = kube.core()
    core.create_namespaced_pod(
        sandbox.namespace, pod("missing", {"image": "busybox:1.36.1", "command": ["no-such-program"]})
    )
    failed = finished_pod(sandbox, "missing")
    assert failed.status.phase == "Failed"
    [status] = failed.status.container_statuses
    terminated = status.state.terminated
    assert (terminated.reason, terminated.exit_code) == ("StartError", 128)
    assert 'exec: "no-such-program": executable file not found in $PATH' in terminated.message
    assert not status.ready
    ready = next(c for c in failed.status.conditions if c.type == "Ready")
    assert ready.status == "False"
    assert core.read_namespaced_pod_log("missing", sandbox.namespace) == ""


def test_a_busybox_container_without_a_command_runs_sh_and_succeeds(sandbox: RunningSandbox) -> None:
    kube.core().create_namespaced_pod(sandbox.namespace, pod("default", {"image": "busybox:1.36.1"}))
    done = finished_pod(sandbox, "default")
    assert done.status.phase == "Succeeded"
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("Completed", 0)


def test_a_job_counts_a_container_that_cannot_start_as_a_failure(sandbox: RunningSandbox) -> None:
    batch = kube.batch()
    template = pod("unused", {"image": "busybox:1.36.1", "command": ["/no/such/program"]})
    job = {"metadata": {"name": "unstartable"}, "spec": {"backoffLimit": 0, "template": template}}
    batch.create_namespaced_job(sandbox.namespace, job)

    def failed() -> Any:
        found = batch.read_namespaced_job("unstartable", sandbox.namespace)
        conditions = {c.type for c in found.status.conditions or [] if c.status == "True"}
        return found if "Failed" in conditions else None

    assert wait_for(failed, 60, "the job to fail").status.failed == 1


def test_an_action_whose_program_does_not_exist_fails_its_run_naming_it(sandbox: RunningSandbox) -> None:
    action = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Action",
        "metadata": {"name": "misspelt", "namespace": sandbox.namespace},
        "spec": {"image": "busybox:1.36.1", "command": ["no-such-program"]},
    }
    assert kube.create_custom("actions", action)
    create_invocation(sandbox, "misspelt-run", action="misspelt", file="anything.mp4")
    failed = sandbox.finished("misspelt-run")
    assert failed["status"]["phase"] == "Failed"
    assert 'exec: "no-such-program": executable file not found' in failed["status"]["message"]


def test_a_pod_waits_for_its_volumes_secret_and_runs_once_it_exists(api_namespace: ApiNamespace) -> None:
    """A volume whose Secret is missing holds the Pod's containers, Pending, and the kubelet tries again
    until the Secret appears ("Secrets" in the Kubernetes docs: "the Pod will not start until all the
    Pod's volumes are mounted"); then the container reads the key as a file."""
    namespace, core = api_namespace.namespace, kube.core()
    reader = pod("reader", {"image": "busybox:1.36.1", "command": ["cat", "/etc/conf/token"]})
    reader["spec"]["containers"][0]["volumeMounts"] = [{"name": "conf", "mountPath": "/etc/conf"}]
    reader["spec"]["volumes"] = [{"name": "conf", "secret": {"secretName": "late"}}]
    core.create_namespaced_pod(namespace, reader)

    def held() -> Any:
        found = core.read_namespaced_pod("reader", namespace)
        statuses = found.status.container_statuses or []
        return found if statuses and statuses[0].state.waiting is not None else None

    assert wait_for(held, 60, "the kubelet to hold the container").status.phase == "Pending"
    secret = {"metadata": {"name": "late"}, "stringData": {"token": "s3cret"}}
    core.create_namespaced_secret(namespace, secret)

    def ended() -> Any:
        found = core.read_namespaced_pod("reader", namespace)
        return found if found.status.phase in ("Succeeded", "Failed") else None

    done = wait_for(ended, 120, "the Pod to run once its Secret exists")
    assert done.status.phase == "Succeeded", done.status.container_statuses[0].state.terminated
    assert core.read_namespaced_pod_log("reader", namespace) == "s3cret"


def test_a_shell_scripts_container_paths_are_mapped_where_they_begin_a_word() -> None:
    paths = PathMap({"/cos/files": Path("/node/f"), "/cos/outputs/": Path("/node/o")})
    script = 'wc -c </cos/files/$F >"/cos/outputs/n"; ls /cos/files /cos/filesystem x/cos/files a=/cos/files'
    [_, flag, mapped] = local_argv(["sh", "-c", script], paths)
    assert (flag, mapped) == (
        "-c",
        'wc -c </node/f/$F >"/node/o/n"; ls /node/f /cos/filesystem x/cos/files a=/node/f',
    )
    # Not a shell's script: only whole arguments are paths.
    assert local_argv(["echo", "-c", "ls /cos/files"], paths)[1:] == ["-c", "ls /cos/files"]


def test_an_image_that_is_no_reference_waits_as_invalid_image_name(api_namespace: ApiNamespace) -> None:
    """A reference the kubelet cannot parse is never pulled: the container waits with reason
    InvalidImageName and the kubelet's message (pkg/kubelet/images), which a run's status then shows."""
    namespace, core = api_namespace.namespace, kube.core()
    misnamed = pod("misnamed", {"image": "Not A Valid Image!!", "command": ["true"]})
    core.create_namespaced_pod(namespace, misnamed)

    def waiting() -> Any:
        statuses = core.read_namespaced_pod("misnamed", namespace).status.container_statuses or []
        return statuses[0].state.waiting if statuses and statuses[0].state.waiting else None

    said = wait_for(waiting, 60, "the container to wait")
    assert (said.reason, said.message) == (
        "InvalidImageName",
        'Failed to apply default image tag "Not A Valid Image!!": couldn\'t parse image name '
        '"Not A Valid Image!!": invalid reference format',
    )
