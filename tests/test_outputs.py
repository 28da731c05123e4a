"""Where outputs go, the publish Job, what its log says and the provenance of outputs (`outputs`)."""

from typing import Any

import pytest

from autoscene import jobs, outputs, templates
from autoscene.lifecycle import RUNNING, SUCCEEDED

INVOCATION: dict[str, Any] = {
    "apiVersion": "autoscene.io/v1alpha1",
    "kind": "Invocation",
    "metadata": {"name": "run-1", "namespace": "ns", "uid": "u-1"},
    "spec": {"action": "extract", "record": "rec", "file": "day1/cam.mp4", "sha256": "a" * 64},
}
VALUES = templates.context({}, "rec", "day1/cam.mp4", "run-1")


def test_the_destination_expands_placeholders() -> None:
    spec = {"outputs": {"record": "{{record.name}}-frames", "prefix": "{{file.stem}}/", "mode": "overwrite"}}
    assert outputs.destination(spec, VALUES) == outputs.Destination("rec-frames", "cam", "overwrite")
    assert outputs.destination({"outputs": {"record": "x"}}, VALUES) == outputs.Destination("x", "", "add")
    assert outputs.destination({}, VALUES) is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"record": "{{record.nam}}"}, "unknown placeholder {{record.nam}} in outputs.record"),
        ({"record": "{{file.path}}"}, "not a Record name"),
        ({"record": "x", "prefix": "../elsewhere"}, "escapes the record"),
        ({"record": "x", "prefix": "a/../../b"}, "escapes the record"),
        # As an uploaded file's path may not (upload.record_path): the same rules for both.
        ({"record": "x", "prefix": "a/../b"}, "escapes the record"),
        ({"record": "x", "prefix": "~/b"}, "is not a relative path inside the record"),
        ({"record": "x", "prefix": "a\\b"}, "is not a relative path inside the record"),
        ({"record": "x", "prefix": "two\nlines"}, "holds a line break"),
    ],
)
def test_a_destination_that_cannot_be_used_is_a_parameter_error(spec: dict[str, str], message: str) -> None:
    with pytest.raises(templates.ParameterError, match=message.replace("{", r"\{").replace("}", r"\}")):
        outputs.destination({"outputs": spec}, VALUES)


def test_a_prefix_is_normalised_as_an_uploaded_path_is() -> None:
    for prefix, expected in (("./cam//day1/", "cam/day1"), ("..cam", "..cam"), ("/", "")):
        spec = {"outputs": {"record": "x", "prefix": prefix}}
        assert outputs.destination(spec, VALUES) == outputs.Destination("x", expected, "add")


def test_paths_land_under_the_prefix() -> None:
    target = outputs.Destination("r", "cam", "add")
    assert target.path_of("f.jpg") == "cam/f.jpg"
    assert target.holds("cam/f.jpg") and not target.holds("camera/f.jpg") and not target.holds("cam")
    assert outputs.Destination("r", "", "add").holds("anything/at/all")


def test_a_chain_stops_on_a_cycle_and_past_its_depth() -> None:
    assert outputs.chain_stop([], "extract", "f") is None
    assert outputs.chain_stop(["extract"], "sheet", "f") is None
    cycle = outputs.chain_stop(["extract", "sheet"], "extract", '"f"')
    assert cycle is not None and cycle[0] == outputs.CHAIN_CYCLE
    assert "chain extract → sheet → extract" in cycle[1]
    deep = [f"a{index}" for index in range(outputs.MAX_CHAIN_DEPTH)]
    too_deep = outputs.chain_stop(deep, "next", "f")
    assert too_deep is not None and too_deep[0] == outputs.CHAIN_TOO_DEEP
    assert outputs.chain_stop(deep[:-1], "next", "f") is None


