"""What the cluster end-to-end tests need beyond `autoscene.kube`: their settings, the samples as they
are applied to the test namespace, uploads through the CLI, a reader Pod that looks into a Record's
volume, and waiting with a diagnosis when something does not happen.

The pure helpers (no API call) come first; test_cluster_helpers.py tests them without a cluster.
"""

import base64
import copy
import hashlib
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream

from autoscene import API_VERSION, jobs, kube, records, status

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"

ENV_KUBECONFIG = "AUTOSCENE_E2E_KUBECONFIG"
ENV_IMAGE = "AUTOSCENE_E2E_EXTRACTOR_IMAGE"
ENV_STORAGE = "AUTOSCENE_E2E_STORAGE"
ENV_STORAGE_CLASS = "AUTOSCENE_E2E_STORAGE_CLASS"
ENV_TIMEOUT = "AUTOSCENE_E2E_TIMEOUT"
ENV_KEEP = "AUTOSCENE_E2E_KEEP_NAMESPACE"
SKIP_REASON = (
    f"{ENV_KUBECONFIG} is not set: these tests run against a real cluster with the operator deployed "
    "(see tests/e2e-cluster/README.md)"
)

# The samples (manifests/samples) and what the suite changes in them.
ACTION, TRIGGER, RECORD = "extract-images", "auto-extract-images", "recordings"
PLURALS = {"Action": "actions", "Trigger": "triggers", "Record": "records"}
# The sample Action asks for 2 CPUs, more than a small (kind, CI) node has left beside the system Pods.
ACTION_CPU = "500m"
# Storage "claim": the Record uses a ReadWriteOnce claim the suite creates, which every provisioner serves
# (kind's local-path serves no ReadWriteMany claim, the kind the operator creates for `storage.size`).
STORAGE_MODES = ("claim", "size")
TEST_CLAIM = "e2e-recordings"

OPERATOR_NAMESPACE, OPERATOR = "autoscene-system", "autoscene-operator"
READER = "e2e-reader"
READER_ROOT = "/volume"
FRAME = re.compile(r"frame_\d+\.jpg")
DEFAULT_TIMEOUT = 300.0
POLL_SECONDS = 1.0
EXEC_TIMEOUT = 60.0
# Waiting reasons that say an image is not on the cluster (nor pullable); after the first, waiting on
# is no use: a test fails at once rather than at its timeout.
IMAGE_REASONS = ("ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName")
HOPELESS_REASONS = IMAGE_REASONS[1:]

Found = TypeVar("Found")


@dataclass(frozen=True)
class Settings:
    """The suite's settings, from the environment."""

    kubeconfig: str
    extractor_image: str | None = None
    storage: str = "claim"
    storage_class: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    keep_namespace: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> "Settings | None":
        """None when the suite is not asked to run (no kubeconfig); ValueError for a bad setting."""
        kubeconfig = environ.get(ENV_KUBECONFIG, "").strip()
        if not kubeconfig:
            return None
        storage = environ.get(ENV_STORAGE, "").strip() or "claim"
        if storage not in STORAGE_MODES:
            raise ValueError(f"{ENV_STORAGE} must be one of {', '.join(STORAGE_MODES)}, not {storage!r}")
        timeout_text = environ.get(ENV_TIMEOUT, "").strip()
        try:
            timeout = float(timeout_text) if timeout_text else DEFAULT_TIMEOUT
        except ValueError:
            timeout = -1.0
        if timeout <= 0:
            raise ValueError(f"{ENV_TIMEOUT} must be a positive number of seconds, not {timeout_text!r}")
        return cls(
            kubeconfig=os.path.expanduser(kubeconfig),
            extractor_image=environ.get(ENV_IMAGE, "").strip() or None,
            storage=storage,
            storage_class=environ.get(ENV_STORAGE_CLASS, "").strip() or None,
            timeout=timeout,
            keep_namespace=environ.get(ENV_KEEP, "").strip().lower() in ("1", "true", "yes"),
        )


@dataclass(frozen=True)
class Uploaded:
    path: str  # inside the Record
    sha256: str


def namespace_name(suffix: str | None = None) -> str:
    """A fresh namespace per session, recognisable in `kubectl get ns`."""
    return f"autoscene-e2e-{suffix or secrets.token_hex(3)}"


