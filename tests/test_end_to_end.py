"""The whole loop through the real path, on the embedded sandbox and on the real control plane:
operator ↔ API server ↔ Job controller and kubelet ↔ extractor ↔ files."""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import cv2
import pytest

from autoscene import GROUP, VERSION, kube, triggers
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.session import wait_for

from .conftest import RunningSandbox


def frames_in(video: Path) -> int:
    """Frame count by an independent reader (OpenCV decoding every frame)."""
    capture = cv2.VideoCapture(str(video))
    count = 0
    while capture.grab():
        count += 1
    capture.release()
    return count


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    (tmp_path / "inputs").mkdir()
    return make_sample_video(tmp_path / "inputs" / "drive 01.mp4", width=160, height=120, frames=30, fps=15)


def test_upload_makes_a_succeeded_invocation_with_every_frame(cluster: RunningSandbox, clip: Path) -> None:
    [uploaded] = cluster.upload("recordings", clip)
    invocation = cluster.run_of(uploaded.path)
    status = invocation["status"]
    assert status["phase"] == "Succeeded", status
    assert status["exitCode"] == 0
    [condition] = status["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == ("Succeeded", "True", "Completed")
    assert status["startTime"] <= status["completionTime"]
    assert invocation["spec"]["trigger"] == "auto-extract-images"
    assert invocation["spec"]["sha256"] == uploaded.sha256
    frames = sorted((cluster.outputs_of(invocation) / "drive 01").glob("frame_*.jpg"))
    expected = frames_in(clip)
    assert expected == 30
    assert len(frames) == expected
    assert all(cv2.imread(str(frame)) is not None for frame in frames)
    manifest = json.loads((cluster.outputs_of(invocation) / "drive 01" / "manifest.json").read_text())
    assert manifest["complete"] is True
    assert status["outputs"]["count"] >= expected
    assert status["outputs"]["bytes"] > 0

    def fired() -> int | None:  # counted from the Invocations, written within a second or so
        trigger = kube.get_custom("triggers", cluster.namespace, "auto-extract-images") or {}
        return (trigger.get("status") or {}).get("fired")

    assert wait_for(fired, 30, "the trigger's count") == 1
    # The file is an object of its own; the Record keeps totals.
    [registered] = kube.list_custom(
        "recordfiles", cluster.namespace, label_selector="autoscene.io/record=recordings"
    )
    assert (registered["spec"]["path"], registered["spec"]["sha256"]) == (uploaded.path, uploaded.sha256)
    assert (
        registered["status"]["dispatchedSha256"] == uploaded.sha256
        and registered["status"]["invocations"] == 1
    )

    def totals() -> dict[str, Any] | None:
        record = kube.get_custom("records", cluster.namespace, "recordings") or {}
        return record["status"] if (record.get("status") or {}).get("fileCount") == 1 else None

    assert wait_for(totals, 30, "the record's totals")["bytes"] == clip.stat().st_size


def test_a_file_not_matching_the_glob_fires_nothing(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("weather: sunny")
    cluster.upload("recordings", notes, clip)
    cluster.run_of(clip.name)  # the .mp4 uploaded with it has been handled, so the .txt was seen too
    assert [inv["spec"]["file"] for inv in cluster.invocations()] == [clip.name]


def test_camera_files_fire_whatever_their_case_and_mac_sidecars_do_not(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    (tmp_path / "card").mkdir()
    camera = tmp_path / "card" / "GOPR0001.MP4"
    camera.write_bytes(clip.read_bytes())
    sidecar = tmp_path / "card" / "._GOPR0001.MP4"
    sidecar.write_bytes(b"\x00\x05\x16\x07" + bytes(4092))  # an AppleDouble header, no video
    cluster.upload("recordings", sidecar, camera, prefix="card")
    assert cluster.run_of("card/GOPR0001.MP4")["status"]["phase"] == "Succeeded"
    assert [inv["spec"]["file"] for inv in cluster.invocations()] == ["card/GOPR0001.MP4"]


def test_the_same_file_uploaded_twice_makes_one_invocation(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    cluster.upload("recordings", clip)
    first = cluster.run_of(clip.name)
    cluster.upload("recordings", clip)  # same path, same content: registered again
    marker = make_sample_video(tmp_path / "marker.mp4", width=64, height=48, frames=4)
    cluster.upload("recordings", marker)
    cluster.run_of(marker.name)
    runs = [inv for inv in cluster.invocations() if inv["spec"]["file"] == clip.name]
    assert [run["metadata"]["name"] for run in runs] == [first["metadata"]["name"]]
    # New content at the same path is a new run.
    (tmp_path / "changed").mkdir()
    changed = make_sample_video(tmp_path / "changed" / clip.name, width=64, height=48, frames=5, seed=99)
    cluster.upload("recordings", changed)
    second = cluster.run_of(clip.name, exclude=frozenset({first["metadata"]["name"]}))
    assert second["status"]["phase"] == "Succeeded"


def test_a_corrupt_video_fails_with_a_message_and_the_next_upload_succeeds(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    corrupt = tmp_path / "broken.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    cluster.upload("recordings", corrupt)
    failed = cluster.run_of(corrupt.name)
    assert failed["status"]["phase"] == "Failed"
    assert failed["status"]["exitCode"] != 0
    assert "broken.mp4" in failed["status"]["message"]
    assert "Traceback" not in failed["status"]["message"]
    # Bad input is final (the extractor's exit 3, the Job's pod failure policy): one attempt, not retried.
    assert (failed["status"]["exitCode"], failed["status"]["reason"]) == (3, "PodFailurePolicy")
    assert failed["status"]["attempts"] == 1
    [condition] = failed["status"]["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "Succeeded",
        "False",
        "PodFailurePolicy",
    )
    cluster.upload("recordings", clip)
    assert cluster.run_of(clip.name)["status"]["phase"] == "Succeeded"


def test_a_manual_invocation_runs(cluster: RunningSandbox, clip: Path) -> None:
    cluster.upload("recordings", clip, prefix="manual")
    cluster.run_of(f"manual/{clip.name}")  # the trigger's own run
    create_invocation(cluster, "by-hand", action="extract-images", file=f"manual/{clip.name}")
    done = cluster.finished("by-hand")
    assert done["status"]["phase"] == "Succeeded"
    assert done["metadata"]["labels"]["autoscene.io/action"] == "extract-images"
    assert len(list((cluster.outputs_of(done) / "manual" / clip.stem).glob("*.jpg"))) == frames_in(clip)


def test_an_invocation_of_a_missing_action_waits_for_it(cluster: RunningSandbox, clip: Path) -> None:
    cluster.upload("recordings", clip)
    cluster.run_of(clip.name)
    create_invocation(cluster, "early", action="extract-later", file=clip.name)

    def waiting() -> dict[str, Any] | None:
        found = cluster.invocation("early")
        return found if found and (found.get("status") or {}).get("reason") == "ActionNotFound" else None

    pending = wait_for(waiting, 60, "the invocation to wait for its action")
    assert pending["status"]["phase"] == "Pending"
    assert 'Action "extract-later" does not exist' in pending["status"]["message"]
    [condition] = pending["status"]["conditions"]
    assert (condition["type"], condition["status"]) == ("Succeeded", "Unknown")
    action = kube.get_custom("actions", cluster.namespace, "extract-images")
    assert action is not None
    later = {
        "apiVersion": action["apiVersion"],
        "kind": "Action",
        "metadata": {"name": "extract-later", "namespace": cluster.namespace},
        "spec": action["spec"],
    }
    kube.create_custom("actions", later)
    deadline = time.monotonic() + 60
    while (current := cluster.invocation("early")) and current["status"].get("phase") != "Succeeded":
        assert time.monotonic() < deadline, current["status"]
        time.sleep(0.1)


def test_an_invocation_of_a_missing_record_says_why_it_cannot_run(cluster: RunningSandbox) -> None:
    create_invocation(cluster, "nowhere", action="extract-images", file="a.mp4", record="no-such-record")
    failed = cluster.finished("nowhere")
    assert failed["status"]["reason"] == "RecordNotFound"
    assert 'Record "no-such-record" does not exist' in failed["status"]["message"]


def test_a_trigger_created_later_ignores_older_files(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    cluster.upload("recordings", clip)
    cluster.run_of(clip.name)
    time.sleep(1.1)  # trigger creation times have second precision
    trigger = kube.get_custom("triggers", cluster.namespace, "auto-extract-images")
    assert trigger is not None
    late = {
        "apiVersion": trigger["apiVersion"],
        "kind": "Trigger",
        "metadata": {"name": "late", "namespace": cluster.namespace},
        "spec": {"action": "extract-images", "fileGlob": "*.mp4"},
    }
    kube.create_custom("triggers", late)
    time.sleep(1.1)
    newer = make_sample_video(tmp_path / "newer.mp4", width=64, height=48, frames=4)
    cluster.upload("recordings", newer)
    for run in (cluster.run_of(newer.name, "late"), cluster.run_of(newer.name, "auto-extract-images")):
        assert run["status"]["phase"] == "Succeeded"
    fired = {(inv["spec"]["trigger"], inv["spec"]["file"]) for inv in cluster.invocations()}
    assert fired == {
        ("auto-extract-images", clip.name),
        ("auto-extract-images", newer.name),
        ("late", newer.name),
    }


def test_an_operator_restart_creates_no_second_invocation(
    cluster: RunningSandbox, clip: Path, tmp_path: Path
) -> None:
    cluster.upload("recordings", clip)
    first = cluster.run_of(clip.name)
    cluster.sandbox.restart_operator()
    marker = make_sample_video(tmp_path / "after-restart.mp4", width=64, height=48, frames=4)
    cluster.upload("recordings", marker)
    cluster.run_of(marker.name)
    assert sorted(
        inv["metadata"]["name"] for inv in cluster.invocations() if inv["spec"]["file"] == clip.name
    ) == [first["metadata"]["name"]]
    jobs = kube.batch().list_namespaced_job(cluster.namespace).items
    assert sorted(job.metadata.name for job in jobs).count(first["metadata"]["name"]) == 1


def wait_ready(cluster: RunningSandbox, *objects: str) -> None:
    """`kubectl wait --for=condition=Ready` on the objects, as a user types it."""
    kubectl = shutil.which("kubectl")
    assert kubectl is not None, "make test puts the control plane's kubectl first on PATH"
    waited = subprocess.run(
        [kubectl, "wait", "--for=condition=Ready", *objects, "-n", cluster.namespace, "--timeout=60s"],
        env={**os.environ, "KUBECONFIG": str(cluster.sandbox.kubeconfig)},
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert waited.returncode == 0, waited.stderr


def create_invocation(
    cluster: RunningSandbox,
    name: str,
    *,
    action: str,
    file: str,
    record: str = "recordings",
    parameters: dict[str, str] | None = None,
) -> None:
    spec: dict[str, Any] = {"action": action, "record": record, "file": file}
    if parameters is not None:
        spec["parameters"] = parameters
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Invocation",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": spec,
    }
    assert kube.create_custom("invocations", body)


def test_a_trigger_says_whether_it_can_fire(cluster: RunningSandbox) -> None:
    """Ready per the API conventions: False with the reason while it cannot fire, True once it can;
    `kubectl wait --for=condition=Ready` sees it."""

    def trigger(name: str, action: str, glob: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": cluster.namespace},
            "spec": {"action": action, "fileGlob": glob},
        }

    def ready(name: str, reason: str) -> dict[str, Any] | None:
        found = kube.get_custom("triggers", cluster.namespace, name) or {}
        conditions = (found.get("status") or {}).get("conditions") or []
        condition = next((c for c in conditions if c["type"] == "Ready"), None)
        return condition if condition and condition["reason"] == reason else None

    assert kube.create_custom("triggers", trigger("typo", "extract-images", "clips/[abc"))
    assert kube.create_custom("triggers", trigger("early", "made-later", "*.mp4"))
    broken = wait_for(lambda: ready("typo", "InvalidGlob"), 30, "the broken trigger's condition")
    assert broken["status"] == "False" and "cannot fire" in broken["message"]
    waiting = wait_for(lambda: ready("early", "ActionNotFound"), 30, "the early trigger's condition")
    assert waiting["status"] == "False" and 'Action "made-later" does not exist' in waiting["message"]
    warnings = kube.core().list_namespaced_event(
        cluster.namespace, field_selector="involvedObject.name=typo,reason=TriggerUnusable"
    )
    assert [event.type for event in warnings.items] == ["Warning"]
    misspelt = trigger("misspelt", "extract-images", "*.mkv")
    misspelt["spec"]["parameters"] = {"quallity": "90"}
    assert kube.create_custom("triggers", misspelt)
    refused = wait_for(lambda: ready("misspelt", "InvalidParameters"), 30, "the misspelt trigger's condition")
    assert refused["status"] == "False" and '"quallity"' in refused["message"]
    kube.delete_custom("triggers", cluster.namespace, "misspelt")

    action = kube.get_custom("actions", cluster.namespace, "extract-images")
    assert action is not None
    later = {**action, "metadata": {"name": "made-later", "namespace": cluster.namespace}}
    assert kube.create_custom("actions", later)
    wait_ready(cluster, "trigger/early")
    armed = ready("early", "Armed")
    assert armed is not None and armed["status"] == "True"


def test_records_and_actions_say_whether_they_are_ready(cluster: RunningSandbox) -> None:
    """Ready conditions on Records and Actions, for `kubectl wait`, the READY column and GitOps tools;
    on the real control plane a claim refused by a ResourceQuota says so on its Record."""
    namespace = cluster.namespace

    def condition(plural: str, name: str, reason: str) -> dict[str, Any] | None:
        found = kube.get_custom(plural, namespace, name) or {}
        ready = next(
            (c for c in (found.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"), None
        )
        return ready if ready and ready["reason"] == reason else None

    wait_ready(cluster, "record/recordings", "action/extract-images")
    greedy = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Action",
        "metadata": {"name": "greedy", "namespace": namespace},
        "spec": {"image": "busybox:1.36.1", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}},
    }
    assert kube.create_custom("actions", greedy)
    refused = wait_for(
        lambda: condition("actions", "greedy", "RequestAboveLimit"), 30, "the action's condition"
    )
    assert (
        refused["status"] == "False"
        and "requests.cpu (2) is above resources.limits.cpu (1)" in refused["message"]
    )

    if not hasattr(cluster.sandbox, "plane"):
        return  # the embedded server has no admission plugins: quotas are the real tier's
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "one-claim"},
        "spec": {"hard": {"persistentvolumeclaims": "1"}},  # the sample Record's claim is that one
    }
    kube.core().create_namespaced_resource_quota(namespace, quota)
    wait_for(
        lambda: kube.core().read_namespaced_resource_quota("one-claim", namespace).status.used,
        30,
        "the quota's usage",
    )
    record = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Record",
        "metadata": {"name": "over-quota", "namespace": namespace},
        "spec": {"storage": {"size": "1Gi"}},
    }
    assert kube.create_custom("records", record)
    over = wait_for(lambda: condition("records", "over-quota", "ClaimRefused"), 60, "the record's condition")
    assert over["status"] == "False" and "exceeded quota" in over["message"]
    assert (kube.get_custom("records", namespace, "over-quota") or {})["status"]["phase"] == "Failed"


def test_a_trigger_with_backfill_catches_up_once(cluster: RunningSandbox, tmp_path: Path) -> None:
    """`spec.backfill`: created after a file arrived, or resumed after one arrived while it was
    suspended, the Trigger fires on it once; without it, such files are never run by that Trigger."""
    namespace = cluster.namespace
    early = make_sample_video(tmp_path / "early.mp4", width=64, height=48, frames=6)
    later = make_sample_video(tmp_path / "later.mp4", width=64, height=48, frames=6, seed=3)
    cluster.upload("recordings", early)
    cluster.run_of(early.name)  # the sample Trigger's run

    def trigger(name: str, backfill: bool) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Trigger",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"action": "extract-images", "fileGlob": "*.mp4", "backfill": backfill},
        }

    def runs_of(trigger_name: str) -> list[str]:
        return sorted(
            run["spec"]["file"] for run in cluster.invocations() if run["spec"].get("trigger") == trigger_name
        )

    assert kube.create_custom("triggers", trigger("catch-up", backfill=True))
    assert kube.create_custom("triggers", trigger("no-catch-up", backfill=False))
    wait_for(lambda: runs_of("catch-up") == ["early.mp4"] or None, 60, "the catch-up run")
    for suspend in (True, False):  # suspend, upload, resume
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, "triggers", "catch-up", {"spec": {"suspend": suspend}}
        )
        if suspend:
            wait_for(
                lambda: (
                    (kube.get_custom("triggers", namespace, "catch-up") or {})
                    .get("status", {})
                    .get("conditions")
                    and triggers_reason(namespace, "catch-up") == "Suspended"
                    or None
                ),
                30,
                "the trigger to be suspended",
            )
            cluster.upload("recordings", later)
            cluster.run_of(later.name, trigger="auto-extract-images")
            assert runs_of("catch-up") == ["early.mp4"]
    wait_for(lambda: runs_of("catch-up") == ["early.mp4", "later.mp4"] or None, 60, "the run after resuming")
    assert runs_of("no-catch-up") == ["later.mp4"]  # only what arrived after it was created

    def caught_up() -> int | None:  # the generation is noted once the catch-up's runs exist
        found = kube.get_custom("triggers", namespace, "catch-up") or {}
        done = (found.get("status") or {}).get("backfilledGeneration")
        return done if done == found["metadata"]["generation"] else None

    wait_for(caught_up, 30, "the catch-up to be noted")

    def backfilled_events() -> int:
        selector = "involvedObject.name=catch-up,reason=Backfilled"
        return len(kube.core().list_namespaced_event(namespace, field_selector=selector).items)

    # One per generation caught up (its creation, its resume), though handler and periodic pass race.
    wait_for(lambda: backfilled_events() == 2 or None, 30, "one Backfilled event per catch-up")
    # The periodic pass may catch up on a generation the handler already did: it is not told twice.
    stale = kube.get_custom("triggers", namespace, "catch-up") or {}
    stale["status"]["backfilledGeneration"] = 0
    assert triggers.backfill(stale, lambda record: {}) == 0  # the runs exist already
    assert backfilled_events() == 2  # (an Event is posted before backfill returns)


def triggers_reason(namespace: str, name: str) -> str | None:
    found = kube.get_custom("triggers", namespace, name) or {}
    ready = [c for c in (found.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
    return ready[0]["reason"] if ready else None


def test_parameters_from_a_trigger_and_an_invocation_reach_the_action(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """The sample Action's `format` parameter, set by a Trigger, makes PNG frames; a manual run naming
    a parameter the Action does not declare fails with a message naming it."""
    namespace = cluster.namespace
    video = make_sample_video(tmp_path / "as-png.mp4", width=64, height=48, frames=6)
    png = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Trigger",
        "metadata": {"name": "png-frames", "namespace": namespace},
        "spec": {
            "action": "extract-images",
            "fileGlob": "as-png.mp4",
            "parameters": {"format": "png", "quality": "80"},
        },
    }
    assert kube.create_custom("triggers", png)
    wait_for(
        lambda: triggers_reason(namespace, "png-frames") == "Armed" or None, 30, "the trigger to be armed"
    )
    cluster.upload("recordings", video)
    run = cluster.run_of(video.name, trigger="png-frames")
    assert run["status"]["phase"] == "Succeeded", run["status"]
    assert run["spec"]["parameters"] == {"format": "png", "quality": "80"}
    assert run["status"]["parameters"] == {"mode": "all", "fps": "1", "quality": "80", "format": "png"}
    frames = cluster.outputs_of(run) / "as-png"
    assert len(list(frames.glob("*.png"))) == frames_in(video) and not list(frames.glob("*.jpg"))

    create_invocation(
        cluster, "odd-setting", action="extract-images", file=video.name, parameters={"speed": "9"}
    )
    failed = cluster.finished("odd-setting")
    assert failed["status"]["phase"] == "Failed" and failed["status"]["reason"] == "InvalidParameters"
    assert '"speed"' in failed["status"]["message"] and "does not declare" in failed["status"]["message"]

    # A required parameter nobody set, and a placeholder the Action's command names but nothing defines.
    strict = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Action",
        "metadata": {"name": "strict", "namespace": namespace},
        "spec": {
            "image": "busybox:1.36.1",
            "command": ["echo", "{{parameter.target}}", "{{parameter.typo}}"],
            "parameters": [{"name": "target", "required": True}],
        },
    }
    assert kube.create_custom("actions", strict)
    create_invocation(cluster, "no-target", action="strict", file=video.name)
    missing = cluster.finished("no-target")
    assert (missing["status"]["phase"], missing["status"]["reason"]) == ("Failed", "InvalidParameters")
    assert 'required parameter "target"' in missing["status"]["message"]
    create_invocation(cluster, "typo", action="strict", file=video.name, parameters={"target": "x"})
    unknown = cluster.finished("typo")
    assert unknown["status"]["reason"] == "InvalidParameters"
    assert "unknown placeholder {{parameter.typo}} in command[2]" in unknown["status"]["message"]


def test_an_action_takes_secrets_and_config_maps_as_the_kubelet_gives_them(cluster: RunningSandbox) -> None:
    """`env[].valueFrom` and `envFrom` reach the action's process (the kubelet reads them, not the
    operator); a missing Secret keeps the run waiting with the kubelet's reason."""
    namespace = cluster.namespace
    core = kube.core()
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "api"}, "stringData": {"token": "s3cret"}, "type": "Opaque"}
    )
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cloud"}, "data": {"REGION": "eu-west"}}
    )
    script = 'printf "%s|%s|%s" "$API_TOKEN" "$CLOUD_REGION" "${NOTE-unset}" > "$OUTPUT_FOLDER/env.txt"'

    def action(name: str, secret: str) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Action",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "image": "busybox:1.36.1",
                "command": ["sh", "-c", script],
                "env": [
                    {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}},
                    {
                        "name": "NOTE",
                        "valueFrom": {"configMapKeyRef": {"name": "none", "key": "x", "optional": True}},
                    },
                ],
                "envFrom": [{"configMapRef": {"name": "cloud"}, "prefix": "CLOUD_"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
            },
        }

    assert kube.create_custom("actions", action("with-secret", "api"))
    assert kube.create_custom("actions", action("without-secret", "no-such-secret"))
    create_invocation(cluster, "secret-run", action="with-secret", file="any.bin")
    done = cluster.finished("secret-run")
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert (cluster.outputs_of(done) / "env.txt").read_text() == "s3cret|eu-west|unset"

    create_invocation(cluster, "secret-missing", action="without-secret", file="any.bin")

    def waiting() -> dict[str, Any] | None:
        found = cluster.invocation("secret-missing") or {}
        return found if (found.get("status") or {}).get("reason") == "CreateContainerConfigError" else None

    stuck = wait_for(waiting, 60, "the run to wait for its Secret")
    assert stuck["status"]["phase"] == "Pending" and "no-such-secret" in stuck["status"]["message"]


