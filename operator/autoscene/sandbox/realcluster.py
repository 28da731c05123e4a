"""A real cluster on this machine: Kubernetes' control plane, one node agent, autoscene deployed.

`RealCluster` starts the control plane (`controlplane.py`) and the node agent (`nodeagent.py`),
installs the node's StorageClass and provisioner permissions, then deploys autoscene exactly as a
user does, with `kubectl apply -k manifests`: the CRDs, the ServiceAccount, ClusterRole and binding,
and the operator's Deployment, whose Pod the node agent runs with the `autoscene` command of this
environment standing in for the operator image, authenticated by its ServiceAccount's token. So every
call the operator makes is checked by the real authorizer, and every object by the real API server.

One difference from the manifests: the Deployment runs one replica, since the node agent's Pods share
the host's network and two replicas would both listen on ports 8080 and 9090.
"""

import json
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .. import cluster_upload, kube, paths, upload
from . import controlplane, nodeagent
from .containers import LocalImage
from .service import Service
from .session import FolderLock, local_images, wait_for

OPERATOR_NAMESPACE = "autoscene-system"
OPERATOR_DEPLOYMENT = "autoscene-operator"


def real_images() -> dict[str, LocalImage]:
    """The sandbox's image stand-ins, and the operator image: this environment's `autoscene`."""
    program = Path(sys.executable).parent / "autoscene"
    operator = LocalImage(
        programs={"autoscene": program}, entrypoint=("autoscene",), cmd=("operator", "--all-namespaces")
    )
    return {**local_images(), "autoscene/operator": operator}


class RealCluster(Service):
    """Start with `with RealCluster(folder) as cluster:`; everything stops when the block ends.

    The same verbs as the embedded `Sandbox` (`apply`, `upload`, `kubeconfig`, `volumes`, `namespace`),
    so the demo and the tests run on either.
    """

    def __init__(self, folder: Path, namespace: str = "default", with_operator: bool = True) -> None:
        self.folder = folder.resolve()
        self.namespace = namespace
        self.with_operator = with_operator
        self.plane = controlplane.ControlPlane(self.folder / "control-plane")
        self.kubeconfig = self.folder / "kubeconfig"
        self.volumes = self.folder / "volumes"
        self.agent: nodeagent.NodeAgent | None = None
        self._lock = FolderLock(self.folder)

    @property
    def url(self) -> str:
        return self.plane.url

    def start(self) -> None:
        self._lock.acquire()
        self.plane.start()
        self.kubeconfig.write_text(self.plane.kubeconfig.read_text())
        self.api = kube.configure(str(self.kubeconfig))
        self.kubectl_apply(nodeagent.installation(controlplane.PROVISIONER_USER))
        pki = self.plane.pki
        self.agent = nodeagent.NodeAgent(
            self.plane.node_name,
            nodeagent.Identities(
                node=self.plane.kubeconfig_of(controlplane.NODE),
                scheduler=self.plane.kubeconfig_of(controlplane.SCHEDULER),
                provisioner=self.plane.kubeconfig_of(controlplane.PROVISIONER),
            ),
            nodeagent.Serving(pki.node_serving.cert, pki.node_serving.key, pki.ca.cert),
            self.volumes,
            real_images(),
            service=(self.plane.apiserver_host, self.plane.apiserver_port),
        )
        self.agent.start()
        self.kubectl("apply", "--server-side", "-k", str(paths.require(paths.MANIFESTS)))
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "-l",
            "app.kubernetes.io/part-of=autoscene",
        )
        self.deploy_operator(replicas=1 if self.with_operator else 0)

    def deploy_operator(self, replicas: int = 1) -> None:
        """Scale the operator's Deployment (0: no operator) and wait until it is rolled out."""
        self.kubectl(
            "scale", "-n", OPERATOR_NAMESPACE, f"deployment/{OPERATOR_DEPLOYMENT}", f"--replicas={replicas}"
        )
        self.kubectl(
            "rollout",
            "status",
            "-n",
            OPERATOR_NAMESPACE,
            f"deployment/{OPERATOR_DEPLOYMENT}",
            "--timeout=120s",
        )

    def stop(self) -> None:
        if not self._lock.held:
            return  # never started: the folder is another sandbox's
        if self.agent is not None:
            self.agent.stop()
        self.plane.stop()
        self._lock.release()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        """This release's kubectl as the admin; its output, or `RuntimeError` with what it said."""
        done = self.plane.kubectl(*args, input=input)
        if done.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def kubectl_apply(self, objects: Iterable[Mapping[str, Any]], namespace: str | None = None) -> list[str]:
        """`kubectl apply` of the objects (server-side validation and admission); `kind/name` of each."""
        stream = yaml.safe_dump_all([dict(obj) for obj in objects], sort_keys=False)
        output = self.kubectl(
            "apply", "-n", namespace or self.namespace, "-o", "json", "-f", "-", input=stream
        )
        answer = json.loads(output)
        items = answer.get("items") if answer.get("kind") == "List" else [answer]
        return [f"{item['kind'].lower()}/{item['metadata']['name']}" for item in items or []]

    def apply(self, objects: Iterable[Mapping[str, Any]]) -> list[str]:
        return self.kubectl_apply(objects)

    def upload(
        self, record: str, planned: list[tuple[Path, str]], namespace: str | None = None
    ) -> list[upload.UploadedFile]:
        """Upload as on any cluster: an uploader Pod, tar over exec, checksums checked on arrival."""
        return cluster_upload.upload_via_exec(namespace or self.namespace, record, planned, lambda _: None)

    def restart_operator(self) -> None:
        """Delete the operator's Pod; its ReplicaSet makes a new one, which takes the Lease over."""
        selector = f"app.kubernetes.io/name={OPERATOR_DEPLOYMENT}"
        before = set(
            self.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE, "-l", selector, "-o", "name").split()
        )
        self.kubectl("delete", "pods", "-n", OPERATOR_NAMESPACE, "-l", selector, "--wait=true")

        def replaced() -> bool | None:
            pods = self.kubectl(
                "get",
                "pods",
                "-n",
                OPERATOR_NAMESPACE,
                "-l",
                selector,
                "-o",
                "jsonpath={range .items[?(@.status.phase=='Running')]}{.metadata.name}{'\\n'}{end}",
            ).split()
            return bool(pods) and not (set(f"pod/{pod}" for pod in pods) & before) or None

        wait_for(replaced, 120, "a new operator Pod")
