"""The `autoscene` command: the sandbox, uploads, the run history, and the operator itself."""

import contextlib
import enum
import fcntl
import functools
import json
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from . import GROUP, VERSION, lifecycle
from .config import Leadership, OperatorConfig, parse_job_ttl

# This module loads typer, rich's console and the standard library only, so that `--help`, and an error
# found before the API server is asked, come at once: the package's modules that load the Kubernetes
# client (about a second of imports) are imported inside the commands, after `_connect` has checked the
# kubeconfig and the sandbox.

app = typer.Typer(help="Run Actions on files uploaded to Records, as Kubernetes Jobs.", no_args_is_help=True)
# Piped output (CI logs, files) gets the room of a wide terminal rather than 80 columns, unless
# COLUMNS says how wide.
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)
DEFAULT_SANDBOX = Path(".autoscene")
# The plurals in the API's paths (`invocations.PLURAL` would load the operator's whole core).
INVOCATIONS, ACTIONS, RECORDS = "invocations", "actions", "records"
NamespaceOption = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="The namespace; by default the kubeconfig context's."),
]
# The kubeconfig this command connected with, for an error to say where it looked.
_kubeconfig_in_use: Path | None = None


class RunPhase(enum.StrEnum):
    """An Invocation's phases (crds/invocations.yaml), for `runs --phase`."""

    Pending = lifecycle.PENDING
    Queued = lifecycle.QUEUED
    Running = lifecycle.RUNNING
    Succeeded = lifecycle.SUCCEEDED
    Failed = lifecycle.FAILED
    Cancelled = lifecycle.CANCELLED


class RunsOutput(enum.StrEnum):
    """How `runs` prints what it found."""

    table = "table"
    name = "name"
    json = "json"


class ControlPlaneKind(enum.StrEnum):
    embedded = "embedded"
    real = "real"


