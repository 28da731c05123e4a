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
    raw = os.environ.get(JOB_TTL_VARIABLE, "").strip()
    if raw.lower() in ("never", "none"):
        return OperatorConfig(job_ttl_seconds=None)
    return OperatorConfig(job_ttl_seconds=int(raw) if raw else DEFAULT_JOB_TTL_SECONDS)
