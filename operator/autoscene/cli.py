"""The `autoscene` command: the sandbox, uploads, the run history, and the operator itself."""

import contextlib
import enum
import functools
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

from . import GROUP, VERSION, invocations, kube, render, timestamps, upload
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


@app.command("runs")
def runs_command(
    record: Annotated[str | None, typer.Option("--record", "-r", help="Only this Record's runs.")] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Only this Action's runs.")] = None,
    phase: Annotated[str | None, typer.Option(help="Only runs in this phase, e.g. Failed.")] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Print the table again as runs change.")
    ] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """The run history, filtered, with full names that can be copied into other commands."""
    from . import labels, runs

    _connect(kubeconfig)
    selector = ",".join(
        f"{key}={labels.value_of(value)}"
        for key, value in ((labels.RECORD, record), (labels.ACTION, action))
        if value
    )

    def show() -> None:
        found = runs.matching(kube.list_custom(invocations.PLURAL, namespace, label_selector=selector), phase)
        rows = render.invocation_rows(found, timestamps.now())
        table = Table(*render.COLUMNS, title=f"runs in {namespace}", title_justify="left")
        # A name is never cut or wrapped: it is what the other commands take; the message gives way.
        table.columns[0].no_wrap = True
        table.columns[0].min_width = max((len(row[0]) for row in rows), default=4)
        table.columns[-1].overflow = "ellipsis"
        table.columns[-1].no_wrap = True
        for row in rows:
            table.add_row(*row)
        console.print(table)

    _api_errors(show)
    while watch:
        _api_errors(lambda: _wait_for_change(namespace, selector))
        _api_errors(show)


