"""The sandbox: an embedded API server, the operator, a Job controller and a kubelet, in one process tree.

Its folder holds everything a user may want to look at or point tools at:
- `kubeconfig`: for `kubectl --kubeconfig` (or `KUBECONFIG=`) against the sandbox's API server;
- `volumes/<namespace>/<claim>/`: the Records' volumes (`files/` uploads, `outputs/<invocation>/` results);
- `sandbox.json`: present while it runs, so that `autoscene upload` knows to write into `volumes/`.
"""

import asyncio
import fcntl
import json
import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import kopf

from .. import kube, paths, schemas, upload
from . import apply as applying
from .apiserver import EmbeddedApiServer, write_kubeconfig
from .apiserver_faults import ApiFaults
from .containers import LocalImage
from .controllerprocess import JobControllerProcess
from .kubelet import LocalKubelet
from .service import Service
from .state import LOCK_FILE, STATE_FILE, volumes_of  # noqa: F401  (volumes_of: the CLI's, re-exported)

VOLUMES_MARK = ".autoscene-volumes"  # in a volumes folder a sandbox made, and so may remove

logger = logging.getLogger(__name__)
Found = TypeVar("Found")


def local_images() -> dict[str, LocalImage]:
    """The images the sandbox can run, each with the local folder standing for its files and the
    command its Dockerfile (or, for busybox, its image config) gives."""
    return {
        "autoscene/frame-extractor": LocalImage(
            {"/app": paths.IMAGES / "frame-extractor"}, entrypoint=("python", "/app/extract_frames.py")
        ),
        "autoscene/contact-sheet": LocalImage(
            {"/app": paths.IMAGES / "contact-sheet"}, entrypoint=("python", "/app/contact_sheet.py")
        ),
        # Its programs are the host's: `mkdir` (output folders), `sh`, `cp`, `find`, `sha256sum` (publishing
        # outputs), `tar` (uploads), `wget` (keeping logs).
        "busybox": LocalImage(cmd=("sh",)),
    }


class SandboxBusy(RuntimeError):
    """Another sandbox runs in the folder; starting a second would overwrite its kubeconfig."""


class ForeignVolumes(SandboxBusy):
    """The folder's volumes/ holds files no sandbox made: a sandbox would mix its own in, then remove
    them all at its next start."""


