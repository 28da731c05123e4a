"""The `autoscene` command as a user types it."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoscene import kube, logkeeping
from autoscene.cli import app
from autoscene.sample_video import make_sample_video
from autoscene.sandbox.session import VOLUMES_MARK, FolderLock, Sandbox, wait_for

from .conftest import RunningSandbox
from .test_end_to_end import create_invocation

runner = CliRunner()
RERUN = "autoscene.io/rerun-of"
# The CLI as its entry point starts it, but with warnings logged to stderr (where a retry of the
# connection would show) and a last line there telling whether the Kubernetes client was loaded.
LAUNCHER = """
import atexit, logging, sys
logging.basicConfig(level=logging.WARNING)
atexit.register(lambda: print("kubernetes loaded:", "kubernetes" in sys.modules, file=sys.stderr))
from autoscene.cli import app
sys.argv[0] = "autoscene"
app()
"""
# Imports the CLI, then asks each command for its --help in the same process; prints on stderr, as JSON,
# which of the modules that load the Kubernetes client were loaded after each step.
HELP_PROBE = """
import json, sys
from typer.main import get_command
from autoscene.cli import app
heavy = ("kubernetes", "urllib3", "kopf", "autoscene.kube", "autoscene.invocations")
loaded = {"import": [name for name in heavy if name in sys.modules]}
command = get_command(app)
for name in command.commands:
    try:
        command([name, "--help"], prog_name="autoscene")
    except SystemExit as done:
        assert done.code == 0, (name, done.code)
    loaded[name] = [module for module in heavy if module in sys.modules]
