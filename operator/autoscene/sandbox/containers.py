"""A container's command, environment and file system as a local process sees them.

What a container runtime would isolate is mapped instead, for the sandbox's kubelet:
- a container image maps to a local folder that stands for the image's files (e.g. `/app`), and to
  local programs for the commands it names;
- volume mounts map to local folders: a PersistentVolumeClaim to `<volumes>/<namespace>/<claim>`
  (with `subPath`), emptyDir, configMap, secret, downwardAPI and projected volumes to folders of the
  Pod's own;
- paths under a mount or an image folder, in the command, the arguments and environment values, are
  rewritten to the local folders, and `python` runs this interpreter;
- the termination message path maps to a file of the Pod's own;
- a container without a command runs its image's default one (`LocalImage.entrypoint`, `.cmd`).
Security contexts and resource limits are not enforced locally.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..imagerefs import kubelet_refusal, reference_problem

TERMINATION_MESSAGE_LIMIT = 4096
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
# Every Pod here shares the host network: the address of the node, and of each Pod.
LOCAL_IP = "127.0.0.1"
# Volumes that live in the Pod's own folder: emptyDirs, and those the kubelet writes from the API.
POD_FOLDER_VOLUMES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected")


class UnrunnableContainer(Exception):
    """The container cannot be run locally (unknown image, unsupported volume or variable source)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LocalImage:
    """What stands for a container image here: local folders for the image's own paths, and local
    executables for the programs its commands name (e.g. the operator image's `autoscene`)."""

    folders: Mapping[str, Path] = field(default_factory=dict)
    programs: Mapping[str, Path] = field(default_factory=dict)
    # The real image's own command, its ENTRYPOINT and CMD, run when a container overrides neither.
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()


def image_repository(image: str) -> str:
    """`registry/name:tag@digest` → `registry/name`, the part an image table is keyed by."""
    without_digest = image.split("@", 1)[0]
    last = without_digest.rsplit("/", 1)[-1]
    return without_digest[: len(without_digest) - len(last)] + last.split(":", 1)[0]


# The shells whose `-c` script has its container paths mapped (busybox's and the usual ones).
SHELLS = frozenset({"sh", "ash", "bash", "dash"})


class PathMap:
    """Container paths → local paths, longest prefix first, for command lines and variables."""

    def __init__(self, mapping: Mapping[str, Path], programs: Mapping[str, Path] | None = None) -> None:
        self.programs = dict(programs or {})
        self._prefixes = sorted(
            ((prefix.rstrip("/"), local) for prefix, local in mapping.items()),
            key=lambda item: len(item[0]),
            reverse=True,
        )

    def local(self, value: str) -> str:
        for prefix, local in self._prefixes:
            if value == prefix:
                return str(local)
            if value.startswith(prefix + "/"):
                return str(local / value[len(prefix) + 1 :])
        return value

    def local_in_script(self, script: str) -> str:
        """A shell script's text with each container path that begins a word (at the start, or after
        a space, a quote, `=`, `:`, a redirection, `(`, `;`, `|`, `&` or a backquote) mapped as `local`
        maps a whole value: `wc -c /cos/files/$AUTOSCENE_FILE` reads the Record's file here too.
        `/cos/filesystem` is no path under `/cos/files`, and stays."""
        if not self._prefixes:
            return script
        prefixes = "|".join(re.escape(prefix) for prefix, _ in self._prefixes)  # the longest first
        path = re.compile(rf"(?<![^\s\"'=:<>(;|&`])(?:{prefixes})(?=[/\s\"':<>);|&`]|$)")
        return path.sub(lambda found: self.local(found.group(0)), script)


