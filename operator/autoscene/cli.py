"""The `autoscene` command: the sandbox, uploads, the run history, and the operator itself."""

import contextlib
import enum
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from . import invocations, kube, render, timestamps, upload
from .config import Leadership, OperatorConfig, parse_job_ttl

app = typer.Typer(help="Run Actions on files uploaded to Records, as Kubernetes Jobs.", no_args_is_help=True)
# Piped output (CI logs, files) gets the room of a wide terminal rather than 80 columns.
console = Console(width=None if sys.stdout.isatty() else 160)
DEFAULT_SANDBOX = Path(".autoscene")


class ControlPlaneKind(enum.StrEnum):
    embedded = "embedded"
    real = "real"


@app.command()
def sandbox(
    video: Annotated[
        Path | None, typer.Argument(help="MP4 to upload; a generated clip when omitted.")
    ] = None,
    folder: Annotated[
        Path, typer.Option("--dir", help="Folder for the kubeconfig and the volumes.")
    ] = DEFAULT_SANDBOX,
    keep: Annotated[bool, typer.Option(help="Keep the sandbox running after the demo, for kubectl.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the invocation.")] = 300,
    control_plane: Annotated[
        ControlPlaneKind,
        typer.Option(
            help="embedded: the pure-Python API server; real: Kubernetes' own kube-apiserver, etcd and "
            "controller manager (hack/build-control-plane.sh), with a node agent and the operator deployed "
            "from manifests/.",
        ),
    ] = ControlPlaneKind.embedded,
) -> None:
    """Run the whole flow with no cluster: API server, operator, Jobs, an upload, its frames."""
    from .sandbox.demo import run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The operator runs on a thread of its own here, so kopf cannot (and need not) handle OS signals.
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
    from .sandbox.session import SandboxBusy

    stack = contextlib.ExitStack()
    try:
        running = stack.enter_context(_cluster(control_plane, folder))
    except SandboxBusy as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from error
    with stack:
        console.print(
            f"[bold]sandbox[/] API server at {running.url}, kubeconfig {running.kubeconfig}", soft_wrap=True
        )
        clip = video or _generated_clip(running.folder)
        result = run_demo(running, clip, lambda line: console.print(f"  {line}"), timeout=timeout)
        _print_invocations(running.namespace)
        frames = sorted(result.outputs.rglob("*.jpg"))
        console.print(f"\n[bold]outputs[/] {len(frames)} JPEG frames in {result.outputs}", soft_wrap=True)
        for frame in frames[:3]:
            console.print(f"  {frame.relative_to(result.outputs)}")
        if len(frames) > 3:
            console.print(f"  … {frames[-1].relative_to(result.outputs)}")
        if keep:
            console.print(
                f"\nsandbox running; try: kubectl --kubeconfig {running.kubeconfig} get invocations"
            )
            console.print("press Ctrl-C to stop")
            _wait_for_interrupt()
    if not result.succeeded:
        console.print(f"[red]the invocation did not succeed[/]: {(result.invocation.get('status') or {})}")
        raise typer.Exit(1)