print(json.dumps(loaded), file=sys.stderr)
"""


def upload(sandbox: RunningSandbox, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["upload", *args, "--kubeconfig", str(sandbox.sandbox.kubeconfig)])
    return result.exit_code, result.output


def test_upload_registers_files_and_fires_the_trigger(sandbox: RunningSandbox, tmp_path: Path) -> None:
    clip = make_sample_video(tmp_path / "cam.mp4", width=64, height=48, frames=6)
    code, output = upload(sandbox, "recordings", str(clip), "--prefix", "day1")
    assert code == 0, output
    assert "day1/cam.mp4" in output and "sha256:" in output
    run = sandbox.run_of("day1/cam.mp4")
    assert run["status"]["phase"] == "Succeeded"
    history = runner.invoke(app, ["invocations", "--kubeconfig", str(sandbox.sandbox.kubeconfig)])
    assert history.exit_code == 0
    assert run["metadata"]["name"] in history.output and "Succeeded" in history.output


def test_upload_errors_are_clear_and_copy_nothing(sandbox: RunningSandbox, tmp_path: Path) -> None:
    clip = tmp_path / "ok.mp4"
    clip.write_bytes(b"not even a video")
    cases = {
        ("recordings", str(tmp_path / "missing.mp4")): "missing.mp4: no such file",
        ("recordings", str(clip), "--prefix", "../up"): "escapes the record",
        ("recordings", str(clip), "--prefix", "/abs"): "not a relative path",
        (
            "no-such-record",
            str(clip),
        ): f'record "no-such-record" not found in namespace "{sandbox.namespace}"',
    }
    for args, message in cases.items():
        code, output = upload(sandbox, *args)
        assert code == 1, output
        assert message in " ".join(output.split()), output
    files = sandbox.sandbox.volumes / sandbox.namespace / "record-recordings" / "files"
    assert not files.exists() or not any(files.rglob("*"))


def run_sandbox(folder: Path, timeout: float, columns: int = 300) -> subprocess.CompletedProcess[str]:
    """`autoscene sandbox --dir folder` as a user types it, to its end."""
    executable = Path(sys.executable).with_name("autoscene")
    return subprocess.run(
        [str(executable), "sandbox", "--dir", str(folder)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": str(columns)},
    )


def test_the_demo_runs_end_to_end_as_a_user_types_it(tmp_path: Path) -> None:
    result = run_sandbox(tmp_path / "demo", timeout=300, columns=200)
    assert result.returncode == 0, result.stdout + result.stderr
    said = " ".join(result.stdout.split())
    volumes = tmp_path / "demo" / "volumes" / "default"
    # The chain: the frames the run wrote, registered again in the frames Record, then a contact sheet.
    written = list((volumes / "record-recordings" / "outputs").rglob("frame_*.jpg"))
    registered = list((volumes / "record-recordings-frames" / "files").rglob("frame_*.jpg"))
    assert written and len(registered) == len(written)
    assert (
        f"{len(registered)} JPEG frames in {volumes / 'record-recordings-frames' / 'files' / 'demo'}" in said
    )
    sheet = volumes / "record-recordings-frames" / "files" / "contact-sheets" / "demo" / "contact_sheet.jpg"
    assert f"contact sheet {sheet}" in said and sheet.is_file()
    rows = [line for line in result.stdout.splitlines() if "Succeeded" in line]
    assert any("extract-images" in row for row in rows) and any("contact-sheet" in row for row in rows)


def test_a_file_no_trigger_of_the_demo_takes_is_refused_at_once(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a video\n")
    executable = Path(sys.executable).with_name("autoscene")
    result = subprocess.run(
        [str(executable), "sandbox", "--dir", str(tmp_path / "demo"), str(notes)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "300"},
    )
    said = result.stdout.strip().splitlines()[-1]
    assert result.returncode == 1, result.stdout + result.stderr
    assert (
        said.startswith("error: no Trigger of the demo runs on 'notes.txt': they take ") and "*.mp4" in said
    )
    assert "Traceback" not in result.stdout + result.stderr, result.stderr


@pytest.mark.parametrize("stop", ["sigterm", "ctrl-c"])
def test_a_kept_sandbox_stops_on_sigterm_with_its_pods_processes(tmp_path: Path, stop: str) -> None:
    """`kill` (what `kill %1` sends a sandbox started with `&`) stops it as Ctrl-C does (SIGINT to the
    terminal's whole process group): a Pod's process still running goes too, and so does the Job
    controller's process, quietly; the folder is free for the next sandbox."""
    folder = tmp_path / "kept"
    executable = Path(sys.executable).with_name("autoscene")
    kept = subprocess.Popen(
        [str(executable), "sandbox", "--keep", "--dir", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        start_new_session=True,  # a process group of its own, as a terminal's foreground job
    )
    try:
        assert kept.stdout is not None
        for line in kept.stdout:
            if "to stop" in line:
                break
        else:
            pytest.fail("the sandbox ended before it said how to stop it")
        kube.configure(str(folder / "kubeconfig"))
        marker = f"sleeping-{os.getpid()}"
        pod = {
            "metadata": {"name": "sleeper"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "main",
                        "image": "busybox:1.36.1",
                        "command": ["sh", "-c", f"sleep 600; echo {marker}"],
                    }
                ],
            },
        }
        kube.core().create_namespaced_pod("default", pod)

        def sleeping() -> bool | None:
            found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()
            return True if found else None

        wait_for(sleeping, 60, "the Pod's process")
        controller = f"controllerprocess {folder / 'kubeconfig'}"
        assert subprocess.run(["pgrep", "-f", controller], capture_output=True).returncode == 0
        if stop == "sigterm":
            kept.terminate()
        else:
            os.killpg(kept.pid, signal.SIGINT)
        rest = kept.communicate(timeout=60)[0]
        assert "Traceback" not in rest, rest
        assert subprocess.run(["pgrep", "-f", marker], capture_output=True).returncode == 1  # none left
        assert subprocess.run(["pgrep", "-f", controller], capture_output=True).returncode == 1
        lock = FolderLock(folder)
        lock.acquire()  # free: the next sandbox may start here
        lock.release()
    finally:
        if kept.poll() is None:
            kept.kill()


