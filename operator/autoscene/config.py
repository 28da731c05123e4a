"""Operator-wide settings, from the environment (set by the Deployment or the `autoscene operator` flags)."""

import os
from dataclasses import dataclass

JOB_TTL_VARIABLE = "AUTOSCENE_JOB_TTL_SECONDS"
DEFAULT_JOB_TTL_SECONDS = 3600


@dataclass(frozen=True)
class OperatorConfig:
    # Finished Jobs and their Pods are deleted this long after they end (the Invocation keeps the record);
    # None keeps them forever.
    job_ttl_seconds: int | None = DEFAULT_JOB_TTL_SECONDS


def current() -> OperatorConfig:
    return OperatorConfig(job_ttl_seconds=parse_job_ttl(os.environ.get(JOB_TTL_VARIABLE, "")))


def parse_job_ttl(raw: str) -> int | None:
    """Seconds as a whole number ≥ 0, 'never' (None), or empty for the default; anything else is refused."""
    raw = raw.strip()
    if not raw:
        return DEFAULT_JOB_TTL_SECONDS
    if raw.lower() in ("never", "none"):
        return None
    if not raw.isdigit():
        raise ValueError(f"a job TTL is a whole number of seconds or 'never', not {raw!r}")
    return int(raw)