def test_outputs_download_through_the_api_with_matching_sha256(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """The real control plane: a Pod's tar stream out, each file checked against the sha256 computed in
    the Pod, compared here with the files on the node's volume."""
    import hashlib

    from autoscene import cluster_upload, jobs, upload

    clip = make_sample_video(tmp_path / "down.mp4", width=64, height=48, frames=6)
    cluster.upload("recordings", clip)
    run = cluster.run_of(clip.name)
    source = cluster.outputs_of(run)
    if hasattr(cluster.sandbox, "plane"):
        copied = cluster_upload.download_via_exec(
            cluster.namespace, "recordings", jobs.output_subpath(run["metadata"]["name"]), tmp_path / "copy"
        )
    else:  # the embedded sandbox's volumes are local folders, which `autoscene outputs` copies
        copied = upload.copy_folder(source, tmp_path / "copy")
    originals = {
        file.relative_to(source).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in source.rglob("*")
        if file.is_file()
    }
    assert {file.path: file.sha256 for file in copied} == originals and len(originals) >= 7


def test_every_upload_of_new_content_runs_once_even_old_content_back_or_into_a_record_made_again(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """A run per upload of content, never two: the same content again does not run; other content
    does, and so does the first content back after it (its outputs would otherwise be the other's);
    a Record deleted, its volume with it, and made again starts empty and runs its files anew."""
    from autoscene.sandbox.demo import sample_manifests

    cluster.apply(
        [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Action",
                "metadata": {"name": "note"},
                "spec": {"image": "busybox:1.36.1", "command": ["true"]},
            },
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Trigger",
                "metadata": {"name": "on-bin"},
                "spec": {"action": "note", "fileGlob": "*.bin"},
            },
        ]
    )

    def upload(content: str, name: str = "data.bin") -> None:
        folder = tmp_path / f"upload-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        (folder / name).write_text(content)
        cluster.upload("recordings", folder / name)

    def runs(count: int) -> list[dict[str, Any]]:
        def finished() -> list[dict[str, Any]] | None:
            found = [run for run in cluster.invocations() if run["spec"]["file"] == "data.bin"]
            done = [run for run in found if (run.get("status") or {}).get("phase") == "Succeeded"]
            return found if len(found) == count and len(done) == count else None

        return wait_for(finished, 90, f"{count} succeeded runs of data.bin")

    for content, count in (("A", 1), ("A", 1), ("B", 2), ("A", 3)):
        upload(content)
        assert len(runs(count)) == count
    time.sleep(2)  # a second run of the same upload would show by now
    assert len(runs(3)) == 3

    upload("left behind", "notes.txt")  # no Trigger takes it: only its volume holds it
    record = kube.get_custom("records", cluster.namespace, "recordings")
    assert record is not None
    claim = record["status"]["claimName"]
    custom = kube.custom()
    custom.delete_namespaced_custom_object(GROUP, VERSION, cluster.namespace, "records", "recordings")
    cluster.apply([doc for doc in sample_manifests() if doc["kind"] == "Record"])
    # On a cluster the old claim stays (Terminating) while the finished runs' Pods that mounted it
    # exist, and the new Record waits for it; the Jobs' TTL would delete them, here it is done now.
    for run in cluster.invocations():
        kube.batch().delete_namespaced_job(
            run["metadata"]["name"], cluster.namespace, propagation_policy="Background"
        )

    def ready() -> dict[str, Any] | None:
        made = kube.get_custom("records", cluster.namespace, "recordings") or {}
        return made if (made.get("status") or {}).get("phase") == "Ready" else None

    made = wait_for(ready, 90, "the new Record's volume")
    assert made["metadata"]["uid"] != record["metadata"]["uid"]
    upload("A")
    assert len(runs(4)) == 4
    files = cluster.sandbox.volumes / cluster.namespace / claim / "files"
    assert sorted(path.name for path in files.iterdir()) == ["data.bin"]