def test_a_second_sandbox_in_the_same_folder_refuses_and_leaves_the_first_alone(
    sandbox: RunningSandbox,
) -> None:
    folder = sandbox.sandbox.folder
    kubeconfig = (folder / "kubeconfig").read_text()
    executable = Path(sys.executable).with_name("autoscene")
    for kind in ("embedded", "real"):
        result = subprocess.run(
            [str(executable), "sandbox", "--dir", str(folder), "--control-plane", kind],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "300", "AUTOSCENE_CONTROL_PLANE_DIR": str(folder / "none")},
        )
        said = " ".join(result.stdout.split())
        assert result.returncode == 1, said
        assert kind == "real" or f"a sandbox is already running in {folder} (pid {os.getpid()})" in said
    assert (folder / "kubeconfig").read_text() == kubeconfig
    assert kube.list_custom("records", sandbox.namespace)  # the first one still answers
    assert sandbox.sandbox.volumes.is_dir()  # and keeps its volumes


def test_a_new_sandbox_in_a_folder_starts_without_the_volumes_of_the_last(tmp_path: Path) -> None:
    """The API server starts empty: files left by the last sandbox in the folder belong to Records that
    are gone, and would show under a new Record of the same name with counts that do not match them."""
    folder = tmp_path / "reused"
    with Sandbox(folder, with_operator=False) as first:
        left = first.volumes / "default" / "record-recordings" / "files" / "old.mp4"
        left.parent.mkdir(parents=True)
        left.write_bytes(b"x")
    with Sandbox(folder, with_operator=False) as second:
        assert [path.name for path in second.volumes.iterdir()] == [VOLUMES_MARK]


def test_a_volumes_folder_no_sandbox_made_is_refused_and_left_alone(tmp_path: Path) -> None:
    """`--dir` pointed at a folder of the user's own that has a `volumes/`: the sandbox does not start
    there, says why in one line, and nothing of the folder is touched."""
    theirs = tmp_path / "project" / "volumes" / "db" / "data.bin"
    theirs.parent.mkdir(parents=True)
    theirs.write_bytes(b"precious")
    result = run_sandbox(tmp_path / "project", timeout=120)
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and result.stdout.count("\n") == 1, result.stdout + result.stderr
    assert f"{theirs.parents[1]} holds files no sandbox made" in said
    assert theirs.read_bytes() == b"precious" and [p.name for p in theirs.parents[1].iterdir()] == ["db"]


