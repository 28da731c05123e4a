"""The `autoscene` command as a user types it."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from autoscene import kube
from autoscene.cli import app
from autoscene.sample_video import make_sample_video

from .conftest import RunningSandbox

runner = CliRunner()


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
        ("no-such-record", str(clip)): 'record "no-such-record" does not exist',
    }
    for args, message in cases.items():
        code, output = upload(sandbox, *args)
        assert code == 1, output
        assert message in " ".join(output.split()), output
    files = sandbox.sandbox.volumes / sandbox.namespace / "record-recordings" / "files"
    assert not files.exists() or not any(files.rglob("*"))


def test_the_demo_runs_end_to_end_as_a_user_types_it(tmp_path: Path) -> None:
    executable = Path(sys.executable).with_name("autoscene")
    result = subprocess.run(
        [str(executable), "sandbox", "--dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Succeeded" in result.stdout
    frames = list((tmp_path / "demo" / "volumes").rglob("frame_*.jpg"))
    assert frames and f"{len(frames)} JPEG frames" in result.stdout


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
    code, output = cli(sandbox, "runs", "-r", "no-such-record")
    assert code == 0 and name not in output

    code, output = cli(sandbox, "rerun", name, "--wait")
    assert code == 0, output
    [again] = [
        run
        for run in sandbox.invocations()
        if (run["metadata"].get("annotations") or {}).get("autoscene.io/rerun-of") == name
    ]
    assert again["spec"] == manual["spec"] and again["status"]["phase"] == "Succeeded"
    code, output = cli(sandbox, "rerun", "no-such-run")
    assert code == 1 and 'invocation "no-such-run" not found' in output
    code, output = cli(sandbox, "run", "extract-images", "recordings", clip.name, "-p", "no-equals-sign")
    assert code != 0 and "KEY=VALUE" in output


def test_cancel_stops_a_run_and_deletes_its_job(sandbox: RunningSandbox) -> None:
    slow = {
        "apiVersion": "autoscene.io/v1alpha1",
        "kind": "Action",
        "metadata": {"name": "slow", "namespace": sandbox.namespace},
        "spec": {"image": "busybox:1.36.1", "command": ["sleep", "300"]},
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
    code, output = cli(sandbox, "cancel", name)
    assert code == 0 and "cancellation requested" in output, output
    cancelled = sandbox.finished(name)
    assert cancelled["status"]["phase"] == "Cancelled"
    [condition] = cancelled["status"]["conditions"]
    assert (condition["status"], condition["reason"]) == ("False", "Cancelled")
    job = run["status"]["jobName"]
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
