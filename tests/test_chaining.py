"""Outputs saved into Records, so Actions chain: end to end on both servers (operator ↔ API ↔ kubelet
↔ the real actions ↔ files on disk), with the provenance of every output checked against the files."""

import hashlib
from pathlib import Path
from typing import Any

import cv2
import pytest

from autoscene import GROUP, VERSION, files, kube, labels, outputs
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.demo import chain_manifests
from autoscene.sandbox.session import wait_for

from .conftest import RunningSandbox
from .test_end_to_end import create_invocation, frames_in


def files_of(cluster: RunningSandbox, record: str) -> dict[str, dict[str, Any]]:
    """The RecordFiles of `record`, by path."""
    selector = f"{labels.RECORD}={labels.value_of(record)}"
    return {
        file["spec"]["path"]: file
        for file in kube.list_custom(files.PLURAL, cluster.namespace, label_selector=selector)
    }


def folder_of(cluster: RunningSandbox, record: str) -> Path:
    """The local folder holding the Record's files (both servers keep volumes in local folders)."""
    body = kube.get_custom("records", cluster.namespace, record)
    assert body is not None, f"record {record} does not exist"
    return cluster.sandbox.volumes / cluster.namespace / body["status"]["claimName"] / "files"


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def action(name: str, command: str, outputs: dict[str, str], **spec: Any) -> dict[str, Any]:
    """An Action running `command` in busybox's shell, its outputs going to `outputs`."""
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Action",
        "metadata": {"name": name},
        "spec": {"image": "busybox:1.36.1", "command": ["sh", "-c", command], "outputs": outputs, **spec},
    }


def trigger(name: str, action_name: str, glob: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Trigger",
        "metadata": {"name": name},
        "spec": {"action": action_name, "fileGlob": glob},
    }