def test_the_real_control_plane_without_its_binaries_says_how_to_build_them(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("autoscene")
    result = subprocess.run(
        [str(executable), "sandbox", "--dir", str(tmp_path / "real"), "--control-plane", "real"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "300", "AUTOSCENE_CONTROL_PLANE_DIR": str(tmp_path / "empty")},
    )
    said = " ".join(result.stdout.split())
    assert result.returncode == 1 and result.stdout.count("\n") == 1, result.stdout + result.stderr
    assert "no etcd, kube-apiserver, kube-controller-manager, kubectl in" in said
    assert "hack/build-control-plane.sh" in said and "Traceback" not in result.stderr


def test_upload_through_the_api_when_the_kubeconfig_is_not_a_sandboxs(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # A kubeconfig with no sandbox beside it is a cluster's: the bytes go through an uploader Pod.
    elsewhere = tmp_path / "elsewhere" / "kubeconfig"
    elsewhere.parent.mkdir()
    elsewhere.write_text(sandbox.sandbox.kubeconfig.read_text())
    clip = make_sample_video(tmp_path / "via api.mp4", width=64, height=48, frames=5)
    result = runner.invoke(app, ["upload", "recordings", str(clip), "--kubeconfig", str(elsewhere)])
    assert result.exit_code == 0, result.output
    run = sandbox.run_of("via api.mp4")
    assert run["status"]["phase"] == "Succeeded"
    landed = sandbox.sandbox.volumes / sandbox.namespace / "record-recordings" / "files" / "via api.mp4"
    assert landed.read_bytes() == clip.read_bytes()
    pods = (
        kube.core().list_namespaced_pod(sandbox.namespace, label_selector="autoscene.io/role=uploader").items
    )
    assert pods == []


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_reads_the_run_history_from_the_sandbox(sandbox: RunningSandbox, tmp_path: Path) -> None:
    clip = make_sample_video(tmp_path / "seen by kubectl.mp4", width=64, height=48, frames=4)
    sandbox.upload("recordings", clip)
    name = sandbox.run_of(clip.name)["metadata"]["name"]
    kubeconfig = str(sandbox.sandbox.kubeconfig)
    table = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "invocations"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    header, row = table.splitlines()[0].split(), table.splitlines()[1]
    assert header == ["NAME", "ACTION", "RECORD", "FILE", "PHASE", "DURATION", "AGE"]
    assert row.startswith(name) and "extract-images" in row and "Succeeded" in row
    wide = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, "get", "inv", "-o", "wide"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "extracted 4 frames" in wide and "auto-extract-images" in wide


def test_the_operators_flags_become_one_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    from autoscene import runtime
    from autoscene.config import Leadership, OperatorConfig

    seen: list[OperatorConfig] = []
    monkeypatch.setattr(runtime, "run_operator", lambda settings: seen.append(settings) or 0)
    monkeypatch.setenv("POD_NAMESPACE", "autoscene-system")
    done = runner.invoke(
        app,
        ["operator", "-n", "lab", "-n", "field", "--job-ttl-seconds", "never", "--reconcile-seconds", "10"],
    )
    assert done.exit_code == 0, done.output
    assert seen == [
        OperatorConfig(
            namespaces=("lab", "field"),
            job_ttl_seconds=None,
            reconcile_seconds=10,
            leadership=Leadership("autoscene-system"),
        )
    ]
    refused = runner.invoke(app, ["operator", "-A", "--job-ttl-seconds", "soon"])
    assert refused.exit_code != 0 and "whole number of seconds" in refused.output  # (the box may wrap it)
    assert runner.invoke(app, ["operator"]).exit_code != 0  # no namespace given, and not -A


def cli(sandbox: RunningSandbox, *args: str) -> tuple[int, str]:
    result = runner.invoke(app, [*args, "--kubeconfig", str(sandbox.sandbox.kubeconfig)])
    return result.exit_code, result.output


def test_run_runs_and_rerun_from_the_command_line(sandbox: RunningSandbox, tmp_path: Path) -> None:
    clip = make_sample_video(tmp_path / "by-hand.mp4", width=64, height=48, frames=6)
    sandbox.upload("recordings", clip)
    first = sandbox.run_of(clip.name)
    code, output = cli(
        sandbox, "run", "extract-images", "recordings", clip.name, "-p", "format=png", "--wait"
    )
    assert code == 0, output
    [name] = [line.split()[1] for line in output.splitlines() if line.endswith(" created")]
    assert f"{name}: Succeeded" in output
    manual = sandbox.invocation(name)
    assert manual is not None and manual["spec"]["parameters"] == {"format": "png"}
    assert list((sandbox.outputs_of(manual) / "by-hand").glob("*.png"))

    code, output = cli(sandbox, "runs", "-a", "extract-images", "--phase", "succeeded")
    assert code == 0 and name in output and first["metadata"]["name"] in output
    code, output = cli(sandbox, "runs", "-r", "no-such-record")  # a misspelt name is said, not an empty table
    assert code == 1 and output.strip() == (
        f'error: no Record "no-such-record" in namespace {sandbox.namespace}, so no runs of it'
    ), output
    code, output = cli(sandbox, "runs", "-r", "recordings", "--phase", "cancelled")
    assert code == 0 and output.strip() == f"no runs in {sandbox.namespace} match", output

    code, output = cli(sandbox, "rerun", name, "--wait")
    assert code == 0, output
    [again] = [
        run for run in sandbox.invocations() if (run["metadata"].get("annotations") or {}).get(RERUN) == name
    ]
    assert again["spec"] == manual["spec"] and again["status"]["phase"] == "Succeeded"
    code, output = cli(sandbox, "rerun", "no-such-run")
    assert code == 1 and 'invocation "no-such-run" not found' in output
    # For scripts: the names `kubectl get -o name` would print, the List `-o json` prints; `rerun` takes
    # several, in either form, and one it cannot run again stops none of the others.
    code, output = cli(sandbox, "runs", "--phase", "succeeded", "-o", "name")
    names = output.splitlines()
    assert code == 0 and f"invocation.autoscene.io/{name}" in names, output
    code, output = cli(sandbox, "runs", "--phase", "succeeded", "-o", "json")
    listed = json.loads(output)
    assert listed["kind"] == "List" and {run["metadata"]["name"] for run in listed["items"]} == {
        line.rsplit("/", 1)[1] for line in names
    }
    code, output = cli(
        sandbox, "rerun", f"invocation.autoscene.io/{name}", "no-such-run", first["metadata"]["name"]
    )
    assert code == 1 and 'invocation "no-such-run" not found' in output
    assert output.count(" created (a re-run of ") == 2, output
    # New content at the same path: a re-run would record the old sha256 beside the new bytes.
    changed = make_sample_video(tmp_path / "changed" / clip.name, width=64, height=48, frames=4, seed=9)
    sandbox.upload("recordings", changed)
    triggered = first["metadata"]["name"]  # a run of the content it names (a manual run names none)
    code, output = cli(sandbox, "rerun", triggered)
    said = " ".join(output.split())
    assert code == 1 and f'{clip.name} in record "recordings" has new content since {triggered} ran' in said
    reruns = [run for run in sandbox.invocations() if (run["metadata"].get("annotations") or {}).get(RERUN)]
    assert len(reruns) == 3  # none made now
    code, output = cli(sandbox, "run", "extract-images", "recordings", clip.name, "-p", "no-equals-sign")
    assert code != 0 and "KEY=VALUE" in output


def test_the_run_table_keeps_every_column_and_cuts_only_the_message() -> None:
    """On a narrow terminal, with a long message: every column whole, names never cut (the other
    commands take them), the message shortened with an ellipsis."""
    from datetime import UTC, datetime

    from rich.console import Console

    from autoscene import cli as commands
    from autoscene import render

    name = "auto-extract-images-a-long-recording-name-0123456789-f5b1e2d3c4"
    run = {
        "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"action": "extract-images", "record": "recordings", "file": "day1/cam0.mp4"},
        "status": {"phase": "Failed", "exitCode": 3, "message": "not a readable video: " + "why " * 60},
    }
    rows = render.invocation_rows([run], datetime(2026, 1, 1, 0, 5, tzinfo=UTC))
    for width in (160, 200):
        screen = Console(width=width, record=True)
        screen.print(commands._invocation_table(rows, "runs", width))
        text = screen.export_text()
        assert all(column in text for column in render.COLUMNS), text
        assert name in text and "day1/cam0.mp4" in text and "Failed" in text
        assert "…" in text and max(len(line) for line in text.splitlines()) <= width


def test_cancel_stops_a_run_and_deletes_its_job(sandbox: RunningSandbox, tmp_path: Path) -> None:
    (tmp_path / "any.bin").write_bytes(b"any")
    sandbox.upload("recordings", tmp_path / "any.bin")
    slow = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Action",
        "metadata": {"name": "slow", "namespace": sandbox.namespace},
        "spec": {"image": "busybox:1.36.1", "command": ["sh", "-c", "echo started the long part; sleep 300"]},
    }
    assert kube.create_custom("actions", slow)
    code, output = cli(sandbox, "run", "slow", "recordings", "any.bin")
    assert code == 0, output
    [name] = [line.split()[1] for line in output.splitlines() if line.endswith(" created")]

    def running() -> dict | None:  # type: ignore[type-arg]
        found = sandbox.invocation(name) or {}
        return found if (found.get("status") or {}).get("phase") == "Running" else None

    from autoscene.sandbox.session import wait_for

    run = wait_for(running, 60, "the slow run to start")
    job = run["status"]["jobName"]

    def first_line_written() -> bool | None:
        pods = kube.core().list_namespaced_pod(sandbox.namespace, label_selector=f"job-name={job}").items
        logs = [kube.core().read_namespaced_pod_log(pod.metadata.name, sandbox.namespace) for pod in pods]
        return any("started the long part" in log for log in logs) or None

    wait_for(first_line_written, 30, "the action's first line")
    code, output = cli(sandbox, "cancel", name)
    assert code == 0 and "cancellation requested" in output, output
    cancelled = sandbox.finished(name)
    assert cancelled["status"]["phase"] == "Cancelled"
    [condition] = cancelled["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Cancelled")
    # What it wrote before it was stopped is kept on the Record's volume, as a finished run's log.
    claim = (kube.get_custom("records", sandbox.namespace, "recordings") or {})["status"]["claimName"]
    kept = sandbox.sandbox.volumes / sandbox.namespace / claim / logkeeping.log_path(name)
    wait_for(lambda: kept.is_file() or None, 30, "the cancelled run's log kept")
    assert kept.read_text() == "started the long part\n"
    wait_for(
        lambda: (
            not any(j.metadata.name == job for j in kube.batch().list_namespaced_job(sandbox.namespace).items)
            or None
        ),
        30,
        "the job to be deleted",
    )
    code, output = cli(sandbox, "cancel", "no-such-run")
    assert code == 1 and 'invocation "no-such-run" not found' in output
    code, output = cli(sandbox, "cancel", run["metadata"]["name"])  # over already: said, not requested
    assert code == 1 and "is already Cancelled: there is nothing to cancel" in " ".join(output.split())


def test_the_cli_is_a_kubectl_plugin(sandbox: RunningSandbox) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    plugins = Path(sys.executable).parent
    done = subprocess.run(
        [kubectl, "autoscene", "runs", "--kubeconfig", str(sandbox.sandbox.kubeconfig)],
        env={**os.environ, "PATH": f"{plugins}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "runs in default" in done.stdout


def test_logs_come_from_the_pod_and_after_it_from_the_invocation(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    clip = make_sample_video(tmp_path / "logged.mp4", width=64, height=48, frames=6)
    sandbox.upload("recordings", clip)
    run = sandbox.run_of(clip.name)
    name = run["metadata"]["name"]
    code, output = cli(sandbox, "logs", name)
    assert code == 0 and "extracted 6 frames" in output, output
    # Once the Job and its Pods are gone, the end of the log the Invocation kept.
    kube.batch().delete_namespaced_job(
        run["status"]["jobName"], sandbox.namespace, propagation_policy="Foreground"
    )
    from autoscene.sandbox.session import wait_for

    wait_for(
        lambda: (
            not kube.core().list_namespaced_pod(sandbox.namespace, label_selector=f"job-name={name}").items
            or None
        ),
        30,
        "the pods to go",
    )
    code, output = cli(sandbox, "logs", name)
    assert code == 0 and "are gone" in output and "extracted 6 frames" in output, output
    # Neither kept on the volume nor in the Invocation (a Job's deadline deletes its Pods before the
    # log is read): said, and an error.
    kept = wait_for(
        lambda: list(sandbox.sandbox.volumes.glob(f"*/*/{logkeeping.log_path(name)}")) or None,
        30,
        f"the log of {name} kept on the volume",
    )
    for path in kept:
        path.unlink()
    kube.patch_custom_status("invocations", sandbox.namespace, name, {"logTail": None})
    code, output = cli(sandbox, "logs", name)
    said = " ".join(output.split())
    assert code == 1 and said.startswith(f"error: invocation {name} is Succeeded and no log of it was kept")
    code, output = cli(sandbox, "logs", "no-such-run")
    assert code == 1 and 'invocation "no-such-run" not found' in output


def test_outputs_are_listed_and_downloaded_with_their_sha256(sandbox: RunningSandbox, tmp_path: Path) -> None:
    import hashlib

    clip = make_sample_video(tmp_path / "out.mp4", width=64, height=48, frames=6)
    sandbox.upload("recordings", clip)
    run = sandbox.run_of(clip.name)
    name = run["metadata"]["name"]
    code, output = cli(sandbox, "outputs", name)
    assert code == 0 and f"{run['status']['outputs']['count']} files" in output, output
    code, output = cli(sandbox, "outputs", name, "--download", str(tmp_path / "copy"))
    assert code == 0, output
    source = sandbox.outputs_of(run)
    originals = {
        file.relative_to(source).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in source.rglob("*")
        if file.is_file()
    }
    copies = {
        file.relative_to(tmp_path / "copy").as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in (tmp_path / "copy").rglob("*")
        if file.is_file()
    }
    assert copies == originals and len(originals) >= 7  # 6 frames and the manifest
    assert all(f"sha256:{digest}" in output for digest in originals.values())

    # An action that writes no summary (any image but ours): what its folder holds is listed.
    wc = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Action",
        "metadata": {"name": "count-bytes"},
        "spec": {
            "image": "busybox:1.36.1",
            "command": ["sh", "-c", 'printf 12345 > "$OUTPUT_FOLDER/size.txt"'],
        },
    }
    sandbox.apply([wc])
    create_invocation(sandbox, "counted", action="count-bytes", file=clip.name)
    assert sandbox.finished("counted")["status"]["phase"] == "Succeeded"
    code, output = cli(sandbox, "outputs", "counted")
    said = " ".join(output.split())
    assert (
        code == 0
        and "counted (Succeeded): 1 files, 5 bytes in outputs/counted/" in said
        and "size.txt" in said
    )


def autoscene(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", LAUNCHER, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def kubeconfig_at(path: Path, port: int) -> Path:
    """A kubeconfig whose one context names an API server on this local port."""
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "u", "user": {}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "current-context": "c",
    }
    path.write_text(json.dumps(config))
    return path


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error the command printed, checked to be a single line with nothing on stderr but the
    launcher's note: no traceback, no retried connection."""
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("\n") == 1, done.stdout
    assert done.stderr.splitlines()[:-1] == [], done.stderr
    return done.stdout.strip()


def test_help_and_the_import_of_the_cli_load_no_kubernetes_client(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stderr.splitlines()[-1])
    assert {"import", "runs", "logs", "upload", "operator", "sandbox"} <= loaded.keys()
    assert all(modules == [] for modules in loaded.values()), loaded
    assert "Usage: autoscene runs" in done.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["runs"],
        ["invocations"],
        ["run", "extract-images", "recordings", "a.mp4"],
        ["cancel", "some-run"],
        ["logs", "some-run"],
        ["upload", "recordings", "clip.mp4"],
    ],
)
def test_an_unreachable_api_server_is_one_line_saying_where_it_looked(
    command: list[str], tmp_path: Path
) -> None:
    (tmp_path / "clip.mp4").write_bytes(b"bytes")
    port = closed_port()
    kubeconfig = kubeconfig_at(tmp_path / "cluster" / "kubeconfig", port)
    error = one_line(autoscene(*command, "--kubeconfig", kubeconfig, cwd=tmp_path))
    assert error == (
        f"error: cannot reach the API server at http://127.0.0.1:{port} (kubeconfig {kubeconfig}): "
        "Connection refused; no sandbox is running in .autoscene"
    )


def test_a_sandboxs_kubeconfig_tells_whether_that_sandbox_runs(tmp_path: Path) -> None:
    folder = tmp_path / "sandbox"
    lock = FolderLock(folder)
    lock.acquire()  # a sandbox ran here, and stopped
    lock.release()
    port = closed_port()
    kubeconfig = kubeconfig_at(folder / "kubeconfig", port)
    stopped = autoscene("runs", "--kubeconfig", kubeconfig, cwd=tmp_path)
    assert one_line(stopped) == (
        f"error: no sandbox is running in {folder} (kubeconfig {kubeconfig}): "
        f"start it with `autoscene sandbox --keep --dir {folder}`"
    )
    assert stopped.stderr.endswith("kubernetes loaded: False\n")  # told from the folder alone
    lock.acquire()  # this process is now the sandbox, running but not answering
    try:
        hung = autoscene("logs", "some-run", "--kubeconfig", kubeconfig, cwd=tmp_path)
    finally:
        lock.release()
    assert one_line(hung) == (
        f"error: cannot reach the API server at http://127.0.0.1:{port} (kubeconfig {kubeconfig}): "
        f"Connection refused; a sandbox is running in {folder} (pid {os.getpid()})"
    )


def test_a_missing_or_unreadable_kubeconfig_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    done = runner.invoke(app, ["runs", "--kubeconfig", str(missing)])
    assert done.exit_code == 1 and done.output.count("\n") == 1, done.output
    assert done.output.startswith(f"error: no kubeconfig at {missing}: start a sandbox")
    for text, reason in (
        ("", "is empty"),
        ("clusters: [\n", "while parsing"),
        ("kind: Config\n", "current-context"),
    ):
        broken = tmp_path / "broken"
        broken.write_text(text)
        done = runner.invoke(app, ["invocations", "--kubeconfig", str(broken)])
        assert done.exit_code == 1 and done.output.count("\n") == 1, done.output
        assert (
            done.output.startswith(f"error: cannot use the kubeconfig at {broken}: ")
            and reason in done.output
        )


def test_unknown_names_are_one_line_and_create_nothing(sandbox: RunningSandbox) -> None:
    cases = [
        (("run", "no-such-action", "recordings", "a.mp4"), 'action "no-such-action"'),
        (("run", "extract-images", "no-such-record", "a.mp4"), 'record "no-such-record"'),
        *(
            ((command, "no-such-run"), 'invocation "no-such-run"')
            for command in ("rerun", "cancel", "logs", "outputs")
        ),
    ]
    for args, unknown in cases:
        code, output = cli(sandbox, *args)
        assert (code, output) == (1, f'error: {unknown} not found in namespace "{sandbox.namespace}"\n'), args
    # A file the Record does not hold would make a Job that fails "no such file": refused first.
    code, output = cli(sandbox, "run", "extract-images", "recordings", "missing.mp4")
    said = " ".join(output.split())
    expected = (
        'missing.mp4 is not a file of record "recordings": upload it first (autoscene upload recordings FILE)'
    )
    assert (code, said) == (1, f"error: {expected}")
    assert sandbox.invocations() == []


def test_every_commands_summary_is_one_line_so_the_help_never_breaks_it() -> None:
    """`autoscene --help` prints each command's first docstring paragraph as written, line breaks kept:
    one written over two lines showed cut in the middle of a sentence."""
    for command in app.registered_commands:
        assert command.callback is not None and command.callback.__doc__, command.name
        summary = command.callback.__doc__.strip().split("\n\n")[0]
        assert "\n" not in summary, f"{command.name}: {summary}"


def test_the_namespace_is_the_kubeconfig_contexts_unless_given(
    sandbox: RunningSandbox, tmp_path: Path
) -> None:
    """As kubectl: without -n, a command works in the current context's namespace, so an upload never
    lands in "default" when the context names another."""
    import yaml

    config = yaml.safe_load(sandbox.sandbox.kubeconfig.read_text())
    [context] = [one for one in config["contexts"] if one["name"] == config["current-context"]]
    context["context"]["namespace"] = "elsewhere"
    elsewhere = tmp_path / "kubeconfig-elsewhere"
    elsewhere.write_text(yaml.safe_dump(config))
    kube.core().create_namespace({"metadata": {"name": "elsewhere"}})
    clip = make_sample_video(tmp_path / "cam.mp4", width=64, height=48, frames=6)

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, [*args, "--kubeconfig", str(elsewhere)])
        return result.exit_code, " ".join(result.output.split())

    assert run("upload", "recordings", str(clip)) == (
        1,
        'error: record "recordings" not found in namespace "elsewhere"',
    )
    assert run("runs") == (0, "no runs in elsewhere match")
    code, output = run("upload", "recordings", str(clip), "-n", sandbox.namespace)
    assert code == 0 and "cam.mp4" in output
    assert sandbox.run_of("cam.mp4")["status"]["phase"] == "Succeeded"
    code, output = run("runs", "-n", sandbox.namespace)
    assert code == 0 and f"runs in {sandbox.namespace}" in output and "Succeeded" in output


def test_an_unknown_phase_is_refused_naming_the_phases(sandbox: RunningSandbox) -> None:
    code, output = cli(sandbox, "runs", "--phase", "Bogus")
    said = " ".join(output.replace("│", " ").split())
    assert code == 2 and "'Bogus' is not one of 'pending', 'queued', 'running', 'succeeded', 'failed'" in said