@app.command()
def sandbox(
    video: Annotated[
        Path | None, typer.Argument(help="MP4 to upload; a generated clip when omitted.")
    ] = None,
    folder: Annotated[
        Path,
        typer.Option(
            "--dir",
            help="Folder for the kubeconfig and the volumes; an earlier sandbox's volumes there are removed.",
        ),
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
    from .sandbox.demo import NothingFires, run_demo

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # The operator runs on a thread of its own here, so kopf cannot (and need not) handle OS signals.
    logging.getLogger("kopf._core.reactor.running").setLevel(logging.ERROR)
    from .sandbox.session import SandboxBusy

    # `kill` (SIGTERM, also what `kill %1` sends to a sandbox started with `&`) stops it as Ctrl-C
    # does: its Pods' processes and folders go with it.
    signal.signal(signal.SIGTERM, _interrupt)
    stack = contextlib.ExitStack()
    try:
        running = stack.enter_context(_cluster(control_plane, folder))
    except SandboxBusy as error:
        _fail(str(error))
    with stack:
        console.print(
            f"[bold]sandbox[/] API server at {running.url}, kubeconfig {running.kubeconfig}", soft_wrap=True
        )
        clip = video or _generated_clip(running.folder)
        try:
            result = run_demo(running, clip, lambda line: console.print(f"  {line}"), timeout=timeout)
        except NothingFires as error:
            _fail(str(error))
        _print_invocations(running.namespace)
        frames = sorted(result.outputs.glob("frame_*.jpg"))
        console.print(f"\n[bold]frames[/] {len(frames)} JPEG frames in {result.outputs}", soft_wrap=True)
        for frame in frames[:3]:
            console.print(f"  {frame.relative_to(result.outputs)}")
        if len(frames) > 3:
            console.print(f"  … {frames[-1].relative_to(result.outputs)}")
        if result.contact_sheet is not None:
            console.print(f"[bold]contact sheet[/] {result.contact_sheet}", soft_wrap=True)
        if keep:
            console.print(
                f"\nsandbox running; try: kubectl --kubeconfig {running.kubeconfig} get invocations"
            )
            console.print("press Ctrl-C (or kill it) to stop")
            _wait_for_interrupt()
    if not result.succeeded:
        failed = next(
            run
            for run in (result.invocation, result.sheet_run)
            if run is None or run.get("status", {}).get("phase") != "Succeeded"
        )
        if failed is None:
            said = "the contact sheet's run never came"
        else:
            run_status = failed.get("status") or {}
            said = f"{failed['metadata']['name']} {run_status.get('phase')} ({run_status.get('reason')}): "
            said += str(run_status.get("message"))
        console.print(f"[red]the chain did not succeed[/]: {said}", soft_wrap=True)
        raise typer.Exit(1)


@app.command("upload")
def upload_command(
    record: Annotated[str, typer.Argument(help="Name of the Record.")],
    files: Annotated[list[Path], typer.Argument(help="Files to upload.")],
    namespace: NamespaceOption = None,
    prefix: Annotated[str, typer.Option(help="Folder inside the record to put the files in.")] = "",
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Copy files into a Record and register them (path, size, sha256), so Triggers fire.

    Against a cluster the bytes go through the Kubernetes API (a short-lived uploader Pod, a tar stream
    over exec, the sha256 checked on arrival); against a running sandbox straight into its volumes.
    """
    namespace = _connect(kubeconfig, namespace)
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from . import cluster_upload, upload
    from .sandbox.state import volumes_of

    config = kubeconfig or DEFAULT_SANDBOX / "kubeconfig"
    try:
        planned = upload.plan(files, prefix)
        total = sum(source.stat().st_size for source, _ in planned)
        _existing(RECORDS, namespace, record)  # before the progress bar, so that the error is one line
        volumes = volumes_of(config)
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
                uploaded = _api_errors(
                    lambda: cluster_upload.upload_via_exec(namespace, record, planned, advance)
                )
            else:
                uploaded = _api_errors(
                    lambda: upload.upload_to_folder(volumes, namespace, record, planned, advance)
                )
    except (upload.UploadError, FileNotFoundError) as error:
        _fail(str(error))
    for file in uploaded:
        console.print(f"{file.path}  {file.size} bytes  sha256:{file.sha256}")


@app.command("invocations")
def invocations_command(
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """The run history: every Invocation with its phase, duration, exit code and message."""
    namespace = _connect(kubeconfig, namespace)
    _api_errors(lambda: _print_invocations(namespace))


@app.command("runs")
def runs_command(
    record: Annotated[str | None, typer.Option("--record", "-r", help="Only this Record's runs.")] = None,
    action: Annotated[str | None, typer.Option("--action", "-a", help="Only this Action's runs.")] = None,
    phase: Annotated[
        RunPhase | None, typer.Option(case_sensitive=False, help="Only runs in this phase.")
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", "-w", help="Print the table again as runs change.")
    ] = False,
    output: Annotated[
        RunsOutput,
        typer.Option(
            "--output", "-o", help="table; name (invocation.autoscene.io/NAME lines); json (a List)."
        ),
    ] = RunsOutput.table,
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """The run history, filtered, with full names that can be copied into other commands."""
    namespace = _connect(kubeconfig, namespace)

    from . import kube, labels, render, runs, timestamps

    selector = ",".join(
        f"{key}={labels.value_of(value)}"
        for key, value in ((labels.RECORD, record), (labels.ACTION, action))
        if value
    )

    def show() -> None:
        found = runs.matching(kube.list_custom(INVOCATIONS, namespace, label_selector=selector), phase)
        if output == RunsOutput.name:  # as `kubectl get -o name`, for pipes (`| xargs autoscene rerun`)
            print("".join(f"invocation.{GROUP}/{run['metadata']['name']}\n" for run in found), end="")
            return
        if output == RunsOutput.json:  # as `kubectl get -o json` prints a list
            listed = {"apiVersion": "v1", "items": found, "kind": "List", "metadata": {"resourceVersion": ""}}
            print(json.dumps(listed, indent=4, ensure_ascii=False))
            return
        if not found and not watch:
            for plural, name in (("records", record), ("actions", action)):
                if name and kube.get_custom(plural, namespace, name) is None:
                    _fail(
                        f'no {plural[:-1].capitalize()} "{name}" in namespace {namespace}, so no runs of it'
                    )
            console.print(f"no runs in {namespace} match", soft_wrap=True)
            return
        rows = render.invocation_rows(found, timestamps.now())
        console.print(_invocation_table(rows, f"runs in {namespace}", console.width))

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
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Run an Action on files of a Record now (manual Invocations); with --wait, exit 1 if any fails."""
    from . import runs

    try:
        values = runs.parse_parameters(parameter or [])
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--parameter") from error
    namespace = _connect(kubeconfig, namespace)
    from . import files as record_files
    from . import kube, naming

    # A run of a missing Action would wait for it (ActionNotFound): a mistyped name is told at once instead.
    _existing(ACTIONS, namespace, action)
    _existing(RECORDS, namespace, record)
    # ... and a file the Record does not hold would make a Job that fails "no such file": nothing is made.
    for path in files:
        if (
            _api_errors(
                functools.partial(
                    kube.get_custom, record_files.PLURAL, namespace, naming.file_name(record, path)
                )
            )
            is None
        ):
            _fail(
                f'{path} is not a file of record "{record}": upload it first (autoscene upload {record} FILE)'
            )
    bodies = [runs.manual_run(namespace, action, record, path, values) for path in files]
    _api_errors(lambda: [kube.create_custom(INVOCATIONS, body) for body in bodies])
    names = [body["metadata"]["name"] for body in bodies]
    for name in names:
        console.print(f"invocation {name} created")
    if wait:
        raise typer.Exit(_wait_for_runs(namespace, names))


@app.command("rerun")
def rerun_command(
    invocations: Annotated[
        list[str],
        typer.Argument(
            help="The Invocations to run again: names, or invocation.autoscene.io/NAME as `runs -o name` "
            "prints them."
        ),
    ],
    wait: Annotated[bool, typer.Option(help="Wait until the new runs are over.")] = False,
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """New runs with the same Action, file, content and parameters, each linked to the old one."""
    namespace = _connect(kubeconfig, namespace)
    created, refused = [], 0
    for given in invocations:
        try:
            created.append(_rerun(namespace, given.rsplit("/", 1)[-1]))
        except typer.Exit:  # its one-line error is printed; one refusal never stops the others
            refused += 1
    code = _wait_for_runs(namespace, created) if wait and created else 0
    raise typer.Exit(1 if refused else code)


def _rerun(namespace: str, invocation: str) -> str:
    """Create the re-run of `invocation`; its name. A one-line error and typer.Exit(1) when there is
    nothing to run again."""
    from . import files, kube, naming, runs

    old = _invocation(namespace, invocation)
    spec = old["spec"]
    if spec.get("sha256"):  # a run of a file's content: that content must be the file's still
        current = _api_errors(
            lambda: kube.get_custom(files.PLURAL, namespace, naming.file_name(spec["record"], spec["file"]))
        )
        now = (current or {}).get("spec", {}).get("sha256")
        if now != spec["sha256"]:
            where = f'{spec["file"]} in record "{spec["record"]}"'
            _fail(
                f"{where} is gone since {invocation} ran: nothing to run again"
                if now is None
                else f"{where} has new content since {invocation} ran (sha256 {spec['sha256'][:12]}…, now "
                f"{now[:12]}…): a re-run repeats a run on the same content; `autoscene run` runs the new one"
            )
    again = runs.rerun_of(old)
    _api_errors(lambda: kube.create_custom(INVOCATIONS, again))
    console.print(f"invocation {again['metadata']['name']} created (a re-run of {invocation})")
    return str(again["metadata"]["name"])


@app.command("logs")
def logs_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation whose log to print.")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing while the run writes.")
    ] = False,
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """A run's log: live from its Pod, then the copy kept on the Record's volume.

    Once the Pod is gone, the log the operator kept on the Record's volume; without one, the end of the
    log the Invocation's status kept."""
    namespace = _connect(kubeconfig, namespace)
    from . import jobs, kube

    found = _invocation(namespace, invocation)
    current = found.get("status") or {}
    job = current.get("jobName")
    # Raw GETs: the typed client's CoreV1Api and Pod models cost about a second to load.
    pods_path = f"/api/v1/namespaces/{namespace}/pods"
    pods = (
        json.loads(_api_errors(lambda: kube.get_raw(pods_path, labelSelector=f"job-name={job}")).data)[
            "items"
        ]
        if job
        else []
    )
    if pods:
        newest = max(pods, key=lambda pod: pod["metadata"]["creationTimestamp"])
        log_path = f"{pods_path}/{newest['metadata']['name']}/log"
        stream = _api_errors(
            lambda: kube.get_raw(log_path, container=jobs.ACTION_CONTAINER, follow="true" if follow else None)
        )
        for chunk in stream.stream(1 << 14):
            sys.stdout.write(chunk.decode("utf-8", "replace"))
        sys.stdout.flush()
        return
    kept = _kept_log(namespace, found, kubeconfig)
    if kept is not None:
        console.print(f"[dim]the Pods of {invocation} are gone; its log, kept on the Record's volume:[/]")
        sys.stdout.write(kept.decode("utf-8", "replace"))
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
    why = f" ({current['message']})" if current.get("message") else ""
    if phase in lifecycle.FINISHED:  # its Pods went before the log was read: a Job's deadline deletes them
        _fail(f"invocation {invocation} is {phase} and no log of it was kept{why}")
    console.print(f"invocation {invocation} is {phase}: no log yet{why}")


def _kept_log(namespace: str, invocation: dict[str, Any], kubeconfig: Path | None) -> bytes | None:
    """The run's log as the operator kept it on its Record's volume (None when it kept none): read
    from the volume folder of a sandbox, through the API (a short-lived Pod) on a cluster."""
    from . import cluster_upload, logkeeping, upload

    if not (invocation.get("status") or {}).get("jobName"):
        return None  # the run never started: there is no log
    record, path = invocation["spec"]["record"], logkeeping.log_path(invocation["metadata"]["name"])
    try:
        volume = _sandbox_volume(namespace, record, kubeconfig)
        if volume is None:
            return cluster_upload.read_via_exec(namespace, record, path)
        return (volume / path).read_bytes() if (volume / path).is_file() else None
    except upload.UploadError as error:
        console.print(f"[yellow]the kept log could not be read:[/] {error}", soft_wrap=True)
        return None


def _sandbox_volume(namespace: str, record: str, kubeconfig: Path | None) -> Path | None:
    """The local folder of the Record's volume when `kubeconfig` is a running sandbox's (its volumes
    are folders here); None on a cluster, where the volume is reached through the API.
    `upload.UploadError` for a Record that does not exist or has no volume yet."""
    from . import upload
    from .sandbox.state import volumes_of

    volumes = volumes_of(Path(kubeconfig or DEFAULT_SANDBOX / "kubeconfig"))
    if volumes is None:
        return None
    return volumes / namespace / upload.record_claim(namespace, record)


@app.command("outputs")
def outputs_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation whose outputs to show.")],
    download: Annotated[Path | None, typer.Option(help="Copy the outputs into this folder.")] = None,
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """What a run wrote to /cos/outputs; with --download, a copy of it.

    On a cluster the copy comes through the API, each file's sha256 checked against the one computed
    where the bytes are."""
    namespace = _connect(kubeconfig, namespace)
    from . import cluster_upload, jobs, upload

    found = _invocation(namespace, invocation)
    spec, current = found["spec"], found.get("status") or {}
    folder = jobs.output_subpath(found["metadata"]["name"])
    try:
        volume = _sandbox_volume(namespace, spec["record"], kubeconfig)
    except upload.UploadError as error:
        _fail(str(error))
    reported = current.get("outputs")
    if reported is None and volume is not None:  # no summary from the action: the folder itself says
        written = sorted(path for path in (volume / folder).rglob("*") if path.is_file())
        reported = {
            "count": len(written),
            "bytes": sum(path.stat().st_size for path in written),
            "paths": [path.relative_to(volume / folder).as_posix() for path in written[:5]],
        }
    head = f"{invocation} ({current.get('phase', 'Pending')}): "
    where = f"in {folder}/ of record {spec['record']}"
    if reported is None:
        said = f"{head}its action reported no outputs; --download copies what it wrote {where}"
    else:
        said = f"{head}{reported.get('count', 0)} files, {reported.get('bytes', 0)} bytes {where}"
    console.print(said, highlight=False)
    reported = reported or {}
    registered = current.get("outputRecord") or {}
    if registered.get("fileCount") is not None:
        place = f"{registered['prefix']}/ of " if registered.get("prefix") else ""
        console.print(
            f"  registered as {registered['fileCount']} files in {place}record {registered['name']}",
            highlight=False,
        )
    if download is None:
        for path in reported.get("paths") or []:
            console.print(f"  {path}", highlight=False)
        return
    try:
        if volume is None:
            copied = cluster_upload.download_via_exec(namespace, spec["record"], folder, download)
        else:
            copied = upload.copy_folder(volume / folder, download)
    except upload.UploadError as error:
        _fail(str(error))
    for file in copied:
        console.print(f"{download / file.path}  {file.size} bytes  sha256:{file.sha256}", highlight=False)


@app.command("cancel")
def cancel_command(
    invocation: Annotated[str, typer.Argument(help="The Invocation to stop.")],
    namespace: NamespaceOption = None,
    kubeconfig: Annotated[Path | None, typer.Option(envvar="KUBECONFIG")] = None,
) -> None:
    """Stop a run: the operator marks it Cancelled and deletes its Job (a finished run stays as it is)."""
    namespace = _connect(kubeconfig, namespace)
    from kubernetes.client.exceptions import ApiException

    from . import kube, runs

    phase = (_invocation(namespace, invocation).get("status") or {}).get("phase")
    if phase in lifecycle.FINISHED:
        _fail(f"invocation {invocation} is already {phase}: there is nothing to cancel")
    request = {"metadata": {"annotations": {runs.CANCEL: "true"}}}

    def annotate() -> None:
        try:
            kube.custom().patch_namespaced_custom_object(
                GROUP, VERSION, namespace, INVOCATIONS, invocation, request
            )
        except ApiException as error:
            if error.status == 404:
                _not_found(INVOCATIONS, namespace, invocation)
            raise

    _api_errors(annotate)
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
    keep_logs: Annotated[
        bool, typer.Option(help="Keep each run's log on its Record's volume, for after the Job is gone.")
    ] = OperatorConfig.keep_logs,
    log_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Port keeper Jobs fetch the logs from (0: any free one).")
    ] = OperatorConfig.log_port,
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
        keep_logs=keep_logs,
        log_port=log_port,
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
        _fail(str(error))
    return RealCluster(folder)


def _invocation(namespace: str, name: str) -> dict[str, Any]:
    """The Invocation, or a one-line error and exit status 1."""
    return _existing(INVOCATIONS, namespace, name)


def _existing(plural: str, namespace: str, name: str) -> dict[str, Any]:
    """The object, or a one-line error and exit status 1."""
    from . import kube

    found = _api_errors(functools.partial(kube.get_custom, plural, namespace, name))
    if found is None:
        _not_found(plural, namespace, name)
    return found


def _not_found(plural: str, namespace: str, name: str) -> NoReturn:
    _fail(f'{plural.removesuffix("s")} "{name}" not found in namespace "{namespace}"')


def _fail(message: str) -> NoReturn:
    """`message` as one line, whatever the terminal's width (rich would wrap it), and exit status 1."""
    console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True, highlight=False)
    raise typer.Exit(1)