def record_path(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def sample_documents(folder: Path = SAMPLES) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k manifests/samples` creates, in the kustomization's order."""
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text(encoding="utf-8"))
    return [
        document
        for resource in kustomization["resources"]
        for document in yaml.safe_load_all((folder / resource).read_text(encoding="utf-8"))
        if document
    ]


def prepare_samples(
    documents: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    image: str,
    storage: str,
    storage_class: str | None = None,
) -> list[dict[str, Any]]:
    """The samples as the suite creates them: in its namespace, the Action running `image` with a CPU
    request a small node can grant, the Record on the suite's claim (storage "claim") or on a claim of
    the operator's (storage "size", optionally of `storage_class`)."""
    prepared = []
    for document in documents:
        obj = copy.deepcopy(dict(document))
        obj["metadata"] = {**obj["metadata"], "namespace": namespace}
        spec = obj["spec"]
        if obj["kind"] == "Action":
            spec["image"] = image
            resources = spec.setdefault("resources", {})
            resources.setdefault("requests", {})["cpu"] = ACTION_CPU
        elif obj["kind"] == "Record" and storage == "claim":
            spec["storage"] = {"claimName": TEST_CLAIM}
        elif obj["kind"] == "Record" and storage_class:
            spec["storage"] = {**spec["storage"], "storageClassName": storage_class}
        prepared.append(obj)
    return prepared


def suite_claim(namespace: str, size: str, storage_class: str | None = None) -> dict[str, Any]:
    """The ReadWriteOnce claim of storage "claim": every Pod of the suite mounts it, and a node-local
    volume (kind's local-path) draws them all to its node."""
    spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": TEST_CLAIM, "namespace": namespace},
        "spec": spec,
    }


def image_repository(image: str) -> str:
    """`autoscene/frame-extractor` for `docker.io/autoscene/frame-extractor:0.1.0@sha256:...`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    name = f"{head}/{last.split(':', 1)[0]}" if head else last.split(":", 1)[0]
    return name.removeprefix("docker.io/").removeprefix("library/")


def choose_extractor_image(
    override: str | None, sample_image: str, deployed_actions: Sequence[Mapping[str, Any]], namespace: str
) -> tuple[str, str]:
    """The frame-extractor image the test Action runs, and where it was found.

    An explicit image wins; else the one skaffold put into the sample Action it deployed
    (`skaffold run -p with-samples`: its build of images/frame-extractor, loaded into the cluster);
    else the samples' own tag, for images built and loaded by hand.
    """
    if override:
        return override, ENV_IMAGE
    repository = image_repository(sample_image)
    built = sorted(
        (
            action
            for action in deployed_actions
            if action["metadata"]["name"] == ACTION
            and action["metadata"].get("namespace") != namespace
            and image_repository((action.get("spec") or {}).get("image", "")) == repository
            and action["spec"]["image"] != sample_image
        ),
        key=lambda action: action["metadata"].get("creationTimestamp", ""),
    )
    if built:
        newest = built[-1]
        where = f'Action "{ACTION}" in namespace "{newest["metadata"].get("namespace")}"'
        return newest["spec"]["image"], f"{where} (skaffold run -p with-samples)"
    return sample_image, "manifests/samples"


def upload_command(
    cli: str, record: str, files: Sequence[Path], *, kubeconfig: str, namespace: str, prefix: str = ""
) -> list[str]:
    command = [cli, "upload", record, *map(str, files), "--kubeconfig", kubeconfig, "--namespace", namespace]
    return [*command, "--prefix", prefix] if prefix else command


def files_in_listing(listing: str) -> list[str]:
    """The paths `find . -type f` printed, relative, sorted."""
    return sorted(line.strip().removeprefix("./") for line in listing.splitlines() if line.strip())


def frame_files(files: Iterable[str], folder: str) -> list[str]:
    """The frame images directly in `folder` (a path relative to the invocation's outputs)."""
    inside = f"{folder.strip('/')}/"
    return sorted(
        path
        for path in files
        if path.startswith(inside) and "/" not in path[len(inside) :] and FRAME.fullmatch(path[len(inside) :])
    )


def reader_pod(namespace: str, claim: str, image: str = jobs.PREPARE_IMAGE) -> dict[str, Any]:
    """A Pod that mounts the Record's volume read-only and idles, for `find`, `cat` and `base64` through
    exec. It meets Pod Security "restricted", like everything the suite runs."""
    context = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": READER, "namespace": namespace, "labels": {"app.kubernetes.io/name": READER}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "activeDeadlineSeconds": 3600,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": jobs.RUN_AS_USER,
                "runAsGroup": jobs.RUN_AS_USER,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "reader",
                    "image": image,
                    "command": ["sleep", "3600"],
                    "volumeMounts": [{"name": "record", "mountPath": READER_ROOT, "readOnly": True}],
                    "securityContext": context,
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
                }
            ],
            "volumes": [{"name": "record", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}],
        },
    }


def pod_problems(pods: Iterable[Mapping[str, Any]]) -> list[str]:
    """What keeps Pods from running, read off their status: unschedulable, image missing, crashing."""
    problems = []
    for pod in pods:
        name = pod["metadata"]["name"]
        state = pod.get("status") or {}
        for condition in state.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                problems.append(
                    f"pod {name}: not scheduled: {condition.get('message') or condition.get('reason')}"
                )
        statuses = [*(state.get("initContainerStatuses") or []), *(state.get("containerStatuses") or [])]
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if not reason or reason in ("ContainerCreating", "PodInitializing"):
                continue
            line = f"pod {name}: container {container.get('name')} waits: {reason}"
            if waiting.get("message"):
                line += f" ({waiting['message']})"
            if reason in IMAGE_REASONS:
                line += (
                    f"; is the image on the cluster? `skaffold run -p with-samples` builds and loads it,"
                    f" or set {ENV_IMAGE}"
                )
            problems.append(line)
    return problems


def hopeless(problems: Iterable[str]) -> list[str]:
    """The problems of `pod_problems` that no amount of waiting cures."""
    return [
        problem for problem in problems if any(f" waits: {reason}" in problem for reason in HOPELESS_REASONS)
    ]


def invocation_line(invocation: Mapping[str, Any]) -> str:
    current = invocation.get("status") or {}
    said = " ".join(str(current[key]) for key in ("reason", "message") if current.get(key))
    head = f"invocation {invocation['metadata']['name']} ({invocation['spec']['file']}): "
    return f"{head}{current.get('phase', 'no status')} {said}".rstrip()


# The cluster -------------------------------------------------------------------------------------


def autoscene_cli() -> str:
    """The `autoscene` command of the Python running the tests (the project's virtualenv)."""
    beside = Path(sys.executable).parent / "autoscene"
    found = str(beside) if beside.is_file() else shutil.which("autoscene")
    if found is None:
        raise FileNotFoundError("the autoscene command is not installed (make installs it into .venv)")
    return found


def wait_for(
    condition: Callable[[], Found | None],
    timeout: float,
    what: str,
    diagnose: Callable[[], str] = lambda: "",
    stuck: Callable[[], list[str]] = list,
) -> Found:
    """Poll until `condition()` returns something; on timeout, or as soon as `stuck()` says something
    cannot happen, fail saying what was awaited and what the namespace looks like."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found is not None:
            return found
        blocked = stuck()
        if blocked:
            raise AssertionError(f"{what} cannot happen: {'; '.join(blocked)}\n{diagnose()}")
        if time.monotonic() >= deadline:
            diagnosis = diagnose()
            raise TimeoutError(
                f"gave up waiting {timeout:.0f} s for {what}" + (f"\n{diagnosis}" if diagnosis else "")
            )
        time.sleep(POLL_SECONDS)


def operator_problem() -> str | None:
    """Why the operator cannot serve the suite (not deployed, not ready), or None."""
    try:
        deployment = client.AppsV1Api(kube.api_client()).read_namespaced_deployment(
            OPERATOR, OPERATOR_NAMESPACE
        )
    except ApiException as error:
        if error.status == 404:
            return (
                f'no Deployment "{OPERATOR}" in namespace "{OPERATOR_NAMESPACE}": deploy the operator first '
                "(`skaffold run -p with-samples`, or `kubectl apply -k manifests` with images you built)"
            )
        raise
    if not (deployment.status.available_replicas or 0):
        pods = kube.core().list_namespaced_pod(
            OPERATOR_NAMESPACE, label_selector=f"app.kubernetes.io/name={OPERATOR}"
        )
        why = "; ".join(pod_problems(kube.sanitized(pod) for pod in pods.items)) or "its Pod is not ready"
        return f'the operator Deployment "{OPERATOR}" has no available replica: {why}{last_words(pods.items)}'
    return None


def last_words(pods: list[Any], lines: int = 15) -> str:
    """The end of the log of a Pod's container that ended and was restarted (`kubectl logs --previous`):
    why an operator in CrashLoopBackOff exits."""
    said = []
    for pod in pods:
        if not any((status.restart_count or 0) for status in pod.status.container_statuses or []):
            continue
        try:
            log = kube.core().read_namespaced_pod_log(
                pod.metadata.name, pod.metadata.namespace, previous=True, tail_lines=lines
            )
        except ApiException as error:
            log = f"(its previous log could not be read: {error.reason})"
        said.append(f"\nthe last log of {pod.metadata.name}'s previous container:\n{log}")
    return "".join(said)


class Cluster:
    """The test namespace on a real cluster, with the verbs of tests/conftest.py's RunningSandbox."""

    def __init__(self, settings: Settings, namespace: str, extractor_image: str) -> None:
        self.settings = settings
        self.namespace = namespace
        self.extractor_image = extractor_image
        self.cli = autoscene_cli()
        self._reader: str | None = None

    # Setting up and tearing down ---------------------------------------------------------------

    def create_namespace(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": self.namespace,
                "labels": {
                    "app.kubernetes.io/part-of": "autoscene-e2e",
                    # What the operator promises of its Jobs (README), held to by the API server here.
                    "pod-security.kubernetes.io/enforce": "restricted",
                },
            },
        }
        kube.core().create_namespace(body)

    def delete_namespace(self) -> None:
        try:
            kube.core().delete_namespace(self.namespace, propagation_policy="Background")
        except ApiException as error:
            if error.status != 404:
                raise

    def apply_samples(self) -> None:
        documents = sample_documents()
        if self.settings.storage == "claim":
            (record,) = [document for document in documents if document["kind"] == "Record"]
            claim = suite_claim(
                self.namespace, record["spec"]["storage"]["size"], self.settings.storage_class
            )
            kube.core().create_namespaced_persistent_volume_claim(self.namespace, claim)
        prepared = prepare_samples(
            documents,
            namespace=self.namespace,
            image=self.extractor_image,
            storage=self.settings.storage,
            storage_class=self.settings.storage_class,
        )
        for obj in prepared:
            assert obj["apiVersion"] == API_VERSION, obj["apiVersion"]
            kube.create_custom(PLURALS[obj["kind"]], obj)
        wait_for(self._ready_record, 60, f'record "{RECORD}" to be ready', self.diagnose)

    def _ready_record(self) -> dict[str, Any] | None:
        record = kube.get_custom("records", self.namespace, RECORD)
        if record is None:
            return None
        current = record.get("status") or {}
        assert current.get("phase") != "Failed", f"record {RECORD} failed: {current.get('message')}"
        return record if current.get("phase") == "Ready" and records.claim_of(record) else None

    # The verbs of the tests ------------------------------------------------------------------------

    def upload(self, record: str, *sources: Path, prefix: str = "") -> list[Uploaded]:
        """`autoscene upload` (the CLI users run), then what it registered, hashed here independently."""
        command = upload_command(
            self.cli,
            record,
            sources,
            kubeconfig=self.settings.kubeconfig,
            namespace=self.namespace,
            prefix=prefix,
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=self.settings.timeout, check=False
        )
        assert done.returncode == 0, (
            f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}"
        )
        return [Uploaded(record_path(prefix, source.name), sha256_of(source)) for source in sources]

    def invocations(self) -> list[dict[str, Any]]:
        return kube.list_custom("invocations", self.namespace)

    def invocation(self, name: str) -> dict[str, Any] | None:
        return kube.get_custom("invocations", self.namespace, name)

    def finished(self, name: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            found = self.invocation(name)
            return found if found and (found.get("status") or {}).get("phase") in status.FINISHED else None

        return wait_for(
            done, self.settings.timeout, f"invocation {name} to finish", self.diagnose, self.stuck
        )

    def run_of(
        self, path: str, trigger: str | None = None, exclude: frozenset[str] = frozenset()
    ) -> dict[str, Any]:
        """The finished Invocation for the file at `path` (waits for it to be created and to finish)."""

        def created() -> str | None:
            names = [
                invocation["metadata"]["name"]
                for invocation in self.invocations()
                if invocation["spec"]["file"] == path
                and (trigger is None or invocation["spec"].get("trigger") == trigger)
                and invocation["metadata"]["name"] not in exclude
            ]
            return names[0] if names else None

        return self.finished(
            wait_for(created, self.settings.timeout, f"an invocation for {path}", self.diagnose, self.stuck)
        )

    def create_invocation(self, name: str, *, action: str, file: str, record: str = RECORD) -> None:
        body = {
            "apiVersion": API_VERSION,
            "kind": "Invocation",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"action": action, "record": record, "file": file},
        }
        assert kube.create_custom("invocations", body), f"invocation {name} exists already"

    def trigger_fired(self, name: str = TRIGGER) -> int:
        trigger = kube.get_custom("triggers", self.namespace, name)
        assert trigger is not None, f"trigger {name} is missing"
        return int((trigger.get("status") or {}).get("fired", 0))

    # What an Invocation wrote, read through the reader Pod -----------------------------------------

    def output_files(self, invocation: Mapping[str, Any]) -> list[str]:
        """Every file in the Invocation's output folder, relative to it."""
        folder = f"{READER_ROOT}/{jobs.output_subpath(invocation['metadata']['name'])}"
        return files_in_listing(self.exec("sh", "-c", 'cd "$1" && find . -type f', "sh", folder))

    def read_output(self, invocation: Mapping[str, Any], path: str) -> bytes:
        """One file of the Invocation's outputs (base64 through exec: the channel carries text)."""
        file = f"{READER_ROOT}/{jobs.output_subpath(invocation['metadata']['name'])}/{path}"
        return base64.b64decode(self.exec("base64", file))

    def exec(self, *command: str) -> str:
        """Run a command in the reader Pod; its standard output, or a failure with its standard error."""
        name = self._reader_pod()
        # `stream` swaps the transport of the client it is given: one of its own leaves the others alone.
        api_client = client.ApiClient(kube.api_client().configuration)
        try:
            response = stream(
                client.CoreV1Api(api_client).connect_get_namespaced_pod_exec,
                name,
                self.namespace,
                command=list(command),
                stderr=True,
                stdin=False,
                stdout=True,
                tty=False,
                _preload_content=False,
            )
            try:
                response.run_forever(timeout=EXEC_TIMEOUT)
                out, err = response.read_stdout(timeout=0), response.read_stderr(timeout=0)
                # None while still running (EXEC_TIMEOUT passed); no status at all reads as unknown.
                try:
                    code = response.returncode
                except (TypeError, KeyError, IndexError, ValueError):
                    code = None
            finally:
                response.close()
        finally:
            api_client.close()
        assert code == 0, f"{' '.join(command)} exited with {code} in pod {name}: {err}"
        return str(out)

    def _reader_pod(self) -> str:
        if self._reader is None:
            record = kube.get_custom("records", self.namespace, RECORD)
            claim = records.claim_of(record or {})
            assert claim, f"record {RECORD} has no claim"
            kube.core().create_namespaced_pod(self.namespace, reader_pod(self.namespace, claim))

            def running() -> bool | None:
                pod = kube.sanitized(kube.core().read_namespaced_pod(READER, self.namespace))
                return True if (pod.get("status") or {}).get("phase") == "Running" else None

            wait_for(
                running, self.settings.timeout, f"the reader pod {READER} to run", self.diagnose, self.stuck
            )
            self._reader = READER
        return self._reader

    # Why something did not happen --------------------------------------------------------------------

    def stuck(self) -> list[str]:
        """Pods of the namespace that wait for an image the cluster cannot get."""
        pods = kube.core().list_namespaced_pod(self.namespace).items
        return hopeless(pod_problems(kube.sanitized(pod) for pod in pods))

    def diagnose(self) -> str:
        """The namespace's state, for a failure message: Invocations, and what holds up Pods and claims."""
        lines = [f"namespace {self.namespace}, frame-extractor image {self.extractor_image}:"]
        try:
            lines += [invocation_line(invocation) for invocation in self.invocations()]
            pods = kube.core().list_namespaced_pod(self.namespace).items
            lines += pod_problems(kube.sanitized(pod) for pod in pods)
            for claim in kube.core().list_namespaced_persistent_volume_claim(self.namespace).items:
                if claim.status.phase != "Bound":
                    lines.append(f"claim {claim.metadata.name}: {claim.status.phase}")
            events = kube.core().list_namespaced_event(self.namespace, field_selector="type=Warning").items
            lines += [f"event {event.reason}: {event.message}" for event in events[-10:]]
        except ApiException as error:  # the diagnosis must not hide the failure it explains
            lines.append(f"(could not read the namespace: {error.status} {error.reason})")
        return "\n  ".join(lines)
