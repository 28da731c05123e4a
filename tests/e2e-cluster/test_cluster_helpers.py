"""The cluster suite's pure helpers, tested without a cluster (these run in every `make test`)."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from e2e_cluster import (
    ACTION,
    ACTION_CPU,
    ENV_IMAGE,
    ENV_KUBECONFIG,
    RECORD,
    TEST_CLAIM,
    TRIGGER,
    Settings,
    choose_extractor_image,
    files_in_listing,
    frame_files,
    hopeless,
    image_repository,
    invocation_line,
    namespace_name,
    pod_problems,
    prepare_samples,
    reader_pod,
    record_path,
    sample_documents,
    suite_claim,
    upload_command,
)

from autoscene import jobs


def test_settings_are_none_without_a_kubeconfig() -> None:
    assert Settings.from_environ({}) is None
    assert Settings.from_environ({ENV_KUBECONFIG: "  "}) is None


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/tester")
    settings = Settings.from_environ(
        {
            ENV_KUBECONFIG: "~/.kube/config",
            ENV_IMAGE: "autoscene/frame-extractor:dev",
            "AUTOSCENE_E2E_STORAGE": "size",
            "AUTOSCENE_E2E_STORAGE_CLASS": "nfs",
            "AUTOSCENE_E2E_TIMEOUT": "90",
            "AUTOSCENE_E2E_KEEP_NAMESPACE": "1",
        }
    )
    assert settings == Settings(
        kubeconfig="/home/tester/.kube/config",
        extractor_image="autoscene/frame-extractor:dev",
        storage="size",
        storage_class="nfs",
        timeout=90.0,
        keep_namespace=True,
    )
    assert Settings.from_environ({ENV_KUBECONFIG: "/k"}) == Settings(kubeconfig="/k")


@pytest.mark.parametrize(
    "name, value, message",
    [
        ("AUTOSCENE_E2E_STORAGE", "nfs", "AUTOSCENE_E2E_STORAGE must be one of claim, size, not 'nfs'"),
        (
            "AUTOSCENE_E2E_TIMEOUT",
            "soon",
            "AUTOSCENE_E2E_TIMEOUT must be a positive number of seconds, not 'soon'",
        ),
        ("AUTOSCENE_E2E_TIMEOUT", "0", "AUTOSCENE_E2E_TIMEOUT must be a positive number of seconds, not '0'"),
    ],
)
def test_settings_reject_bad_values(name: str, value: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        Settings.from_environ({ENV_KUBECONFIG: "/k", name: value})
    assert str(raised.value) == message


def test_sample_documents_are_the_kustomizations_objects() -> None:
    documents = sample_documents()
    assert [(document["kind"], document["metadata"]["name"]) for document in documents] == [
        ("Action", ACTION),
        ("Trigger", TRIGGER),
        ("Record", RECORD),
    ]


def test_sample_documents_follow_the_kustomization(tmp_path: Path) -> None:
    (tmp_path / "kustomization.yaml").write_text("resources: [b.yaml, a.yaml]\n")
    (tmp_path / "a.yaml").write_text("kind: A\n---\nkind: A2\n")
    (tmp_path / "b.yaml").write_text("kind: B\n")
    (tmp_path / "unlisted.yaml").write_text("kind: C\n")
    assert [document["kind"] for document in sample_documents(tmp_path)] == ["B", "A", "A2"]


def test_prepared_samples_run_the_chosen_image_on_the_suites_claim() -> None:
    documents = sample_documents()
    prepared = prepare_samples(documents, namespace="ns", image="extractor:built", storage="claim")
    by_kind = {obj["kind"]: obj for obj in prepared}
    assert all(obj["metadata"]["namespace"] == "ns" for obj in prepared)
    action = by_kind["Action"]["spec"]
    assert action["image"] == "extractor:built"
    assert action["resources"]["requests"] == {"cpu": ACTION_CPU, "memory": "512Mi"}
    assert action["resources"]["limits"] == {"cpu": 2, "memory": "1Gi"}
    assert action["command"] == ["python", "/app/extract_frames.py"]
    assert by_kind["Record"]["spec"] == {"storage": {"claimName": TEST_CLAIM}}
    assert by_kind["Trigger"]["spec"] == {
        "action": ACTION,
        "fileGlob": "*.mp4",
        "ignoreCase": True,
        "exclude": ["._*"],
    }
    assert "namespace" not in documents[0]["metadata"], "the samples read are left as they were"
    assert documents[0]["spec"]["image"] == "autoscene/frame-extractor:0.1.0"


def test_prepared_samples_keep_the_operators_claim_with_storage_size() -> None:
    prepared = prepare_samples(sample_documents(), namespace="ns", image="x:1", storage="size")
    assert [obj["spec"] for obj in prepared if obj["kind"] == "Record"] == [{"storage": {"size": "10Gi"}}]
    classed = prepare_samples(
        sample_documents(), namespace="ns", image="x:1", storage="size", storage_class="nfs"
    )
    assert [obj["spec"] for obj in classed if obj["kind"] == "Record"] == [
        {"storage": {"size": "10Gi", "storageClassName": "nfs"}}
    ]


def test_suite_claim_is_read_write_once() -> None:
    claim = suite_claim("ns", "10Gi")
    assert claim["metadata"] == {"name": TEST_CLAIM, "namespace": "ns"}
    assert claim["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}
    assert suite_claim("ns", "1Gi", "standard")["spec"]["storageClassName"] == "standard"


@pytest.mark.parametrize(
    "image, repository",
    [
        ("autoscene/frame-extractor", "autoscene/frame-extractor"),
        ("autoscene/frame-extractor:0.1.0", "autoscene/frame-extractor"),
        ("docker.io/autoscene/frame-extractor:abc@sha256:" + "0" * 64, "autoscene/frame-extractor"),
        ("localhost:5000/autoscene/frame-extractor:v1", "localhost:5000/autoscene/frame-extractor"),
        ("docker.io/library/busybox:1.36.1", "busybox"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository


def action(namespace: str, image: str, created: str, name: str = ACTION) -> dict[str, object]:
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"image": image},
    }


def test_an_explicit_extractor_image_wins() -> None:
    deployed = [action("default", "autoscene/frame-extractor:built", "2025-01-01T00:00:00Z")]
    assert choose_extractor_image("mine:1", "autoscene/frame-extractor:0.1.0", deployed, "e2e") == (
        "mine:1",
        ENV_IMAGE,
    )


def test_the_extractor_image_skaffold_deployed_is_found() -> None:
    sample = "autoscene/frame-extractor:0.1.0"
    deployed = [
        action("default", "autoscene/frame-extractor:older", "2025-01-01T00:00:00Z"),
        action("dev", "autoscene/frame-extractor:newer", "2025-02-01T00:00:00Z"),
        action("e2e", "autoscene/frame-extractor:own", "2025-03-01T00:00:00Z"),  # the suite's own namespace
        action("other", "someone/else:9", "2025-04-01T00:00:00Z"),
        action("other", "autoscene/frame-extractor:renamed", "2025-04-01T00:00:00Z", name="custom"),
        action("plain", sample, "2025-05-01T00:00:00Z"),  # applied without skaffold: nothing learnt
    ]
    image, where = choose_extractor_image(None, sample, deployed, "e2e")
    assert image == "autoscene/frame-extractor:newer"
    assert where == f'Action "{ACTION}" in namespace "dev" (skaffold run -p with-samples)'
    assert choose_extractor_image(None, sample, deployed[3:], "e2e") == (sample, "manifests/samples")


def test_upload_command_is_the_cli_with_kubeconfig_and_namespace() -> None:
    files = [Path("/v/a.mp4"), Path("/v/b c.mp4")]
    assert upload_command("autoscene", "recordings", files, kubeconfig="/k", namespace="ns") == [
        "autoscene",
        "upload",
        "recordings",
        "/v/a.mp4",
        "/v/b c.mp4",
        "--kubeconfig",
        "/k",
        "--namespace",
        "ns",
    ]
    with_prefix = upload_command("autoscene", "r", files[:1], kubeconfig="/k", namespace="ns", prefix="day1")
    assert with_prefix[-2:] == ["--prefix", "day1"]


@pytest.mark.parametrize(
    "prefix, name, path",
    [("", "a.mp4", "a.mp4"), ("day1", "a.mp4", "day1/a.mp4"), ("day1/cam0/", "a b.mp4", "day1/cam0/a b.mp4")],
)
def test_record_path(prefix: str, name: str, path: str) -> None:
    assert record_path(prefix, name) == path


def test_frames_are_counted_in_their_folder_only() -> None:
    listing = (
        "./x/drive 01/frame_000001.jpg\n./x/drive 01/manifest.json\n./x/drive 01/frame_000000.jpg\n"
        "./x/drive 01/sub/frame_000002.jpg\n./x/drive 012/frame_000000.jpg\n./x/drive 01/frame_000003.png\n\n"
    )
    files = files_in_listing(listing)
    assert files[0] == "x/drive 01/frame_000000.jpg" and len(files) == 6
    assert frame_files(files, "x/drive 01") == ["x/drive 01/frame_000000.jpg", "x/drive 01/frame_000001.jpg"]
    assert frame_files(files, "/x/drive 01/") == frame_files(files, "x/drive 01")
    assert frame_files(files, "nowhere") == []


def test_reader_pod_is_restricted_and_reads_only() -> None:
    pod = reader_pod("ns", "record-recordings")
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert container["image"] == jobs.PREPARE_IMAGE, "an image the operator's Jobs use already"
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] > 0
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert all(mount["readOnly"] for mount in container["volumeMounts"])
    assert spec["volumes"] == [
        {"name": "record", "persistentVolumeClaim": {"claimName": "record-recordings", "readOnly": True}}
    ]
    assert yaml.safe_load(yaml.safe_dump(pod)) == pod


def test_pod_problems_say_what_holds_pods_up() -> None:
    pods: list[dict[str, Any]] = [
        {
            "metadata": {"name": "job-a"},
            "status": {
                "conditions": [
                    {"type": "PodScheduled", "status": "False", "message": "0/1 nodes: Insufficient cpu."}
                ]
            },
        },
        {
            "metadata": {"name": "job-b"},
            "status": {
                "initContainerStatuses": [
                    {"name": "prepare-outputs", "state": {"terminated": {"exitCode": 0}}}
                ],
                "containerStatuses": [
                    {
                        "name": "action",
                        "state": {"waiting": {"reason": "ErrImagePull", "message": "not found"}},
                    }
                ],
            },
        },
        {
            "metadata": {"name": "job-c"},
            "status": {
                "containerStatuses": [
                    {"name": "action", "state": {"waiting": {"reason": "ContainerCreating"}}}
                ]
            },
        },
        {"metadata": {"name": "job-d"}, "status": {"phase": "Running"}},
    ]
    problems = pod_problems(pods)
    assert problems[0] == "pod job-a: not scheduled: 0/1 nodes: Insufficient cpu."
    assert problems[1].startswith("pod job-b: container action waits: ErrImagePull (not found); is the image")
    assert ENV_IMAGE in problems[1]
    assert len(problems) == 2


def test_only_image_problems_past_the_first_pull_are_hopeless() -> None:
    problems = [
        "pod a: not scheduled: 0/1 nodes: Insufficient cpu.",
        "pod b: container action waits: ErrImagePull (not found)",
        "pod c: container action waits: ImagePullBackOff (Back-off pulling image)",
        "pod d: container action waits: InvalidImageName",
        "pod e: container action waits: CrashLoopBackOff",
    ]
    assert hopeless(problems) == problems[2:4]


def test_invocation_line() -> None:
    invocation = {"metadata": {"name": "i"}, "spec": {"file": "a.mp4"}}
    assert invocation_line(invocation) == "invocation i (a.mp4): no status"
    invocation["status"] = {"phase": "Failed", "reason": "ActionNotFound", "message": "no action"}
    assert invocation_line(invocation) == "invocation i (a.mp4): Failed ActionNotFound no action"


def test_namespace_names_are_fresh_dns_labels() -> None:
    assert namespace_name("abc123") == "autoscene-e2e-abc123"
    names = {namespace_name() for _ in range(20)}
    assert len(names) == 20
    assert all(len(name) <= 63 and name.replace("-", "").isalnum() and name.islower() for name in names)