def _connect(kubeconfig: Path | None, namespace: str | None) -> str:
    """The API client for `kubeconfig` (else $KUBECONFIG, else the sandbox's); a one-line error when
    there is none, when it cannot be read, or when it is a sandbox's and that sandbox is not running.
    Returns the namespace to work in: `namespace`, else the current context's, else "default", as
    kubectl chooses it."""
    global _kubeconfig_in_use
    config = Path(kubeconfig or DEFAULT_SANDBOX / "kubeconfig")
    if not config.exists():
        _fail(
            f"no kubeconfig at {config}: start a sandbox (`autoscene sandbox --keep`) or give "
            "--kubeconfig / $KUBECONFIG"
        )
    # Known from the sandbox's folder alone, before the Kubernetes client is even loaded.
    if _is_sandbox_folder(config.parent) and _sandbox_holder(config.parent) is None:
        _fail(
            f"no sandbox is running in {config.parent} (kubeconfig {config}): start it with "
            f"`autoscene sandbox --keep{_dir_option(config.parent)}`"
        )
    import yaml
    from kubernetes.config import ConfigException, list_kube_config_contexts

    from . import kube

    try:
        api = kube.configure(str(config))
        _, context = list_kube_config_contexts(str(config))
    except (ConfigException, yaml.YAMLError) as error:
        _fail(f"cannot use the kubeconfig at {config}: {' '.join(str(error).split())}")
    # At a terminal a server that does not answer is told at once, not after six retries and 12 s of
    # backoff; one that answers "busy" (429, 5xx) is still waited for, as the operator waits.
    api.rest_client.pool_manager.connection_pool_kw["retries"] = kube.RETRIES.new(connect=0, other=0)
    _kubeconfig_in_use = config
    return namespace or (context.get("context") or {}).get("namespace") or "default"


