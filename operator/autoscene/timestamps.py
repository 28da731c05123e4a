"""RFC 3339 timestamps as the Kubernetes API writes them, and durations as `kubectl` prints them."""

from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC)


def render(moment: datetime) -> str:
    """Second precision with a `Z`, like `metadata.creationTimestamp`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def render_precise(moment: datetime) -> str:
    """Microsecond precision, for ordering events within one second (e.g. a file's `addedAt`)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def human_duration(seconds: float) -> str:
    """`kubectl`-style short durations: 850ms, 42s, 3m7s, 2h5m."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h{rest // 60}m" if rest // 60 else f"{hours}h"
