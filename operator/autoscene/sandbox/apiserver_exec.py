"""The `pods/<name>/exec` subresource of the embedded API server, over the websocket channel protocol.

What the kubelet streams for `kubectl exec` and `kubectl cp`: the request names the container and the
command (query parameters `command=` repeated, `container`, `stdin`, `stdout`, `stderr`, `tty`); the
connection is upgraded to a websocket speaking `v5.channel.k8s.io` (or `v4.channel.k8s.io`), where
every message starts with its channel: 0 stdin, 1 stdout, 2 stderr, 3 the final status (a `Status`
object whose causes carry the exit code), 4 terminal resizes; in v5, `255, <channel>` closes a channel,
which is how a client ends stdin without ending the connection.

Running the command is not the server's business: an `ExecHandler` (the sandbox's local kubelet) gets
the request and the channels and returns the exit code.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiohttp.web
from multidict import MultiMapping

from .apiserver_resources import bad_request
from .apiserver_store import Object

logger = logging.getLogger(__name__)

V5_PROTOCOL = "v5.channel.k8s.io"
V4_PROTOCOL = "v4.channel.k8s.io"
PROTOCOLS = (V5_PROTOCOL, V4_PROTOCOL)
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE = 0, 1, 2, 3, 4, 255
# Enough for any client's stdin frames (kubectl sends 32 KiB, the Python client what it is given).
MAX_MESSAGE_BYTES = 64 << 20
# Stdin frames waiting for the command: few, so that a slow reader slows the sender down.
STDIN_BACKLOG = 2
CLOSE_TIMEOUT = 5.0


@dataclass(frozen=True)
class ExecRequest:
    """A command to run in a container of a running pod."""

    pod: Object
    container: str
    command: tuple[str, ...]
    stdin: bool
    stdout: bool
    stderr: bool
    tty: bool


class ExecFailure(Exception):
    """The command could not be started (e.g. its executable does not exist); reported on channel 3."""


class ExecChannels:
    """The command's side of the connection: stdin to read, stdout and stderr to write."""

    def __init__(self, socket: aiohttp.web.WebSocketResponse, request: ExecRequest) -> None:
        self._socket = socket
        self._request = request
        self._stdin: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=STDIN_BACKLOG)
        self._stdin_ended = not request.stdin
        self._stdin_closed = False  # by the client: nothing more will be queued

    async def read_stdin(self) -> bytes | None:
        """The next piece of stdin, or None once the client closed it (or never opened it)."""
        if self._stdin_ended:
            return None
        data = await self._stdin.get()
        if data is None:
            self._stdin_ended = True
        return data

    async def write_stdout(self, data: bytes) -> None:
        if self._request.stdout:
            await self._send(STDOUT, data)

    async def write_stderr(self, data: bytes) -> None:
        if self._request.stderr:
            await self._send(STDERR, data)

    async def _send(self, channel: int, data: bytes) -> None:
        if data and not self._socket.closed:
            await self._socket.send_bytes(bytes([channel]) + data)

    async def receive(self) -> None:
        """Read the client's messages until it closes the connection; stdin goes to the queue."""
        async for message in self._socket:
            if message.type == aiohttp.WSMsgType.BINARY:
                payload = bytes(message.data)
            elif message.type == aiohttp.WSMsgType.TEXT:
                payload = str(message.data).encode()
            else:
                continue
            if not payload:
                continue
            channel, data = payload[0], payload[1:]
            if channel == STDIN and data and self._request.stdin and not self._stdin_closed:
                await self._stdin.put(data)
            elif channel == CLOSE and data[:1] == bytes([STDIN]):
                await self._close_stdin()
        await self._close_stdin()  # a client gone is a stdin ended

    async def _close_stdin(self) -> None:
        if self._request.stdin and not self._stdin_closed:
            self._stdin_closed = True
            await self._stdin.put(None)


ExecHandler = Callable[[ExecRequest, ExecChannels], Awaitable[int]]


def exec_request(pod: Object, query: MultiMapping[str]) -> ExecRequest:
    """The request, checked as the API server and the kubelet check it before upgrading."""
    metadata, spec = pod["metadata"], pod.get("spec") or {}
    name = metadata["name"]
    command = tuple(query.getall("command", []))
    if not command:
        raise bad_request("you must specify at least one command for the container")
    containers = [container["name"] for container in spec.get("containers") or []]
    container = query.get("container") or (containers[0] if len(containers) == 1 else "")
    if not container:
        choices = " ".join(containers)
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{choices}]")
    if container not in containers:
        raise bad_request(f"container {container} is not valid for pod {name}")
    phase = (pod.get("status") or {}).get("phase") or "Pending"
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    if phase != "Running":
        raise bad_request(f'unable to upgrade connection: pod "{name}" is {phase}, container not running')
    return ExecRequest(
        pod=pod,
        container=container,
        command=command,
        stdin=_flag(query, "stdin"),
        stdout=_flag(query, "stdout"),
        stderr=_flag(query, "stderr"),
        tty=_flag(query, "tty"),
    )


async def serve_exec(
    raw_request: aiohttp.web.BaseRequest, request: ExecRequest, handler: ExecHandler | None
) -> aiohttp.web.StreamResponse:
    """Upgrade to the channel protocol, run the command through `handler`, send its status, close."""
    if handler is None:
        raise bad_request("unable to upgrade connection: no container runtime serves exec here")
    offered = {part.strip() for part in raw_request.headers.get("Sec-WebSocket-Protocol", "").split(",")}
    if not offered & set(PROTOCOLS):
        wanted = ", ".join(PROTOCOLS)
        raise bad_request(f"unable to upgrade connection: the client must offer one of {wanted}")
    socket = aiohttp.web.WebSocketResponse(protocols=PROTOCOLS, max_msg_size=MAX_MESSAGE_BYTES)
    await socket.prepare(raw_request)
    channels = ExecChannels(socket, request)
    receiving = asyncio.create_task(channels.receive())
    try:
        status = await _run(handler, request, channels)
        if not socket.closed:
            await socket.send_bytes(bytes([ERROR]) + json.dumps(status).encode())
    except ConnectionError:
        pass  # the client went away; nobody is left to tell
    finally:
        receiving.cancel()
        await asyncio.gather(receiving, return_exceptions=True)
        with contextlib.suppress(TimeoutError, ConnectionError):  # a client that never says goodbye
            await asyncio.wait_for(socket.close(), CLOSE_TIMEOUT)
    return socket


async def _run(handler: ExecHandler, request: ExecRequest, channels: ExecChannels) -> dict[str, Any]:
    try:
        exit_code = await handler(request, channels)
    except ExecFailure as failure:
        return failure_status(str(failure))
    return exit_status(request.command, exit_code)


def exit_status(command: tuple[str, ...], exit_code: int) -> dict[str, Any]:
    """The channel-3 `Status` of a finished command, as the kubelet words it."""
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    return {
        "metadata": {},
        "status": "Failure",
        "message": (
            "command terminated with non-zero exit code: error executing command "
            f"[{' '.join(command)}], exit code {exit_code}"
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]},
    }


def failure_status(message: str) -> dict[str, Any]:
    return {"metadata": {}, "status": "Failure", "message": message, "reason": "InternalError"}


def _flag(query: Mapping[str, Any], name: str) -> bool:
    return str(query.get(name, "")).lower() in ("true", "1")