T = TypeVar("T")


def _api_errors(call: Callable[[], T]) -> T:
    """`call()`, with an unreachable API server or a refusal told in one line."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    from . import kube

    try:
        return call()
    except ApiException as error:
        _fail(f"the API server refused: {kube.message_of(error)}")
    except HTTPError as error:
        where = kube.api_client().configuration.host
        if _kubeconfig_in_use is not None:
            where += f" (kubeconfig {_kubeconfig_in_use})"
        _fail(f"cannot reach the API server at {where}: {_reason_of(error)}; {_sandbox_state()}")


def _reason_of(error: BaseException) -> str:
    """What went wrong at the bottom: "Connection refused" rather than urllib3's retry summary."""
    cause: BaseException = getattr(error, "reason", None) or error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return " ".join(str(cause).split())


def _sandbox_state() -> str:
    """Whether a sandbox runs where the kubeconfig lies, or else in the default folder."""
    here = _kubeconfig_in_use.parent if _kubeconfig_in_use is not None else DEFAULT_SANDBOX
    folder = here if _is_sandbox_folder(here) else DEFAULT_SANDBOX
    holder = _sandbox_holder(folder)
    return f"a sandbox is running in {folder} ({holder})" if holder else f"no sandbox is running in {folder}"


def _is_sandbox_folder(folder: Path) -> bool:
    from .sandbox.state import LOCK_FILE

    return (folder / LOCK_FILE).is_file()


