"""What a running sandbox leaves in its folder for other processes (the CLI) to find: the file it holds
a lock on, and the state file naming its volumes. Light on purpose: the CLI reads it without loading
kopf or the Kubernetes client."""

import json
from pathlib import Path

STATE_FILE = "sandbox.json"
LOCK_FILE = "sandbox.lock"


def volumes_of(kubeconfig: Path) -> Path | None:
    """The volumes folder of the running sandbox this kubeconfig belongs to, if it is one."""
    state = kubeconfig.parent / STATE_FILE
    if not state.is_file():
        return None
    return Path(json.loads(state.read_text())["volumes"])