@app.command("upload")
def upload_command(
    record: Annotated[str, typer.Argument(help="Name of the Record.")],
    files: Annotated[list[Path], typer.Argument(help="Files to upload.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    prefix: Annotated[str, typer.Option(help="Folder inside the record to put the files in.")] = "",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Copy files into a Record and register them (path, size, sha256), so Triggers fire.

    Against a cluster the bytes go through the Kubernetes API (a short-lived uploader Pod, a tar stream
    over exec, the sha256 checked on arrival); against a running sandbox straight into its volumes.
    """
    from . import cluster_upload
    from .sandbox.session import volumes_of

    config = kubeconfig or DEFAULT_SANDBOX / "kubeconfig"
    try:
        planned = upload.plan(files, prefix)
        kube.configure(str(config))
        volumes = volumes_of(config)
        total = sum(source.stat().st_size for source, _ in planned)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"uploading to {record}", total=total)
            advance = lambda done: progress.advance(task, done)  # noqa: E731
            if volumes is None:
                uploaded = cluster_upload.upload_via_exec(namespace, record, planned, advance)
            else:
                uploaded = upload.upload_to_folder(volumes, namespace, record, planned, advance)
    except (upload.UploadError, FileNotFoundError) as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from error
    for file in uploaded:
        console.print(f"{file.path}  {file.size} bytes  sha256:{file.sha256}")


@app.command("invocations")
def invocations_command(
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """The run history: every Invocation with its phase, duration, exit code and message."""
    kube.configure(str(kubeconfig or DEFAULT_SANDBOX / "kubeconfig"))
    _print_invocations(namespace)


@app.command()
def operator(
    all_namespaces: Annotated[bool, typer.Option("--all-namespaces", "-A")] = False,
    namespace: Annotated[list[str] | None, typer.Option("--namespace", "-n")] = None,
    liveness: Annotated[
        str | None, typer.Option(help="Health endpoint, e.g. http://0.0.0.0:8080/healthz")
    ] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics on this port.")] = None,
    job_ttl_seconds: Annotated[
        str | None, typer.Option(help="Delete finished Jobs after this many seconds ('never' keeps them).")
    ] = None,
    reconcile_seconds: Annotated[
        float, typer.Option(min=1, help="Seconds between reconciliation passes.")
    ] = OperatorConfig.reconcile_seconds,
    retention_seconds: Annotated[
        float, typer.Option(min=1, help="Seconds between applications of retention policies.")
    ] = OperatorConfig.retention_seconds,
    leader_election: Annotated[bool, typer.Option(help="Act only while holding the Lease.")] = True,
    lease_namespace: Annotated[str, typer.Option(envvar="POD_NAMESPACE")] = "default",
    lease_name: Annotated[str, typer.Option()] = "autoscene-operator",
    lease_seconds: Annotated[int, typer.Option(min=1)] = 15,
    renew_seconds: Annotated[float, typer.Option(min=0.1)] = 5,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the operator (in a cluster's Deployment, or locally against a kubeconfig)."""
    from .runtime import run_operator

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO)
    if not all_namespaces and not namespace:
        raise typer.BadParameter("give --all-namespaces or at least one --namespace")
    try:
        job_ttl = parse_job_ttl(job_ttl_seconds or "")
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--job-ttl-seconds") from error
    settings = OperatorConfig(
        namespaces=() if all_namespaces else tuple(namespace or ()),
        job_ttl_seconds=job_ttl,
        reconcile_seconds=reconcile_seconds,
        retention_seconds=retention_seconds,
        leadership=Leadership(lease_namespace, lease_name, lease_seconds, renew_seconds)
        if leader_election
        else None,
        metrics_port=metrics_port,
        liveness=liveness,
    )
    code = run_operator(settings)
    raise typer.Exit(code)


def _cluster(kind: ControlPlaneKind, folder: Path) -> Any:
    """The sandbox of that kind, not yet started; a one-line error when it cannot run here."""
    if kind is ControlPlaneKind.embedded:
        from .sandbox.session import Sandbox

        return Sandbox(folder)
    from .sandbox.controlplane import ControlPlaneUnavailable, find_binaries
    from .sandbox.realcluster import RealCluster

    try:
        find_binaries()
    except ControlPlaneUnavailable as error:
        console.print(f"[red]error:[/] {error}", soft_wrap=True)
        raise typer.Exit(1) from error
    return RealCluster(folder)


def _print_invocations(namespace: str) -> None:
    table = Table(*render.COLUMNS, title=f"invocations in {namespace}", title_justify="left")
    for row in render.invocation_rows(kube.list_custom(invocations.PLURAL, namespace), timestamps.now()):
        table.add_row(*row)
    console.print(table)


def _generated_clip(folder: Path) -> Path:
    from .sample_video import make_sample_video

    target = folder / "inputs" / "demo.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    return make_sample_video(target)


def _wait_for_interrupt() -> None:
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