def test_a_success_with_an_output_record_goes_on_registering() -> None:
    observed = {
        "phase": SUCCEEDED,
        "reason": "Completed",
        "message": "done",
        "exitCode": 0,
        "completionTime": "t",
    }
    current = {"phase": RUNNING, "outputRecord": {"name": "rec-frames", "prefix": "", "mode": "add"}}
    registering = outputs.registering(current, observed)
    assert registering == {
        "exitCode": 0,
        "phase": RUNNING,
        "reason": outputs.REGISTERING,
        "message": 'the action succeeded; its outputs are being copied into record "rec-frames"',
    }
    assert outputs.registering({"phase": RUNNING}, observed) is observed  # no output Record
    failed = {**observed, "phase": "Failed"}
    assert outputs.registering(current, failed) is failed


def test_the_publish_job_mounts_both_volumes_and_is_restricted() -> None:
    target = outputs.Destination("rec-frames", "cam", "add")
    job = outputs.publish_job(INVOCATION, target, "claim-a", "claim-b", ttl_seconds=60)
    assert job["metadata"]["name"] == outputs.publish_job_name("run-1") != "run-1"  # not the run's Job
    assert outputs.is_publish_job(job)
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert {volume["persistentVolumeClaim"]["claimName"] for volume in pod["volumes"]} == {
        "claim-a",
        "claim-b",
    }
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts[outputs.SOURCE_FOLDER] == {
        "name": "source",
        "mountPath": outputs.SOURCE_FOLDER,
        "subPath": "outputs/run-1",
        "readOnly": True,
    }
    env = {entry["name"]: entry["value"] for entry in container["env"]}
    assert (env["PREFIX"], env["MODE"], env["INVOCATION"]) == ("cam", "add", "run-1")
    assert container["securityContext"] == jobs.restricted_container_context()
    assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    # Outputs into the Record they came from: one claim is one volume, mounted twice.
    same = outputs.publish_job(INVOCATION, target, "claim-a", "claim-a")["spec"]["template"]["spec"]
    assert [volume["name"] for volume in same["volumes"]] == ["source"]
    assert {mount["name"] for mount in same["containers"][0]["volumeMounts"]} == {"source"}


def test_the_publish_log_lists_each_file_with_its_checksum_and_size() -> None:
    log = (
        "sha256 " + "b" * 64 + "  ./cam/frame 1.jpg\n"
        "sha256 " + "c" * 64 + "  ./manifest.json\n"
        "size 10 ./cam/frame 1.jpg\n"
        "size 3 ./manifest.json\n"
        "placed\n"
    )
    assert outputs.published(log) == [
        outputs.PublishedFile("cam/frame 1.jpg", 10, "b" * 64),
        outputs.PublishedFile("manifest.json", 3, "c" * 64),
    ]
    assert outputs.published("placed\n") == []
    with pytest.raises(outputs.OutputsError, match="were placed"):
        outputs.published(log.replace("placed\n", ""))
    with pytest.raises(outputs.OutputsError, match="half"):
        outputs.published("size 3 ./manifest.json\nplaced\n")


def test_provenance_names_the_run_its_input_and_the_chain() -> None:
    chained: dict[str, Any] = {**INVOCATION, "spec": {**INVOCATION["spec"], "chain": ["upstream"]}}
    assert outputs.provenance(chained, "img:1") == {
        "invocation": "run-1",
        "record": "rec",
        "file": "day1/cam.mp4",
        "sha256": "a" * 64,
        "action": "extract",
        "image": "img:1",
        "chain": ["upstream", "extract"],
    }


def test_a_new_output_record_takes_the_sources_storage() -> None:
    source = {
        "metadata": {"name": "rec", "namespace": "ns"},
        "spec": {"storage": {"size": "5Gi", "storageClassName": "fast", "accessMode": "ReadWriteOnce"}},
    }
    made = outputs.record_body(source, "rec-frames")
    assert made["metadata"] == {
        "name": "rec-frames",
        "namespace": "ns",
        "labels": {outputs.DERIVED_FROM_LABEL: "rec"},
    }
    assert made["spec"] == source["spec"]
    on_claim = {"metadata": source["metadata"], "spec": {"storage": {"claimName": "existing"}}}
    assert outputs.record_body(on_claim, "x", claim_class="nfs")["spec"]["storage"] == {
        "size": outputs.DEFAULT_SIZE,
        "storageClassName": "nfs",
    }
