"""Faults a real API server shows under load or while it restarts, injected into one listener.

The embedded server can serve a second address whose requests suffer these faults (the sandbox's own
kubelet and Job controller keep the clean one), so a test can point an operator at it and check that
nothing is lost or doubled. Each fault answers as kube-apiserver does:

- 500 InternalError, in bursts (etcd unavailable, a restarting server);
- 429 TooManyRequests with `Retry-After` (API Priority and Fairness rejecting a request);
- 409 Conflict on an update or a JSON patch (someone else wrote the object first);
- a slow answer (a loaded server);
- a watch stream cut off mid-way (a restarting server, a load balancer's idle timeout).

A faulted request is refused before it reaches the objects, as those errors are on a real server
(except a cut watch, which was served until it was cut).
"""

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp.web
from kmock import KubernetesError

from .apiserver_http import json_response, status_of

Handler = Callable[[aiohttp.web.BaseRequest], Awaitable[aiohttp.web.StreamResponse]]
_UPDATES = ("PUT", "PATCH")
_JSON_PATCH = "application/json-patch+json"


@dataclass(frozen=True)
class ApiFaults:
    """How often each fault strikes, as a share (0–1) of the requests it applies to."""

    server_errors: float = 0.0  # a 500 starts a burst: the next `burst - 1` requests fail too
    burst: int = 3
    throttled: float = 0.0  # 429 with Retry-After: `retry_after` seconds
    retry_after: int = 1
    conflicts: float = 0.0  # 409 on PUT and on JSON patches (the compare-and-swap kind of write)
    slow: float = 0.0  # answered after a pause of up to `slow_seconds`
    slow_seconds: float = 1.0
    dropped_watches: float = 0.0  # a watch cut after 0.2–`watch_seconds` seconds
    watch_seconds: float = 3.0
    seed: int = 0


class FaultyListener:
    """An aiohttp handler that injects `faults` in front of `serve` (the emulator)."""

    def __init__(self, serve: Handler, faults: ApiFaults) -> None:
        self.serve, self.faults = serve, faults
        self._chance = random.Random(faults.seed)
        self._burst_left = 0
        self.injected: dict[str, int] = {}

    async def __call__(self, request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        faults, chance = self.faults, self._chance
        if request.path in ("/healthz", "/livez", "/readyz", "/version"):
            return await self.serve(request)
        if chance.random() < faults.slow:
            self._count("slow")
            await asyncio.sleep(chance.uniform(0, faults.slow_seconds))
        if self._burst_left or chance.random() < faults.server_errors:
            self._burst_left = self._burst_left - 1 if self._burst_left else faults.burst - 1
            self._count("500")
            return _refusal(500, "InternalError", "Internal error occurred: etcdserver: request timed out")
        if chance.random() < faults.throttled:
            self._count("429")
            refusal = _refusal(
                429,
                "TooManyRequests",
                "The server has received too many requests and has asked us to try again later.",
                retryAfterSeconds=faults.retry_after,
            )
            refusal.headers["Retry-After"] = str(faults.retry_after)
            return refusal
        if _is_compare_and_swap(request) and chance.random() < faults.conflicts:
            self._count("409")
            return _refusal(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; please apply your changes "
                "to the latest version and try again",
            )
        if request.query.get("watch") in ("true", "1") and chance.random() < faults.dropped_watches:
            self._count("dropped watch")
            cut_after = chance.uniform(0.2, faults.watch_seconds)
            try:
                return await asyncio.wait_for(self.serve(request), cut_after)
            except TimeoutError:
                # The stream was under way: ending the handler now closes the connection mid-body.
                raise ConnectionResetError("watch stream cut") from None
        return await self.serve(request)

    def _count(self, fault: str) -> None:
        self.injected[fault] = self.injected.get(fault, 0) + 1


def _is_compare_and_swap(request: aiohttp.web.BaseRequest) -> bool:
    content_type = request.headers.get("Content-Type", "")
    return request.method == "PUT" or (request.method == "PATCH" and content_type.startswith(_JSON_PATCH))


def _refusal(code: int, reason: str, message: str, **details: object) -> aiohttp.web.Response:
    error = KubernetesError(status=code, reason=reason, message=message, details=details or None)
    return json_response(status_of(error), status=code)
