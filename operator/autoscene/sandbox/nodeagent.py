"""The node agent: one node of a real cluster, on this machine, with Pods as local processes.

It stands in for what a node and the scheduler do, talking to a real kube-apiserver:
- registers the Node (Ready, with its CPU and memory, its kubelet port, and the declared feature
  `ExtendWebSocketsToKubelet`, so that the API server proxies exec websockets straight to it);
- binds Pods that name no node to this one, as the scheduler does, once their claims are bound and
  their resource requests fit what the node has left (else `PodScheduled=False`, `Unschedulable`, with
  the scheduler's wording), acting as `system:kube-scheduler`;
- provisions volumes for claims of its StorageClass (`autoscene-local`, the default): a `hostPath`
  PersistentVolume per claim, bound by the controller manager's volume binder, deleted when released;
- runs the Pods bound to it (`kubelet.LocalKubelet`), acting as `system:node:<node>`, so the Node
  authorizer and NodeRestriction admission check every write;
- serves the kubelet API the API server calls, over TLS, to clients with a certificate of the
  cluster's CA: `/containerLogs/...` (`kubectl logs`, with `tailLines`, `limitBytes` and `follow`) and
  `/exec/...` (websocket channel protocols v4 and v5; SPDY is not spoken, which the declared feature
  makes unnecessary).

Not done: container isolation (processes share the host's file system, network and users), resource
limits, probes (a running container is Ready), image pulls (images map to local stand-ins).
"""

import asyncio
import contextlib
import logging
import os
import shutil
import ssl
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp.web
from kmock import KubernetesError
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.quantity import parse_quantity
from multidict import MultiDict

from .. import kube, timestamps, watching
from .apiserver_exec import exec_request, serve_exec
from .apiserver_http import waiting_to_start
from .containers import LOCAL_IP, LocalImage
from .kubelet import FINISHED_PHASES, LocalKubelet
from .service import Service