@app.command("run")
def run_command(
    action: Annotated[str, typer.Argument(help="The Action to run.")],
    record: Annotated[str, typer.Argument(help="The Record holding the files.")],
    files: Annotated[list[str], typer.Argument(help="Paths of files inside the Record.")],
    parameter: Annotated[
        list[str] | None,
        typer.Option("--parameter", "-p", help="KEY=VALUE for one of the Action's parameters."),
    ] = None,
    wait: Annotated[bool, typer.Option(help="Wait until every run is over, showing progress.")] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Run an Action on files of a Record now (manual Invocations); with --wait, exit 1 if any fails."""
    from . import runs

    try:
        values = runs.parse_parameters(parameter or [])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--parameter") from error
    _connect(kubeconfig)
    bodies = [runs.manual_run(namespace, action, record, path, values) for path in files]
    _api_errors(lambda: [kube.create_custom(invocations.PLURAL, body) for body in bodies])
    names = [body["metadata"]["name"] for body in bodies]
    for name in names:
        console.print(f"invocation {name} created")
    if wait:
        raise typer.Exit(_wait_for_runs(namespace, names))


@app.command("rerun")
def rerun_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation to run again.")],
    wait: Annotated[bool, typer.Option(help="Wait until the new run is over.")] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """A new run with the same Action, file, content and parameters, linked to the old one."""
    from . import runs

    _connect(kubeconfig)
    old = _invocation(namespace, invocation)
    again = runs.rerun_of(old)
    _api_errors(lambda: kube.create_custom(invocations.PLURAL, again))
    console.print(f"invocation {again['metadata']['name']} created (a re-run of {invocation})")
    if wait:
        raise typer.Exit(_wait_for_runs(namespace, [again["metadata"]["name"]]))


@app.command("logs")
def logs_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation whose log to print.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing while the run writes.")
    ] = False,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """A run's log: live from its Pod while the Pod exists; after that, the end the Invocation kept."""
    from . import jobs

    _connect(kubeconfig)
    found = _invocation(namespace, invocation)
    current = found.get("status") or {}
    job = current.get("jobName")
    pods = (
        _api_errors(
            lambda: kube.core().list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
        )
        if job
        else []
    )
    if pods:
        newest = max(pods, key=lambda pod: pod.metadata.creation_timestamp)
        stream = _api_errors(
            lambda: kube.core().read_namespaced_pod_log(
                newest.metadata.name,
                namespace,
                container=jobs.ACTION_CONTAINER,
                follow=follow,
                _preload_content=False,
            )
        )
        for chunk in stream.stream(1 << 14):
            sys.stdout.write(chunk.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    if current.get("logTail"):
        console.print(
            f"[dim]the Pods of {invocation} are gone; the end of its log, kept in the Invocation:[/]",
            highlight=False,
        )
        print(current["logTail"])
        return
    phase = current.get("phase") or "Pending"
    console.print(
        f"invocation {invocation} is {phase}: no log yet"
        + (f" ({current['message']})" if current.get("message") else "")
    )


@app.command("outputs")
def outputs_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation whose outputs to show.")],
    download: Annotated[Path | None, typer.Option(help="Copy the outputs into this folder.")] = None,
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """What a run wrote to /cos/outputs; with --download, a copy of it (through the API on a cluster,
    each file's sha256 checked against the one computed where the bytes are)."""
    from . import cluster_upload, jobs, records
    from .sandbox.session import volumes_of

    config = kubeconfig or DEFAULT_SANDBOX / "kubeconfig"
    _connect(kubeconfig)
    found = _invocation(namespace, invocation)
    spec, current = found["spec"], found.get("status") or {}
    folder = jobs.output_subpath(found["metadata"]["name"])
    reported = current.get("outputs") or {}
    console.print(
        f"{invocation} ({current.get('phase', 'Pending')}): {reported.get('count', 0)} files, "
        f"{reported.get('bytes', 0)} bytes in {folder}/ of record {spec['record']}",
        highlight=False,
    )
    if download is None:
        for path in reported.get("paths") or []:
            console.print(f"  {path}", highlight=False)
        return
    volumes = volumes_of(Path(config))
    try:
        if volumes is None:
            copied = cluster_upload.download_via_exec(namespace, spec["record"], folder, download)
        else:
            record = kube.get_custom("records", namespace, spec["record"]) or {}
            claim = records.claim_of(record) if record else None
            if claim is None:
                raise upload.UploadError(f'record "{spec["record"]}" has no volume')
            copied = upload.copy_folder(volumes / namespace / claim / folder, download)
    except upload.UploadError as error:
        console.print(f"[red]error:[/] {error}")
        raise typer.Exit(1) from error
    for file in copied:
        console.print(f"{download / file.path}  {file.size} bytes  sha256:{file.sha256}", highlight=False)


@app.command("cancel")
def cancel_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation to stop.")],
    namespace: Annotated[str, typer.Option("--namespace", "-n")] = "default",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Stop a run: the operator marks it Cancelled and deletes its Job (a finished run stays as it is)."""
    from kubernetes.client.exceptions import ApiException

    from . import runs

    _connect(kubeconfig)
    request = {"metadata": {"annotations": {runs.CANCEL: "true"}}}
    try:
        kube.custom().patch_namespaced_custom_object(
            GROUP, VERSION, namespace, invocations.PLURAL, invocation, request
        )
    except ApiException as error:
        if error.status == 404:
            _not_found(namespace, invocation)
        raise
    console.print(f"invocation {invocation}: cancellation requested")


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


def _invocation(namespace: str, name: str) -> dict[str, Any]:
    """The Invocation, or a one-line error and exit status 1."""
    found = _api_errors(lambda: kube.get_custom(invocations.PLURAL, namespace, name))
    if found is None:
        _not_found(namespace, name)
    return found


def _not_found(namespace: str, name: str) -> NoReturn:
    console.print(f'[red]error:[/] invocation "{name}" not found in namespace "{namespace}"')
    raise typer.Exit(1)


def _connect(kubeconfig: Path | None) -> None:
    """The API client for `kubeconfig` (else $KUBECONFIG, else the sandbox's); a one-line error when
    there is none."""
    config = kubeconfig or DEFAULT_SANDBOX / "kubeconfig"
    if not Path(config).exists():
        console.print(
            f"[red]error:[/] no kubeconfig at {config}: start a sandbox (`autoscene sandbox`) or give "
            "--kubeconfig / $KUBECONFIG"
        )
        raise typer.Exit(1)
    kube.configure(str(config))


T = TypeVar("T")


def _api_errors(call: Callable[[], T]) -> T:
    """`call()`, with an unreachable API server or a refusal told in one line."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        return call()
    except ApiException as error:
        console.print(f"[red]error:[/] the API server refused: {kube.message_of(error)}")
        raise typer.Exit(1) from error
    except HTTPError as error:
        host = kube.api_client().configuration.host
        console.print(
            f"[red]error:[/] cannot reach the API server at {host} (is the sandbox running?): {error}"
        )
        raise typer.Exit(1) from error


def _wait_for_change(namespace: str, selector: str) -> None:
    from kubernetes import watch

    listing = kube.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, invocations.PLURAL, label_selector=selector
    )
    version = listing["metadata"]["resourceVersion"]
    for _ in watch.Watch().stream(
        kube.custom().list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        invocations.PLURAL,
        label_selector=selector,
        resource_version=version,
        timeout_seconds=60,
    ):
        return


def _wait_for_runs(namespace: str, names: list[str]) -> int:
    """Show each run's phase until all are over; 0 when all succeeded, else 1."""
    from . import lifecycle

    phases: dict[str, str] = {}
    with console.status("waiting for the runs") as waiting:
        while True:
            for name in names:
                found = (
                    _api_errors(functools.partial(kube.get_custom, invocations.PLURAL, namespace, name)) or {}
                )
                phase = (found.get("status") or {}).get("phase", "Pending")
                if phases.get(name) != phase:
                    phases[name] = phase
                    message = (found.get("status") or {}).get("message", "")
                    console.print(f"{name}: {phase}" + (f" ({message})" if message else ""))
            done = [name for name in names if phases.get(name) in lifecycle.FINISHED]
            waiting.update(f"{len(done)} of {len(names)} runs over")
            if len(done) == len(names):
                return 0 if all(phases[name] == lifecycle.SUCCEEDED for name in names) else 1
            time.sleep(1)


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