def test_a_video_becomes_a_frames_record_then_a_contact_sheet(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """The chain `make demo` shows: MP4 → frames registered in "recordings-frames" → a contact sheet
    saved beside them; every output file carries its provenance, and its sha256 is the file's."""
    cluster.apply(list(chain_manifests()))
    video = make_sample_video(tmp_path / "walk.mp4", width=96, height=64, frames=20)
    [uploaded] = cluster.upload("recordings", video)

    extraction = cluster.run_of("walk.mp4", timeout=120)
    assert extraction["status"]["phase"] == "Succeeded", extraction["status"]
    frames = frames_in(video)
    assert extraction["status"]["outputRecord"] == {
        "name": "recordings-frames",
        "prefix": "",
        "mode": "replace",
        "jobName": outputs.publish_job_name(extraction["metadata"]["name"]),
        "fileCount": frames + 1,  # and the manifest
        "bytes": sum(
            path.stat().st_size for path in cluster.outputs_of(extraction).rglob("*") if path.is_file()
        ),
    }
    assert extraction["status"]["chainDepth"] == 0 and not extraction["spec"].get("chain")

    # The frames Record: made by the operator with the source's storage, labelled as derived from it.
    made = kube.get_custom("records", cluster.namespace, "recordings-frames")
    source = kube.get_custom("records", cluster.namespace, "recordings")
    assert made is not None and source is not None
    assert made["metadata"]["labels"][outputs.DERIVED_FROM_LABEL] == "recordings"
    assert made["spec"]["storage"] == source["spec"]["storage"]

    sheet_run = cluster.run_of("walk/manifest.json", timeout=120)
    assert sheet_run["status"]["phase"] == "Succeeded", sheet_run["status"]
    assert (
        sheet_run["spec"]["record"] == "recordings-frames" and sheet_run["spec"]["action"] == "contact-sheet"
    )
    assert sheet_run["spec"]["chain"] == ["extract-images"] and sheet_run["status"]["chainDepth"] == 1

    def sheet_registered() -> dict[str, dict[str, Any]] | None:
        found = files_of(cluster, "recordings-frames")
        return found if "contact-sheets/walk/contact_sheet.jpg" in found else None

    registered = wait_for(sheet_registered, 30, "the contact sheet to be registered")
    on_disk = folder_of(cluster, "recordings-frames")
    assert sorted(registered) == sorted(
        path.relative_to(on_disk).as_posix() for path in on_disk.rglob("*") if path.is_file()
    )
    assert len([path for path in registered if path.startswith("walk/frame_")]) == frames
    for path, file in registered.items():
        assert file["spec"]["sha256"] == sha256_of(on_disk / path), path
        assert file["spec"]["size"] == (on_disk / path).stat().st_size, path
    frame = registered["walk/frame_000000.jpg"]["spec"]["source"]
    assert frame == {
        "invocation": extraction["metadata"]["name"],
        "record": "recordings",
        "file": "walk.mp4",
        "sha256": uploaded.sha256,
        "action": "extract-images",
        "image": extraction["status"]["image"],
        "chain": ["extract-images"],
    }
    sheet = registered["contact-sheets/walk/contact_sheet.jpg"]["spec"]["source"]
    assert sheet["invocation"] == sheet_run["metadata"]["name"]
    assert (sheet["record"], sheet["file"]) == ("recordings-frames", "walk/manifest.json")
    assert sheet["sha256"] == registered["walk/manifest.json"]["spec"]["sha256"]
    assert sheet["chain"] == ["extract-images", "contact-sheet"]
    image = cv2.imread(str(on_disk / "contact-sheets/walk/contact_sheet.jpg"))
    assert image is not None and image.shape[0] > 0 and image.shape[1] > 0

    # The Record's totals count what was registered.
    def counted() -> dict[str, Any] | None:
        found = kube.get_custom("records", cluster.namespace, "recordings-frames")
        return found if found and (found.get("status") or {}).get("fileCount") == len(registered) else None

    totals = wait_for(counted, 30, "the frames record's totals")
    assert totals["status"]["bytes"] == sum(file["spec"]["size"] for file in registered.values())


def test_an_action_fed_its_own_outputs_stops_with_chain_cycle(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """An Action whose outputs land where its own Trigger fires: the second run stops before any Job."""
    cluster.apply(
        [
            action(
                "copy",
                'cp "$INPUT_FOLDER/$AUTOSCENE_FILE" "$OUTPUT_FOLDER/"',
                {"record": "{{record.name}}", "prefix": "copies"},
            ),
            trigger("copy-texts", "copy", "*.txt"),
        ]
    )
    note = tmp_path / "note.txt"
    note.write_text("hello\n")
    cluster.upload("recordings", note)
    first = cluster.run_of("note.txt", timeout=90)
    assert first["status"]["phase"] == "Succeeded", first["status"]

    looped = cluster.run_of("copies/note.txt", timeout=90)
    assert (looped["status"]["phase"], looped["status"]["reason"]) == ("Failed", outputs.CHAIN_CYCLE)
    assert looped["spec"]["chain"] == ["copy"] and looped["status"]["chainDepth"] == 1
    assert 'made by Action "copy" (chain copy → copy)' in looped["status"]["message"]
    assert "jobName" not in looped["status"]  # stopped before its Job was made
    condition = next(c for c in looped["status"]["conditions"] if c["type"] == "Succeeded")
    assert (condition["status"], condition["reason"]) == ("False", outputs.CHAIN_CYCLE)
    copy = files_of(cluster, "recordings")["copies/note.txt"]["spec"]
    assert copy["sha256"] == hashlib.sha256(b"hello\n").hexdigest()
    assert copy["source"]["chain"] == ["copy"]


def test_overwrite_keeps_only_the_last_runs_outputs_and_a_bad_name_fails_the_run(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """Mode overwrite: the prefix holds the newest run's outputs only, on disk and as RecordFiles; an
    output whose name cannot be registered fails the run with reason OutputsNotRegistered."""
    write = 'for name in {{parameter.names}}; do echo "$name" > "$OUTPUT_FOLDER/$name"; done'
    cluster.apply(
        [
            action(
                "make",
                write,
                {"record": "made", "prefix": "{{file.stem}}", "mode": "overwrite"},
                parameters=[{"name": "names", "required": True}],
            )
        ]
    )
    source = tmp_path / "seed.txt"
    source.write_text("seed\n")
    cluster.upload("recordings", source)

    create_invocation(cluster, "make-ab", action="make", file="seed.txt", parameters={"names": "a b"})
    assert cluster.finished("make-ab", timeout=90)["status"]["phase"] == "Succeeded"
    assert sorted(files_of(cluster, "made")) == ["seed/a", "seed/b"]
    create_invocation(cluster, "make-bc", action="make", file="seed.txt", parameters={"names": "b c"})
    done = cluster.finished("make-bc", timeout=90)
    assert done["status"]["phase"] == "Succeeded", done["status"]
    assert done["status"]["outputRecord"]["fileCount"] == 2
    wait_for(lambda: sorted(files_of(cluster, "made")) == ["seed/b", "seed/c"] or None, 30, "seed/a to go")
    on_disk = folder_of(cluster, "made")
    assert sorted(path.relative_to(on_disk).as_posix() for path in on_disk.rglob("*") if path.is_file()) == [
        "seed/b",
        "seed/c",
    ]
    made = files_of(cluster, "made")
    assert made["seed/c"]["spec"]["source"]["invocation"] == "make-bc"
    # The same content at the same path is the same file: not registered again, so nothing downstream
    # runs twice, and its provenance names the run that first made it.
    assert made["seed/b"]["spec"]["source"]["invocation"] == "make-ab"

    cluster.apply([action("odd", 'touch "$OUTPUT_FOLDER/$(printf "two\\nlines")"', {"record": "made"})])
    create_invocation(cluster, "odd-name", action="odd", file="seed.txt")
    failed = cluster.finished("odd-name", timeout=90)
    assert (failed["status"]["phase"], failed["status"]["reason"]) == ("Failed", outputs.NOT_REGISTERED)
    assert "line break" in failed["status"]["message"]
    assert sorted(files_of(cluster, "made")) == ["seed/b", "seed/c"]  # nothing of it was registered
    # Tried once: the same outputs cannot be registered on a second try (the Job's Pod failure policy).
    publish = kube.batch().read_namespaced_job(outputs.publish_job_name("odd-name"), cluster.namespace)
    reasons = {condition.type: condition.reason for condition in publish.status.conditions}
    assert (publish.status.failed, reasons["Failed"]) == (1, "PodFailurePolicy"), publish.status


@pytest.mark.parametrize("name", ["Bad_Name", "x" * 254])
def test_an_output_record_that_is_no_record_name_fails_at_start(name: str) -> None:
    with pytest.raises(ValueError, match="not a Record name"):
        outputs.destination({"outputs": {"record": name}}, {})


def test_replace_takes_a_source_files_folder_whole_and_warns_when_two_files_write_it(
    cluster: RunningSandbox, tmp_path: Path
) -> None:
    """Mode replace: each top-level folder a run writes takes the place of the last one whole, on disk
    and as RecordFiles, so a new version of a source file leaves none of the old outputs behind and
    the other folders stay; a file of another source writing the same folder is a Warning Event."""
    # `<stem>/0` … `<stem>/N-1`, N being the number the source file holds, each naming the source.
    write = (
        'n=$(cat "$INPUT_FOLDER/$AUTOSCENE_FILE"); d="$OUTPUT_FOLDER/${AUTOSCENE_FILE%.*}"; mkdir -p "$d"; '
        'i=0; while [ "$i" -lt "$n" ]; do echo "$AUTOSCENE_FILE $i" > "$d/$i"; i=$((i + 1)); done'
    )
    cluster.apply(
        [
            action("count", write, {"record": "counted", "mode": "replace"}),
            trigger("count-n", "count", "*.n"),
            trigger("count-m", "count", "*.m"),
        ]
    )

    def upload(name: str, content: str) -> dict[str, Any]:
        folder = tmp_path / f"{name}-{content}"
        folder.mkdir()
        (folder / name).write_text(f"{content}\n")
        [uploaded] = cluster.upload("recordings", folder / name)
        def started() -> dict[str, Any] | None:
            runs = cluster.invocations()
            wanted = (name, uploaded.sha256)
            found = [run for run in runs if (run["spec"]["file"], run["spec"].get("sha256")) == wanted]
            return found[0] if found else None

        run = wait_for(started, 60, f"the run of {name} ({content})")
        done = cluster.finished(run["metadata"]["name"], timeout=90)
        assert done["status"]["phase"] == "Succeeded", done["status"]
        return done

    def registered_and_on_disk(expected: list[str]) -> None:
        wait_for(lambda: sorted(files_of(cluster, "counted")) == expected or None, 30, f"files {expected}")
        on_disk = folder_of(cluster, "counted")
        found = sorted(path.relative_to(on_disk).as_posix() for path in on_disk.rglob("*") if path.is_file())
        assert found == expected

    upload("x.n", "3")
    upload("y.n", "2")
    registered_and_on_disk(["x/0", "x/1", "x/2", "y/0", "y/1"])
    changed = upload("x.n", "1")
    registered_and_on_disk(["x/0", "y/0", "y/1"])
    assert files_of(cluster, "counted")["y/1"]["spec"]["source"]["file"] == "y.n"
    assert not [e for e in _events_of(cluster, changed) if e.reason == "OutputsReplaced"]

    other = upload("x.m", "2")
    registered_and_on_disk(["x/0", "x/1", "y/0", "y/1"])
    made = files_of(cluster, "counted")
    assert {made[path]["spec"]["source"]["file"] for path in ("x/0", "x/1")} == {"x.m"}
    [warning] = wait_for(
        lambda: [e for e in _events_of(cluster, other) if e.reason == "OutputsReplaced"] or None,
        30,
        "the OutputsReplaced Event",
    )
    assert warning.type == "Warning"
    assert warning.message.startswith("the outputs of x.m took the place of those made from x.n (e.g. x/0)")


def _events_of(cluster: RunningSandbox, invocation: dict[str, Any]) -> list[Any]:
    selector = f"involvedObject.name={invocation['metadata']['name']}"
    return list(kube.core().list_namespaced_event(cluster.namespace, field_selector=selector).items)