logger = logging.getLogger(__name__)
STORAGE_CLASS = "autoscene-local"
PROVISIONER = "autoscene.io/local-path"
DECLARED_FEATURES = ["ExtendWebSocketsToKubelet"]
SCHEDULER_NAME = "default-scheduler"
# The `kubernetes` Service's names, which cluster DNS would resolve (kubernetes.io: "Accessing the
# Kubernetes API from a Pod"); here each Pod's /etc/hosts names the API server's address.
SERVICE_NAMES = (
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
RETRY_SECONDS = 0.5
# A bound Pod the kubelet has not seen after this long no longer counts (the scheduler's assume TTL).
ASSUMED_SECONDS = 30
HEARTBEAT_SECONDS = 30
LOG_FOLLOW_SECONDS = 0.2
# An exec's command travels in the URL (one `command=` per argument); the kubelet, like any Go
# server, takes request lines and headers up to 1 MB, where aiohttp stops at 8 KiB by default.
MAX_REQUEST_LINE = 1 << 20
# The kubelet API's query names for exec (k8s.io/api/core/v1: ExecStdinParam, ...).
EXEC_FLAGS = {"input": "stdin", "output": "stdout", "error": "stderr", "tty": "tty"}


@dataclass(frozen=True)
class Identities:
    """The kubeconfigs the agent acts with: the node, the scheduler, the volume provisioner."""

    node: Path
    scheduler: Path
    provisioner: Path


@dataclass(frozen=True)
class Serving:
    """The kubelet API's TLS: its certificate and key, and the CA its clients' certificates come from."""

    cert: Path
    key: Path
    client_ca: Path


class NodeAgent(Service):
    """Start with `with NodeAgent(...) as agent:`; its Pods' processes stop when the block ends."""

    def __init__(
        self,
        name: str,
        identities: Identities,
        serving: Serving,
        volumes: Path,
        images: Mapping[str, LocalImage],
        service: tuple[str, int],
        cpu: str | None = None,
        memory: str | None = None,
    ) -> None:
        self.name = name
        self.volumes = volumes
        self._serving = serving
        self._node_api = _client(identities.node)
        self._scheduler_api = _client(identities.scheduler)
        self._provisioner_api = _client(identities.provisioner)
        self._capacity = {
            "cpu": cpu or str(os.cpu_count() or 1),
            "memory": memory or f"{_memory_kib()}Ki",
            "pods": "110",
            "ephemeral-storage": f"{shutil.disk_usage(volumes if volumes.exists() else '/').total >> 10}Ki",
        }
        self.kubelet = LocalKubelet(
            self._node_api,
            volumes,
            images,
            field_selector=f"spec.nodeName={name}",
            service=service,
            confirm_deletion=True,
            hosts={service[0]: list(SERVICE_NAMES)},
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Pods bound, not yet seen by the kubelet: when, and what they request.
        self._assumed: dict[str, tuple[float, dict[str, Decimal]]] = {}
        self._waiting: dict[str, dict[str, Any]] = {}  # Pods to bind, by uid
        self._told: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: aiohttp.web.AppRunner | None = None
        self.port = 0

    def start(self) -> None:
        self.volumes.mkdir(parents=True, exist_ok=True)
        self._start_kubelet_api()
        self._register_node()
        self.kubelet.start()
        for name, target in (
            ("scheduler", self._schedule),
            ("scheduler-watch", self._follow_unbound_pods),
            ("provisioner-claims", self._follow_claims),
            ("provisioner-volumes", self._follow_volumes),
            ("node-heartbeat", self._heartbeat),
        ):
            thread = threading.Thread(target=target, name=f"node-agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        self.kubelet.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)

    # The Node --------------------------------------------------------------------------------------

    def _register_node(self) -> None:
        core = client.CoreV1Api(self._node_api)
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                },
            },
        }
        with contextlib.suppress(ApiException):
            core.create_node(node)
        core.patch_node_status(self.name, {"status": self._node_status()})

    def _node_status(self) -> dict[str, Any]:
        now = timestamps.render(timestamps.now())
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "autoscene node agent is posting ready status",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        pressures = [
            {
                "type": kind,
                "status": "False",
                "reason": f"KubeletHasSufficient{word}",
                "message": f"kubelet has sufficient {word.lower()}",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, word in (("MemoryPressure", "Memory"), ("DiskPressure", "Disk"), ("PIDPressure", "PID"))
        ]
        uname = os.uname()
        return {
            "capacity": self._capacity,
            "allocatable": self._capacity,
            "conditions": [*pressures, ready],
            "addresses": [
                {"type": "InternalIP", "address": LOCAL_IP},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
            "declaredFeatures": DECLARED_FEATURES,
            "nodeInfo": {
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kernelVersion": uname.release,
                "osImage": "local processes",
                "containerRuntimeVersion": "autoscene-local://0.1.0",
                "kubeletVersion": client.VersionApi(self._node_api).get_code().git_version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        }

    def _heartbeat(self) -> None:
        core = client.CoreV1Api(self._node_api)
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                core.patch_node_status(
                    self.name, {"status": {"conditions": self._node_status()["conditions"]}}
                )
            except Exception as error:  # the API server may be restarting
                logger.debug("node heartbeat failed: %s", error)

    # The scheduler ---------------------------------------------------------------------------------

    def _follow_unbound_pods(self) -> None:
        core = client.CoreV1Api(self._scheduler_api)

        def seen(pod: dict[str, Any]) -> None:
            spec, meta = pod["spec"], pod["metadata"]
            if spec.get("schedulerName", SCHEDULER_NAME) != SCHEDULER_NAME or meta.get("deletionTimestamp"):
                self._waiting.pop(meta["uid"], None)
            else:
                self._waiting[meta["uid"]] = pod

        watching.follow(
            core.list_pod_for_all_namespaces,
            seen,
            lambda pod: self._forget_unbound(pod["metadata"]["uid"]),
            self._stop,
            on_listed=lambda pods: self._forget_all_but({uid for _, _, uid in pods}),
            field_selector="spec.nodeName=",
        )

    def _forget_all_but(self, present: set[str]) -> None:
        """After a full listing: the unbound Pods it no longer holds are gone."""
        for uid in set(self._waiting) - present:
            self._forget_unbound(uid)

    def _forget_unbound(self, uid: str) -> None:
        self._waiting.pop(uid, None)
        self._told.pop(uid, None)

    def _schedule(self) -> None:
        core = client.CoreV1Api(self._scheduler_api)
        while not self._stop.wait(RETRY_SECONDS):
            # Oldest first, as the scheduler's queue orders Pods of equal priority.
            for pod in sorted(self._waiting.values(), key=lambda pod: pod["metadata"]["creationTimestamp"]):
                try:
                    self._try_to_bind(core, pod)
                except Exception:
                    logger.exception("scheduling pod %s failed", pod["metadata"]["name"])

    def _try_to_bind(self, core: client.CoreV1Api, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        why = self._unschedulable_because(core, pod)
        if why is not None:
            if self._told.get(meta["uid"]) != why:
                self._told[meta["uid"]] = why
                condition = {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": why,
                    "lastTransitionTime": timestamps.render(timestamps.now()),
                }
                with contextlib.suppress(ApiException):
                    core.patch_namespaced_pod_status(
                        meta["name"], meta["namespace"], {"status": {"conditions": [condition]}}
                    )
            return
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.name},
        }
        self._forget_unbound(meta["uid"])
        try:
            # The answer is a Status, which the client's Binding model cannot read: take it raw.
            kube.unread(
                core.create_namespaced_pod_binding(
                    meta["name"], meta["namespace"], binding, _preload_content=False
                )
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone meanwhile, or bound already
                raise
            return
        # Counted as the node's until the kubelet sees it, as the scheduler's assume cache does.
        self._assumed[meta["uid"]] = (time.monotonic(), _requests(pod))

    def _unschedulable_because(self, core: client.CoreV1Api, pod: dict[str, Any]) -> str | None:
        """Why the Pod cannot go to this node now, worded as the scheduler words it; None if it can."""
        namespace = pod["metadata"]["namespace"]
        for volume in pod["spec"].get("volumes") or []:
            claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
            if claim is None:
                continue
            try:
                found = core.read_namespaced_persistent_volume_claim(claim, namespace)
            except ApiException as error:
                if error.status == 404:
                    return f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found.'
                raise
            if (found.status.phase if found.status else None) != "Bound":
                return "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims."
        wanted = _requests(pod)
        used = self._requested_on_node()
        short = [
            resource
            for resource, amount in wanted.items()
            if amount and used.get(resource, Decimal(0)) + amount > parse_quantity(self._capacity[resource])
        ]
        if short:
            said = ["1 Too many pods" if r == "pods" else f"1 Insufficient {r}" for r in sorted(short)]
            return f"0/1 nodes are available: {', '.join(said)}."
        return None

    def _requested_on_node(self) -> dict[str, Decimal]:
        running = {
            pod["metadata"]["uid"]: pod
            for pod in self.kubelet.pods()
            if (pod.get("status") or {}).get("phase") not in FINISHED_PHASES
        }
        seen = {pod["metadata"]["uid"] for pod in self.kubelet.pods()}
        expired = time.monotonic() - ASSUMED_SECONDS
        for uid, (bound_at, _) in list(self._assumed.items()):
            if uid in seen or bound_at < expired:
                del self._assumed[uid]  # the kubelet's view counts it now, or it went away unseen
        total: dict[str, Decimal] = {}
        assumed = [amounts for _, amounts in self._assumed.values()]
        for amounts in [_requests(pod) for pod in running.values()] + assumed:
            for resource, amount in amounts.items():
                total[resource] = total.get(resource, Decimal(0)) + amount
        return total

    # The volume provisioner ------------------------------------------------------------------------

    def _follow_claims(self) -> None:
        core = client.CoreV1Api(self._provisioner_api)
        watching.follow(
            core.list_persistent_volume_claim_for_all_namespaces,
            lambda claim: self._provision(core, claim),
            lambda claim: None,
            self._stop,
        )

    def _provision(self, core: client.CoreV1Api, claim: dict[str, Any]) -> None:
        meta, spec = claim["metadata"], claim["spec"]
        if spec.get("volumeName") or (claim.get("status") or {}).get("phase") != "Pending":
            return
        if spec.get("storageClassName") != STORAGE_CLASS or meta.get("deletionTimestamp"):
            return
        folder = self.volumes / meta["namespace"] / meta["name"]
        folder.mkdir(parents=True, exist_ok=True)
        volume = {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {
                "name": f"pvc-{meta['uid']}",
                "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            },
            "spec": {
                "capacity": {"storage": spec["resources"]["requests"]["storage"]},
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": STORAGE_CLASS,
                "volumeMode": spec.get("volumeMode") or "Filesystem",
                "hostPath": {"path": str(folder), "type": "DirectoryOrCreate"},
                "claimRef": {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "namespace": meta["namespace"],
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            core.create_persistent_volume(volume)
        except ApiException as error:
            if error.status != 409:
                raise

    def _follow_volumes(self) -> None:
        core = client.CoreV1Api(self._provisioner_api)
        watching.follow(
            core.list_persistent_volume,
            lambda volume: self._reclaim(core, volume),
            lambda volume: None,
            self._stop,
        )

    def _reclaim(self, core: client.CoreV1Api, volume: dict[str, Any]) -> None:
        """A released volume of ours goes, with its files (reclaim policy Delete)."""
        meta, spec = volume["metadata"], volume["spec"]
        ours = (meta.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
        released = (volume.get("status") or {}).get("phase") == "Released"
        if not (ours and released and spec.get("persistentVolumeReclaimPolicy") == "Delete"):
            return
        path = Path(spec["hostPath"]["path"])
        if path.is_relative_to(self.volumes):
            shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(ApiException):
            core.delete_persistent_volume(meta["name"])

    # The kubelet API -------------------------------------------------------------------------------

    def _start_kubelet_api(self) -> None:
        app = aiohttp.web.Application()
        app.router.add_get("/healthz", _healthy)
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        for path in ("/exec/{namespace}/{pod}/{container}", "/exec/{namespace}/{pod}/{uid}/{container}"):
            app.router.add_route("*", path, self._exec)
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self._serving.client_ca))
        tls.load_cert_chain(str(self._serving.cert), str(self._serving.key))
        tls.verify_mode = ssl.CERT_REQUIRED  # only the API server, with its kubelet client certificate
        ready = threading.Event()

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._runner = aiohttp.web.AppRunner(
                app,
                handle_signals=False,
                access_log=None,
                max_line_size=MAX_REQUEST_LINE,
                max_field_size=MAX_REQUEST_LINE,
            )
            loop.run_until_complete(self._runner.setup())
            site = aiohttp.web.TCPSite(self._runner, LOCAL_IP, 0, ssl_context=tls)
            loop.run_until_complete(site.start())
            server = site._server
            assert server is not None and server.sockets  # type: ignore[attr-defined]
            self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
            ready.set()
            loop.run_forever()
            loop.close()

        thread = threading.Thread(target=serve, name="node-agent-kubelet-api", daemon=True)
        thread.start()
        if not ready.wait(10):
            raise RuntimeError("the node agent's kubelet API did not start")

    async def _container_logs(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        namespace, name, container = (request.match_info[key] for key in ("namespace", "pod", "container"))
        previous = request.query.get("previous") == "true"
        path = self.kubelet.log_path(namespace, name, container, previous)
        if path is None:
            pod = self.kubelet.pod(namespace, name)
            if pod is None:
                return _refusal(404, f'pod "{name}" not found')
            if previous:
                message = f'previous terminated container "{container}" in pod "{name}" not found'
                return _refusal(400, message)
            return _refusal(400, waiting_to_start(pod, container))
        # One open file from the first read to the last: a restart renames the path to the
        # `.previous` log, and what this instance wrote meanwhile is still read from here.
        with path.open("rb") as log:
            data = log.read()
            tail = request.query.get("tailLines")
            if tail is not None:
                lines = data.splitlines(keepends=True)
                data = b"".join(lines[-int(tail) :]) if int(tail) > 0 else b""
            limit = int(request.query.get("limitBytes") or 0)
            if limit:
                data = data[:limit]
            response = aiohttp.web.StreamResponse(headers={"Content-Type": "text/plain"})
            await response.prepare(request)
            await response.write(data)
            if request.query.get("follow") == "true" and not limit and not previous:
                await self._follow(log, path, namespace, name, response)
        await response.write_eof()
        return response

    async def _follow(
        self, log: BinaryIO, path: Path, namespace: str, name: str, response: aiohttp.web.StreamResponse
    ) -> None:
        """Send what the container instance writes until it ends, as a kubelet follows one instance:
        the Pod stops running, or the container restarts (its log file is another one then)."""
        while True:
            ended = not self.kubelet.is_running(namespace, name) or _other_file(path, log)
            if more := log.read():
                await response.write(more)
            if ended:
                return
            await asyncio.sleep(LOG_FOLLOW_SECONDS)

    async def _exec(self, request: aiohttp.web.Request) -> aiohttp.web.StreamResponse:
        namespace, name, container = (request.match_info[key] for key in ("namespace", "pod", "container"))
        pod = self.kubelet.pod(namespace, name)
        if pod is None:
            return _refusal(404, f'pod "{name}" not found')
        query: MultiDict[str] = MultiDict(
            ("command", command) for command in request.query.getall("command", [])
        )
        query["container"] = container
        for flag, option in EXEC_FLAGS.items():
            query[option] = "true" if request.query.get(flag) in ("1", "true") else "false"
        try:
            return await serve_exec(request, exec_request(pod, query), self.kubelet.exec_in_container)
        except KubernetesError as error:
            return _refusal(error.status or 500, str(error.message))


async def _healthy(request: aiohttp.web.Request) -> aiohttp.web.Response:
    return aiohttp.web.Response(text="ok")


def _other_file(path: Path, log: BinaryIO) -> bool:
    """Whether `path` no longer names the open file `log` (renamed away, or gone)."""
    try:
        return path.stat().st_ino != os.fstat(log.fileno()).st_ino
    except FileNotFoundError:
        return True


def _refusal(code: int, message: str) -> aiohttp.web.Response:
    """A kubelet's error answer: the message as plain text (kube-apiserver passes it on as the message
    of its own Status, so JSON here would reach a user as the text of a JSON document)."""
    return aiohttp.web.Response(status=code, text=message)


def _requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """What the Pod takes of the node: its effective CPU and memory requests (its containers' sum, or
    its largest init container's if more) and one of the node's Pods."""
    spec = pod.get("spec") or {}

    def of(container: Mapping[str, Any]) -> dict[str, Decimal]:
        requests = ((container.get("resources") or {}).get("requests")) or {}
        return {name: parse_quantity(requests[name]) for name in ("cpu", "memory") if name in requests}

    total: dict[str, Decimal] = {"pods": Decimal(1)}
    for container in spec.get("containers") or []:
        for name, amount in of(container).items():
            total[name] = total.get(name, Decimal(0)) + amount
    for container in spec.get("initContainers") or []:
        for name, amount in of(container).items():
            total[name] = max(total.get(name, Decimal(0)), amount)
    return total


def _client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return client.ApiClient(configuration)


def _memory_kib() -> int:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return int(line.split()[1])
    return 1 << 20


def installation(provisioner_user: str) -> list[dict[str, Any]]:
    """What a cluster admin installs for this node's volumes: the default StorageClass, and the
    provisioner's permissions (persistent volumes, and reading claims and classes)."""
    role = "autoscene:local-provisioner"
    return [
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": STORAGE_CLASS,
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": PROVISIONER,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["persistentvolumes"],
                    "verbs": ["get", "list", "watch", "create", "delete"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["persistentvolumeclaims"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["storage.k8s.io"],
                    "resources": ["storageclasses"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": provisioner_user}],
        },
    ]
