"""Kubernetes Events a user sees in `kubectl describe`: posted through the API from any thread."""

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from . import kube, timestamps

logger = logging.getLogger(__name__)
COMPONENT = "autoscene-operator"


class SpamFilter:
    """client-go's Event spam filter (tools/record, `EventSourceObjectSpamFilter`): each source, object,
    type and reason may post a burst of `burst` Events, then one every `refill_seconds`; the rest are
    dropped. A Record that receives thousands of files so costs the API server a few dozen
    `TriggerFired` Events, not thousands. Its buckets are kept for the `capacity` keys seen last.

    Our own few lines: the keyed, bounded token buckets are client-go's design, which no Python
    rate-limiting library reproduces as a whole.
    """

    def __init__(self, burst: int = 25, refill_seconds: float = 300, capacity: int = 4096) -> None:
        self.burst, self.refill_seconds, self.capacity = burst, refill_seconds, capacity
        self._buckets: OrderedDict[tuple[str, ...], tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allows(self, key: tuple[str, ...], now: float | None = None) -> bool:
        """Take a token from `key`'s bucket (full at first); False when it is empty."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, since = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - since) / self.refill_seconds)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            while len(self._buckets) > self.capacity:
                self._buckets.popitem(last=False)
            return allowed


SPAM = SpamFilter()


def post(obj: Mapping[str, Any], reason: str, message: str, warning: bool = False) -> None:
    """Post an Event about `obj`, unless `SPAM` drops it; a failure to post is logged, never raised
    (the work matters more)."""
    meta = obj["metadata"]
    event_type = "Warning" if warning else "Normal"
    key = (str(obj.get("kind")), meta["namespace"], meta["name"], str(meta.get("uid")), event_type, reason)
    if not SPAM.allows(key):
        logger.debug("dropped the %s Event on %s: too many of them", reason, meta["name"])
        return
    now = timestamps.render(timestamps.now())
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": event_type,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        kube.unread(kube.request_raw("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body))
    except Exception as error:
        logger.warning("could not post the %s Event on %s: %s", reason, meta["name"], error)