def container_paths(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    volumes: Path,
    images: Mapping[str, LocalImage],
    pod_dir: Path,
    message_file: Path | None = None,
) -> PathMap:
    """The container's view of the file system, as local paths: its image's folders and its mounts."""
    problem = reference_problem(container["image"])
    if problem is not None:
        raise UnrunnableContainer("InvalidImageName", kubelet_refusal(container["image"], problem))
    image = images.get(image_repository(container["image"]))
    if image is None:
        known = ", ".join(sorted(images)) or "none"
        raise UnrunnableContainer(
            "ErrImagePull", f'image "{container["image"]}" has no local stand-in (known: {known})'
        )
    mapping: dict[str, Path] = dict(image.folders)
    declared = {volume["name"]: volume for volume in pod["spec"].get("volumes") or []}
    namespace = pod["metadata"]["namespace"]
    for mount in container.get("volumeMounts") or []:
        volume = declared.get(mount["name"])
        if volume is None:
            raise UnrunnableContainer(
                "CreateContainerConfigError", f'volume "{mount["name"]}" is not declared'
            )
        if "persistentVolumeClaim" in volume:
            root = volumes / namespace / volume["persistentVolumeClaim"]["claimName"]
        elif any(kind in volume for kind in POD_FOLDER_VOLUMES):
            root = pod_dir / "volumes" / mount["name"]
        else:
            raise UnrunnableContainer(
                "CreateContainerConfigError",
                f'volume "{mount["name"]}" is of a kind the local runner cannot mount',
            )
        local = root / mount["subPath"] if mount.get("subPath") else root
        local.mkdir(parents=True, exist_ok=True)  # as the kubelet does for a missing subPath
        mapping[mount["mountPath"]] = local
    if message_file is not None:
        mapping[container.get("terminationMessagePath", "/dev/termination-log")] = message_file
    return PathMap(mapping, image.programs)


Sources = Callable[[str, str], Mapping[str, str] | None]  # (kind, name) → a ConfigMap's or Secret's data
KEY_REFERENCES = (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef"))


def container_environment(
    container: Mapping[str, Any],
    paths: PathMap,
    folder: Path,
    pod: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
    sources: Sources | None = None,
) -> tuple[dict[str, str], str]:
    """The variables and working folder of a container's process, its paths mapped to local ones.

    In the kubelet's order (Kubernetes docs, "Define Environment Variables for a Container"): `extra`
    (the service variables), then `envFrom` (ConfigMaps and Secrets, with their `prefix`), then `env`,
    whose `valueFrom` reads the Pod (`fieldRef`, the downward API) or a key of a ConfigMap or Secret
    (`sources(kind, name)`: its data, None when it does not exist). A missing source or key that is not
    `optional` makes the container unrunnable (CreateContainerConfigError), as on a node.
    """
    home = folder / "home"
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(extra or {})
    for entry in container.get("envFrom") or []:
        for kind, reference_field in (("configMap", "configMapRef"), ("secret", "secretRef")):
            if reference_field in entry:
                data = _source_data(sources, kind, entry[reference_field])
                env.update({f"{entry.get('prefix', '')}{key}": value for key, value in (data or {}).items()})
    for variable in container.get("env") or []:
        source = variable.get("valueFrom") if "value" not in variable else None
        if source and "fieldRef" in source and pod is not None:
            env[variable["name"]] = downward_api_value(pod, source["fieldRef"]["fieldPath"])
            continue
        keyed = next(
            (
                (kind, source[key_field])
                for kind, key_field in KEY_REFERENCES
                if source and key_field in source
            ),
            None,
        )
        if keyed is not None:
            kind, reference = keyed
            data = _source_data(sources, kind, reference)
            if data is not None and reference["key"] in data:
                env[variable["name"]] = data[reference["key"]]
            elif data is not None and not reference.get("optional"):
                raise UnrunnableContainer(
                    "CreateContainerConfigError",
                    f'couldn\'t find key {reference["key"]} in {kind} "{reference["name"]}"',
                )
            continue
        if source:
            raise UnrunnableContainer(
                "CreateContainerConfigError",
                f'variable "{variable["name"]}" uses a valueFrom source not supported locally',
            )
        env[variable["name"]] = paths.local(str(variable.get("value", "")))
    working_dir = container.get("workingDir")
    return env, paths.local(working_dir) if working_dir else str(home)


def _source_data(
    sources: Sources | None, kind: str, reference: Mapping[str, Any]
) -> Mapping[str, str] | None:
    """The data of the ConfigMap or Secret `reference` names; None when it is missing and optional."""
    data = sources(kind, reference["name"]) if sources is not None else None
    if data is None and not reference.get("optional"):
        raise UnrunnableContainer("CreateContainerConfigError", f'{kind} "{reference["name"]}" not found')
    return data


def downward_api_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API field of the Pod (the fields `fieldRef` accepts for env and volumes)."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    values = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": LOCAL_IP,
        "status.podIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
    }
    if path not in values:
        raise UnrunnableContainer("CreateContainerConfigError", f'field "{path}" is not supported locally')
    return str(values[path])


