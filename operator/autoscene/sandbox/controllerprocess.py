"""The sandbox's Job controller in a process of its own, as kube-controller-manager is on a cluster.

The embedded API server, its kubelet and the controller otherwise share one interpreter, and so one
lock: a burst of runs keeps that process's core busy while the machine's other cores wait. The
controller talks to the API server only over HTTP (its kubeconfig), so it moves out whole. It ends
when the sandbox closes its standard input, or dies and so closes it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path


class JobControllerProcess:
    """`start()` the controller against the API server of `kubeconfig`; `stop()` it."""

    def __init__(self, kubeconfig: Path) -> None:
        self._kubeconfig = kubeconfig
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        package_root = str(Path(__file__).resolve().parents[2])  # where `autoscene` is imported from
        search_path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, str(self._kubeconfig)],
            stdin=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": search_path},
        )

    @property
    def process(self) -> subprocess.Popen[bytes] | None:
        """The controller's process once started (for its CPU use, say)."""
        return self._process

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def main(kubeconfig: str) -> None:
    from .. import kube
    from .jobcontroller import LocalJobController

    # Ctrl-C in a terminal reaches the whole process group: the sandbox stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, format="job controller: %(levelname)s %(message)s")
    controller = LocalJobController(kube.configure(kubeconfig))
    controller.start()
    sys.stdin.buffer.read()  # until the sandbox closes it, or ends
    controller.stop()


if __name__ == "__main__":
    main(sys.argv[1])