def test_a_record_on_a_claim_that_does_not_exist_waits_for_it(sandbox: RunningSandbox) -> None:
    """A Record naming a claim that is not there is not Ready (reason ClaimNotFound, a Warning Event),
    as files could not go in; once the claim is made (a GitOps sync may apply it after), it is."""
    sandbox.apply(
        [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Record",
                "metadata": {"name": "on-a-late-claim"},
                "spec": {"storage": {"claimName": "late-claim"}},
            }
        ]
    )

    def ready_condition() -> dict[str, Any] | None:
        record = kube.get_custom("records", sandbox.namespace, "on-a-late-claim") or {}
        found = [c for c in (record.get("status") or {}).get("conditions") or [] if c["type"] == "Ready"]
        return found[0] if found else None

    waiting = wait_for(ready_condition, 60, "the Record's Ready condition")
    assert (waiting["status"], waiting["reason"]) == ("False", "ClaimNotFound"), waiting
    assert 'PersistentVolumeClaim "late-claim" does not exist' in waiting["message"]
    claim = {
        "metadata": {"name": "late-claim"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube.core().create_namespaced_persistent_volume_claim(sandbox.namespace, claim)
    wait_for(lambda: (ready_condition() or {}).get("status") == "True" or None, 60, "the Record to be Ready")


def test_a_shell_script_reads_and_writes_the_documented_paths(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """An Action's `sh -c` script may name /cos/files and /cos/outputs in its text (README: the files
    are at /cos/files, the outputs go to /cos/outputs), as in a container on a cluster."""
    script = (
        'wc -c < "/cos/files/$AUTOSCENE_FILE" > /cos/outputs/size.txt && '
        "ls /cos/files > /cos/outputs/files.txt"
    )
    cluster.apply(
        [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "Action",
                "metadata": {"name": "measure"},
                "spec": {"image": "busybox:1.36.1", "command": ["sh", "-c", script]},
            }
        ]
    )
    source = tmp_path / "twelve.bin"
    source.write_bytes(b"x" * 12)
    cluster.upload("recordings", source)
    create_invocation(cluster, "measure-twelve", action="measure", file="twelve.bin")
    done = cluster.finished("measure-twelve", timeout=90)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    outputs = cluster.outputs_of(done)
    assert (outputs / "size.txt").read_text().strip() == "12"
    assert "twelve.bin" in (outputs / "files.txt").read_text().split()