class FolderLock:
    """The right to use a sandbox folder, held while the sandbox runs (an flock, so a sandbox that
    died leaves no stale lock behind)."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SandboxBusy(
                f"a sandbox is already running in {self.path.parent} ({holder}): stop it first, "
                "or start this one with --dir OTHER_FOLDER"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing drops the lock
            self._file = None

    @property
    def held(self) -> bool:
        return self._file is not None


class Sandbox(Service):
    """Start with `with Sandbox(folder) as sandbox:`; everything stops when the block ends."""

    def __init__(
        self,
        folder: Path,
        namespace: str = "default",
        with_operator: bool = True,
        faults: ApiFaults | None = None,
    ) -> None:
        """`faults`: also write `faulty_kubeconfig`, for the same server behind injected API faults."""
        self.folder = folder.resolve()
        self.with_operator = with_operator
        self.namespace = namespace
        self.kubeconfig = self.folder / "kubeconfig"
        self.faulty_kubeconfig = self.folder / "kubeconfig-faulty"
        self.volumes = self.folder / "volumes"
        self.crds = schemas.load_crds(paths.require(paths.CRDS))
        self._server = EmbeddedApiServer(faults=faults)
        self._operator_stop = threading.Event()
        self._operator_ready = threading.Event()
        self._operator: threading.Thread | None = None
        self._runner: JobControllerProcess | None = None
        self._kubelet: LocalKubelet | None = None
        self._lock = FolderLock(self.folder)

    def start(self) -> None:
        self._lock.acquire()
        self.folder.mkdir(parents=True, exist_ok=True)
        # The API server starts empty: volumes an earlier sandbox left here belong to claims and Records
        # that no longer exist (a Record of the same name would show its old files under a new count).
        # Only a folder a sandbox made goes (it holds the mark): `--dir .` must never cost a user theirs.
        if (self.volumes / VOLUMES_MARK).is_file():
            shutil.rmtree(self.volumes)
        elif self.volumes.is_dir() and any(self.volumes.iterdir()):
            self._lock.release()
            raise ForeignVolumes(
                f"{self.volumes} holds files no sandbox made; start the sandbox in another folder (--dir), "
                "or remove that one if an older sandbox left it"
            )
        self.volumes.mkdir(exist_ok=True)
        (self.volumes / VOLUMES_MARK).write_text(
            "the volumes of an autoscene sandbox; removed when it restarts\n"
        )
        self._server.on_removal(self._release_volume)
        self.url = self._server.start()
        write_kubeconfig(self.kubeconfig, self.url, namespace=self.namespace)
        if self._server.faulty_url:
            write_kubeconfig(self.faulty_kubeconfig, self._server.faulty_url, namespace=self.namespace)
        # The operator reads the same kubeconfig a user would; kopf's login looks at $KUBECONFIG.
        os.environ["KUBECONFIG"] = str(self.kubeconfig)
        self.api = kube.configure(str(self.kubeconfig))
        self.apply(applying.documents(paths.CRDS))
        self._runner = JobControllerProcess(self.kubeconfig)
        self._runner.start()
        # Every Pod runs here (Jobs' and bare ones, such as the uploader's), and `exec` into them.
        self._kubelet = LocalKubelet(self.api, self.volumes, local_images())
        self._server.set_exec_handler(self._kubelet.exec_in_container)
        self._server.set_log_source(self._kubelet.container_log)
        self._kubelet.start()
        if self.with_operator:
            self._start_operator()
        (self.folder / STATE_FILE).write_text(json.dumps({"url": self.url, "volumes": str(self.volumes)}))

    def stop(self) -> None:
        if not self._lock.held:
            return  # never started: the folder is another sandbox's
        (self.folder / STATE_FILE).unlink(missing_ok=True)
        self._operator_stop.set()
        if self._operator is not None:
            self._operator.join(timeout=15)
        if self._runner is not None:
            self._runner.stop()
        if self._kubelet is not None:
            self._server.set_exec_handler(None)
            self._server.set_log_source(None)
            self._kubelet.stop()
        self._server.stop()
        self._lock.release()

    def _release_volume(self, resource: tuple[str, str], obj: dict[str, Any]) -> None:
        """A deleted claim's folder goes with it, as a dynamically provisioned volume's files go with
        its claim on a cluster (reclaim policy Delete, a StorageClass's default). Renamed at once, so
        that a new claim of the same name starts empty; removed on a thread of its own, as it may be big."""
        if resource != ("", "persistentvolumeclaims"):
            return
        meta = obj["metadata"]
        folder = self.volumes / meta["namespace"] / meta["name"]
        released = folder.with_name(f".released-{meta['name']}-{meta.get('uid', '')}")
        try:
            folder.rename(released)
        except FileNotFoundError:
            return  # never used
        threading.Thread(target=shutil.rmtree, args=(released,), kwargs={"ignore_errors": True}).start()

    @property
    def server(self) -> EmbeddedApiServer:
        return self._server

    @property
    def control_plane_processes(self) -> list[subprocess.Popen[bytes]]:
        """The control plane's processes besides this one (its Job controller's)."""
        process = self._runner.process if self._runner is not None else None
        return [process] if process is not None else []

    def apply(self, objects: Any) -> list[str]:
        return applying.apply(self.api, objects, self.crds, self.namespace)

    def upload(
        self, record: str, planned: list[tuple[Path, str]], namespace: str | None = None
    ) -> list[upload.UploadedFile]:
        """Copy files straight into the Record's local volume and register them."""
        return upload.upload_to_folder(
            self.volumes, namespace or self.namespace, record, planned, lambda _: None
        )

    def restart_operator(self) -> None:
        """Stop the operator and start it again, as a Deployment's rollout would."""
        self._operator_stop.set()
        if self._operator is not None:
            self._operator.join(timeout=15)
        self._operator_stop, self._operator_ready = threading.Event(), threading.Event()
        self._start_operator()

    def _start_operator(self) -> None:
        from .. import handlers  # noqa: F401  (registers the operator's handlers with kopf)

        def run() -> None:
            asyncio.run(
                kopf.operator(
                    clusterwide=True,
                    standalone=True,
                    stop_flag=self._operator_stop,
                    ready_flag=self._operator_ready,
                )
            )

        self._operator = threading.Thread(target=run, name="operator", daemon=True)
        self._operator.start()
        if not self._operator_ready.wait(timeout=30):
            raise RuntimeError("the operator did not start within 30 s")


def wait_for(
    condition: Callable[[], Found | None],
    timeout: float,
    what: str,
    interval: float = 0.1,
    explain: Callable[[], str] | None = None,
) -> Found:
    """Poll until `condition()` returns something, or fail saying what was awaited (and, with
    `explain`, what the state was when it gave up)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            state = f"; {explain()}" if explain is not None else ""
            raise TimeoutError(f"gave up waiting {timeout:.0f} s for {what}{state}")
        time.sleep(interval)
