"""The real Kubernetes control plane on this machine: etcd, kube-apiserver, kube-controller-manager.

The binaries are Kubernetes' own, built from source by `hack/build-control-plane.sh`. They run on
loopback with a fresh PKI (`pki.py`) and static bearer tokens for the components that are not
Pods: the admin (group `system:masters`), the controller manager, and the node agent, which acts as
`system:node:<node>` (the Node authorizer and NodeRestriction admission hold it to its own Pods) and,
to bind Pods, as `system:kube-scheduler` (the scheduler's default RBAC role).

The controller manager runs the controllers whose behaviour the operator relies on: Jobs, garbage
collection, TTL after finished, Deployments and ReplicaSets (the operator runs as a Deployment), volume
binding and protection, namespaces, service accounts and their root CA, resource quotas (their usage,
which the API server's ResourceQuota admission checks). Scheduling and the kubelet
are the node agent's (`nodeagent.py`); there is no kube-proxy, so Services have no virtual IPs here.
"""

import contextlib
import logging
import os
import random
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import yaml

from .. import paths
from . import pki as pki_module
from .apiserver_resources import KUBERNETES_RELEASE
from .service import Service

logger = logging.getLogger(__name__)

KUBE_VERSION = KUBERNETES_RELEASE
#: Where `hack/build-control-plane.sh` puts the binaries; AUTOSCENE_CONTROL_PLANE_DIR overrides it.
DIRECTORY_VARIABLE = "AUTOSCENE_CONTROL_PLANE_DIR"
NODE_NAME = "autoscene-node"
ADMIN, CONTROLLER_MANAGER, NODE, SCHEDULER = "admin", "controller-manager", "node", "scheduler"
PROVISIONER = "provisioner"
PROVISIONER_USER = "system:autoscene:local-provisioner"
# user name and groups of each static identity (kube-apiserver --token-auth-file)
IDENTITIES = {
    ADMIN: ("kubernetes-admin", "system:masters"),
    CONTROLLER_MANAGER: ("system:kube-controller-manager", ""),
    NODE: (f"system:node:{NODE_NAME}", "system:nodes"),
    SCHEDULER: ("system:kube-scheduler", ""),
    PROVISIONER: (PROVISIONER_USER, ""),  # the node agent's volume provisioner; RBAC in nodeagent.py
}
CONTROLLERS = (
    "job-controller",
    "garbage-collector-controller",
    "ttl-after-finished-controller",
    "deployment-controller",
    "replicaset-controller",
    "persistentvolume-binder-controller",
    "persistentvolumeclaim-protection-controller",
    "persistentvolume-protection-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
    "resourcequota-controller",
)
SERVICE_CIDR = "10.0.0.0/24"
START_TIMEOUT = 90.0
HTTPS_PORT = 443


class ControlPlaneUnavailable(Exception):
    """The binaries are missing, or a component did not start; the message says which and why."""


@dataclass(frozen=True)
class Binaries:
    folder: Path

    def path(self, name: str) -> Path:
        return self.folder / name

    @property
    def kubectl(self) -> Path:
        return self.path("kubectl")


def find_binaries() -> Binaries:
    """The built control plane, or `ControlPlaneUnavailable` saying how to build it."""
    folder = Path(
        os.environ.get(DIRECTORY_VARIABLE) or paths.REPOSITORY / "build" / "control-plane" / KUBE_VERSION
    )
    missing = [
        name
        for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl")
        if not os.access(folder / name, os.X_OK)
    ]
    if missing:
        raise ControlPlaneUnavailable(
            f"no {', '.join(missing)} in {folder}: build them with hack/build-control-plane.sh "
            f"(Go >= 1.26 and the Go module proxy), or set {DIRECTORY_VARIABLE}"
        )
    return Binaries(folder)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def service_address() -> tuple[str, int]:
    """Where the API server listens: port 443 of a free loopback address when this process may bind it.

    Pods find the API server as `https://kubernetes.default.svc` (port 443), the address in-cluster
    clients such as kopf's service-account login use; the node agent resolves that name to this
    address. Without the right to bind port 443, a free port of 127.0.0.1 (in-cluster clients that
    use KUBERNETES_SERVICE_HOST and _PORT still work).
    """
    for _ in range(50):
        host = f"127.0.{random.randint(0, 255)}.{random.randint(2, 254)}"
        with socket.socket() as probe:
            try:
                probe.bind((host, HTTPS_PORT))
            except PermissionError:
                break
            except OSError:
                continue  # taken: another cluster's
            return host, HTTPS_PORT
    return "127.0.0.1", free_port()