def _sandbox_holder(folder: Path) -> str | None:
    """Who runs the sandbox in `folder` ("pid 123"), or None when no one does. A running sandbox holds an
    exclusive flock on its lock file: a shared one, tried and dropped at once, tells which."""
    from .sandbox.state import LOCK_FILE

    try:
        handle = (folder / LOCK_FILE).open()
    except FileNotFoundError:
        return None
    with handle:  # closing drops the shared lock, if it was granted
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "another process"
    return None


def _dir_option(folder: Path) -> str:
    return "" if folder == DEFAULT_SANDBOX else f" --dir {shlex.quote(str(folder))}"


def _wait_for_change(namespace: str, selector: str) -> None:
    from kubernetes import watch

    from . import kube

    listing = kube.custom().list_namespaced_custom_object(
        GROUP, VERSION, namespace, INVOCATIONS, label_selector=selector
    )
    version = listing["metadata"]["resourceVersion"]
    for _ in watch.Watch().stream(
        kube.custom().list_namespaced_custom_object,
        GROUP,
        VERSION,
        namespace,
        INVOCATIONS,
        label_selector=selector,
        resource_version=version,
        timeout_seconds=60,
    ):
        return


def _wait_for_runs(namespace: str, names: list[str]) -> int:
    """Show each run's phase until all are over; 0 when all succeeded, else 1."""
    from . import kube, lifecycle

    phases: dict[str, str] = {}
    with console.status("waiting for the runs") as waiting:
        while True:
            for name in names:
                found = _api_errors(functools.partial(kube.get_custom, INVOCATIONS, namespace, name)) or {}
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
    from . import kube, render, timestamps

    rows = render.invocation_rows(kube.list_custom(INVOCATIONS, namespace), timestamps.now())
    console.print(_invocation_table(rows, f"invocations in {namespace}", console.width))


def _invocation_table(rows: list[tuple[str, ...]], title: str, width: int) -> Any:
    """The run history as a table `width` characters wide at most: every column but the message as
    wide as its widest cell, never cut (names are what the other commands take); the message, last,
    gets the room left and is shortened with an ellipsis."""
    from rich.table import Table

    from . import render

    table = Table(*render.COLUMNS, title=title, title_justify="left")
    widths = [
        max([len(heading), *(len(row[index]) for row in rows)])
        for index, heading in enumerate(render.COLUMNS)
    ]
    for column, widest in zip(table.columns[:-1], widths, strict=False):
        column.no_wrap, column.min_width = True, widest
    # Each column takes its width plus a space on each side and a border; rich, short of room, would
    # shrink every no-wrap column to nothing rather than the one meant to give way.
    taken = sum(widest + 3 for widest in widths[:-1]) + 4
    message = table.columns[-1]
    message.overflow, message.no_wrap = "ellipsis", True
    message.max_width = max(len(render.COLUMNS[-1]), width - taken)
    for row in rows:
        table.add_row(*row)
    return table


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


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
