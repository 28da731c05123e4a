"""One active replica at a time: leader election with a `coordination.k8s.io/v1` Lease.

The same protocol as Kubernetes' own controllers: a replica takes the Lease when it is free or its
holder stopped renewing it for `leaseDurationSeconds`, renews it while it works, and stops working as
soon as it cannot renew in time. Writes carry the resourceVersion read, so two replicas racing for
the same Lease cannot both win.
"""

import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from . import timestamps

logger = logging.getLogger(__name__)


def is_free_for(lease_spec: Mapping[str, Any] | None, identity: str, unchanged_for: float) -> bool:
    """Whether `identity` may take (or keep) the Lease: it holds it, nobody does, or the holder lapsed.

    A holder has lapsed when its record has not changed for `leaseDurationSeconds` of *our* clock
    (`unchanged_for`): comparing its renewTime with our wall clock would trust two machines' clocks.
    """
    spec = lease_spec or {}
    holder = spec.get("holderIdentity")
    if not holder or holder == identity:
        return True
    return unchanged_for > float(spec.get("leaseDurationSeconds") or 0)


def held_spec(
    previous: Mapping[str, Any] | None, identity: str, now: datetime, duration_seconds: int
) -> dict[str, Any]:
    """The Lease spec once `identity` holds it at `now` (a new holder counts as a transition)."""
    previous = previous or {}
    renewing = previous.get("holderIdentity") == identity
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_seconds,
        "acquireTime": previous.get("acquireTime") if renewing else _micro_time(now),
        "renewTime": _micro_time(now),
        "leaseTransitions": int(previous.get("leaseTransitions") or 0) + (0 if renewing else 1),
    }


class LeaderElector:
    """Acquire, keep and release one Lease for this replica."""

    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_seconds: int = 15,
        renew_seconds: float = 5,
    ) -> None:
        self._api = client.CoordinationV1Api(api)
        self._sanitize = api.sanitize_for_serialization
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_seconds, self.renew_seconds = lease_seconds, renew_seconds
        # A hung call must not outlive our own lease: it would keep us "leading" past its end.
        self._timeout = max(min(renew_seconds, lease_seconds / 3), 0.5)
        self._observed: tuple[Any, float] = (None, time.monotonic())

    def try_to_hold(self) -> bool:
        """One attempt to take or renew the Lease; True when this replica holds it afterwards."""
        now = timestamps.now()
        try:
            current = self._sanitize(
                self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            )
        except ApiException as error:
            if error.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": held_spec(None, self.identity, now, self.lease_seconds),
            }
            return self._write(
                lambda: self._api.create_namespaced_lease(
                    self.namespace, body, _request_timeout=self._timeout
                )
            )
        if not is_free_for(current.get("spec"), self.identity, self._unchanged_for(current.get("spec"))):
            return False
        body = {**current, "spec": held_spec(current.get("spec"), self.identity, now, self.lease_seconds)}
        return self._write(
            lambda: self._api.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self._timeout
            )
        )

    def _unchanged_for(self, spec: Mapping[str, Any] | None) -> float:
        """Seconds of our own clock since the Lease's holder record last changed."""
        record = (spec or {}).get("holderIdentity"), (spec or {}).get("renewTime")
        if record != self._observed[0]:
            self._observed = (record, time.monotonic())
        return time.monotonic() - self._observed[1]

    def wait_until_leading(self, stop: threading.Event) -> bool:
        """Block until this replica holds the Lease (True), or `stop` is set (False)."""
        logger.info("waiting to lead: Lease %s/%s", self.namespace, self.name)
        while not stop.is_set():
            if self._attempt():
                logger.info("leading as %s", self.identity)
                return True
            stop.wait(self.renew_seconds)
        return False

    def keep_leading(self, stop: threading.Event) -> None:
        """Renew until `stop` is set; return early (having lost the lead) if renewals lapse.

        We give up a little before the others may take over (each call is bounded by a timeout), so
        two replicas never act at once.
        """
        last_renewal = time.monotonic()
        give_up_after = self.lease_seconds - self._timeout
        while not stop.wait(self.renew_seconds):
            if self._attempt():
                last_renewal = time.monotonic()
            elif time.monotonic() - last_renewal >= give_up_after:
                logger.error("lost the Lease %s/%s: another replica may act now", self.namespace, self.name)
                return

    def release(self) -> None:
        """Give the Lease up on a clean stop, so another replica takes over at once. Best effort, each
        call bounded: a stop never waits on an API server that does not answer (the Lease then lapses
        on its own)."""
        try:
            lease = self._api.read_namespaced_lease(self.name, self.namespace, _request_timeout=self._timeout)
            current = self._sanitize(lease)
            if (current.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            spec = {**current["spec"], "holderIdentity": None, "leaseDurationSeconds": 1}
            self._api.replace_namespaced_lease(
                self.name, self.namespace, {**current, "spec": spec}, _request_timeout=self._timeout
            )
        except ApiException as error:
            logger.warning("could not release the Lease: %s", error.reason)
        except Exception as error:  # a timeout or a refused connection: the Lease lapses instead
            logger.warning("could not release the Lease: %s", error)

    def _attempt(self) -> bool:
        try:
            return self.try_to_hold()
        except Exception as error:  # an API hiccup is one missed renewal, not a crash
            logger.warning("Lease %s/%s not renewed: %s", self.namespace, self.name, error)
            return False

    @staticmethod
    def _write(call: Any) -> bool:
        try:
            call()
        except ApiException as error:
            if error.status == 409:  # another replica wrote first
                return False
            raise
        return True


def _micro_time(moment: datetime) -> str:
    return timestamps.render_precise(moment)