class ControlPlane(Service):
    """Start with `with ControlPlane(folder) as plane:`; every process stops when the block ends.

    `folder` receives `pki/`, `logs/<component>.log`, the etcd data and one kubeconfig per identity
    (`kubeconfig` is the admin's).
    """

    def __init__(self, folder: Path, binaries: Binaries | None = None) -> None:
        self.folder = folder.resolve()
        self.binaries = binaries or find_binaries()
        self.node_name = NODE_NAME
        self.kubeconfig = self.folder / "kubeconfig"
        self.logs = self.folder / "logs"
        self._processes: list[tuple[str, subprocess.Popen[bytes], IO[bytes]]] = []
        self._tokens = {identity: secrets.token_hex(24) for identity in IDENTITIES}

    @property
    def url(self) -> str:
        return f"https://{self.apiserver_host}:{self.apiserver_port}"

    def kubeconfig_of(self, identity: str) -> Path:
        return self.kubeconfig if identity == ADMIN else self.folder / f"{identity}.kubeconfig"

    def start(self) -> None:
        if self.folder.exists():
            shutil.rmtree(self.folder)
        self.logs.mkdir(parents=True)
        self.apiserver_host, self.apiserver_port = service_address()
        self.pki = pki_module.create(self.folder / "pki", self.node_name, self.apiserver_host)
        tokens = self.folder / "pki" / "tokens.csv"
        tokens.write_text(
            "".join(
                f'{self._tokens[identity]},{user},{user},"{groups}"\n'
                for identity, (user, groups) in IDENTITIES.items()
            )
        )
        tokens.chmod(0o600)
        for identity in IDENTITIES:
            self._write_kubeconfig(identity)
        started = time.monotonic()
        self._start_etcd()
        self._start_apiserver()
        self._wait_ready("kube-apiserver", self.url + "/readyz")
        self._start_controller_manager()
        logger.info("control plane ready in %.1f s at %s", time.monotonic() - started, self.url)

    def stop(self) -> None:
        """Stop the components in reverse order: SIGTERM, then SIGKILL after a grace period."""
        for name, process, log in reversed(self._processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop on SIGTERM; killing it", name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            log.close()
        self._processes.clear()

    def token(self, identity: str) -> str:
        return self._tokens[identity]

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run this release's kubectl as the admin; what it answered, whatever its exit code."""
        return subprocess.run(
            [str(self.binaries.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=180,  # above the 120 s that `kubectl rollout status --timeout` waits
        )

    def log_tail(self, component: str, lines: int = 20) -> str:
        path = self.logs / f"{component}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # Components ------------------------------------------------------------------------------------

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.path("etcd")),
                "--name=autoscene",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
                f"--initial-cluster=autoscene=http://127.0.0.1:{peer_port}",
                # Tests create and delete namespaces all day; keep the database small and fast.
                "--quota-backend-bytes=2147483648",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        self._wait_ready("etcd", self.etcd_url + "/health", tls=False)

    def _start_apiserver(self) -> None:
        pki = self.pki
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.path("kube-apiserver")),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.apiserver_host}",
                f"--advertise-address={self.apiserver_host}",
                # The `kubernetes` Service cannot list a loopback address, and no kube-proxy routes it.
                "--endpoint-reconciler-type=none",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki.apiserver.cert}",
                f"--tls-private-key-file={pki.apiserver.key}",
                f"--client-ca-file={pki.ca.cert}",
                f"--token-auth-file={self.folder / 'pki' / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.service_account_public_key}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                f"--kubelet-client-certificate={pki.kubelet_client.cert}",
                f"--kubelet-client-key={pki.kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca.cert}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _start_controller_manager(self) -> None:
        kubeconfig = self.kubeconfig_of(CONTROLLER_MANAGER)
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.path("kube-controller-manager")),
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--leader-elect=false",
                f"--controllers={','.join(CONTROLLERS)}",
                # One identity per controller, as kubeadm sets it up: RBAC holds each to its own role.
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={self.pki.service_account_key}",
                f"--root-ca-file={self.pki.ca.cert}",
                "--profiling=false",
                "--v=1",
            ],
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self._processes.append((name, process, log))

    def _wait_ready(self, name: str, url: str, tls: bool = True) -> None:
        process = next(process for component, process, _ in self._processes if component == name)
        deadline = time.monotonic() + START_TIMEOUT
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert)) if tls else None
        headers = {"Authorization": f"Bearer {self.token(ADMIN)}"} if tls else {}
        last = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ControlPlaneUnavailable(
                    f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}"
                )
            try:
                with urllib.request.urlopen(
                    urllib.request.Request(url, headers=headers), timeout=5, context=context
                ) as answer:
                    if answer.status == 200:
                        return
            except OSError as error:
                last = str(error)
            time.sleep(0.2)
        raise ControlPlaneUnavailable(
            f"{name} not ready after {START_TIMEOUT:.0f} s ({last}):\n{self.log_tail(name)}"
        )

    def _write_kubeconfig(self, identity: str) -> None:
        write_kubeconfig(
            self.kubeconfig_of(identity), self.url, self.pki.ca.cert, self.token(identity), identity
        )


def write_kubeconfig(
    path: Path, server: str, ca: Path, token: str, user: str, namespace: str = "default"
) -> Path:
    """A kubeconfig that verifies the server with `ca` and authenticates with a bearer token."""
    context = f"autoscene-control-plane-{user}"
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "autoscene-control-plane",
                "cluster": {"server": server, "certificate-authority": str(ca)},
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": "autoscene-control-plane", "user": user, "namespace": namespace},
            }
        ],
        "current-context": context,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