def container_command(container: Mapping[str, Any], images: Mapping[str, LocalImage]) -> list[str]:
    """The command line a container runs: its `command` and `args` over its image's defaults.

    Kubernetes docs, "Define a Command and Arguments for a Container": `command` replaces the image's
    ENTRYPOINT and drops its CMD; `args` alone replace the CMD. With neither a command nor a default,
    containerd refuses the container ("no command specified").
    """
    default = images.get(image_repository(container["image"]), LocalImage())
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [*command, *(args or [])]
    else:
        argv = [*default.entrypoint, *(args if args else default.cmd)]
    if not argv:
        raise UnrunnableContainer(
            "StartError",
            f'no command specified: container "{container["name"]}" has none, and image '
            f'"{container["image"]}" has no default command here',
        )
    return [str(part) for part in argv]


def start_failure(why: str) -> str:
    """The message of a container whose process could not be started, as containerd and runc word it
    (e.g. `why` = `exec: "x": executable file not found in $PATH`)."""
    return (
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: "
        f"runc create failed: unable to start container process: {why}: unknown"
    )


def local_argv(command: list[str], paths: PathMap) -> list[str]:
    """A container's command line, runnable here: executables and paths mapped to local ones, and in
    a shell's `-c` script the paths it names (`PathMap.local_in_script`)."""
    arguments = [paths.local(argument) for argument in command[1:]]
    if Path(command[0]).name in SHELLS and "-c" in command[1:]:
        script = command.index("-c", 1)  # the script is the argument after -c: arguments[script]
        if script < len(arguments):
            arguments[script] = paths.local_in_script(command[script + 1])
    return [_local_executable(command[0], paths), *arguments]


def _local_executable(program: str, paths: PathMap) -> str:
    if program in ("python", "python3", "/usr/local/bin/python", "/usr/bin/python3"):
        return sys.executable
    if program in paths.programs:
        return str(paths.programs[program])
    mapped = paths.local(program)
    if mapped != program:
        return mapped
    found = shutil.which(program)
    if found is None:
        # runc's words; locally the host's programs stand for the image's.
        why = (
            f'exec: "{program}": stat {program}: no such file or directory'
            if "/" in program
            else f'exec: "{program}": executable file not found in $PATH'
        )
        raise UnrunnableContainer("StartError", why)
    return found


def termination_message(
    container: Mapping[str, Any], message_file: Path, log_text: str, exit_code: int
) -> str:
    """What the container wrote to its terminationMessagePath (4 KiB at most), else, when it failed
    under `FallbackToLogsOnError`, the end of its log (80 lines, 2 KiB), as the kubelet does."""
    message = (
        message_file.read_bytes()[:TERMINATION_MESSAGE_LIMIT].decode(errors="replace")
        if message_file.exists()
        else ""
    )
    if (
        not message.strip()
        and exit_code != 0
        and container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
    ):
        tail = "\n".join(log_text.splitlines()[-FALLBACK_LOG_LINES:])
        message = tail.encode()[-FALLBACK_LOG_BYTES:].decode(errors="replace")
    return message


def container_identity(container: Mapping[str, Any], started: bool = True) -> dict[str, str]:
    """The fields a container status always carries; the image ID names the local stand-in once it ran."""
    image_id = f"local://{container['image']}" if started else ""
    return {"name": container["name"], "image": container["image"], "imageID": image_id}


def kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
