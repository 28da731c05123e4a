"""The operator's configuration: one object, built once at start-up from `autoscene operator`'s flags
(the Deployment's args), installed, and read by the modules that need one of its values."""

from dataclasses import dataclass

DEFAULT_JOB_TTL_SECONDS = 3600


@dataclass(frozen=True)
class Leadership:
    """The Lease that lets one replica act at a time (coordination.k8s.io/v1; client-go's leader
    election timings)."""

    #: Namespace of the Lease (the operator's own: `$POD_NAMESPACE` in the Deployment).
    namespace: str
    #: Name of the Lease.
    name: str = "autoscene-operator"
    #: Seconds a holder's claim lasts without renewal; another replica may take over after that.
    lease_seconds: int = 15
    #: Seconds between renewals by the holder (well under `lease_seconds`).
    renew_seconds: float = 5


@dataclass(frozen=True)
class OperatorConfig:
    """How the operator runs. Every field has the default the Deployment relies on."""

    #: Namespaces the operator serves; empty: every namespace (`--all-namespaces`).
    namespaces: tuple[str, ...] = ()
    #: Seconds after which finished Jobs and their Pods are deleted (the Invocation keeps the run's
    #: record); None keeps them (`--job-ttl-seconds never`).
    job_ttl_seconds: int | None = DEFAULT_JOB_TTL_SECONDS
    #: Seconds between reconciliation passes, which repair what watch events missed.
    reconcile_seconds: float = 30
    #: Seconds between applications of the Triggers' retention policies.
    retention_seconds: float = 600
    #: The Lease; None acts without leader election (one local process).
    leadership: Leadership | None = None
    #: Port of the Prometheus metrics endpoint; None serves none.
    metrics_port: int | None = None
    #: Whether each run's log (its last MiB) is kept on its Record's volume for `autoscene logs` after
    #: the Job is gone (`--no-keep-logs`: only the Invocation's status.logTail stays).
    keep_logs: bool = True
    #: Port the kept logs are fetched from by the keeper Jobs (0: any free port); the Record's
    #: namespaces must let their Pods reach it.
    log_port: int = 0
    #: kopf's health endpoint (e.g. http://0.0.0.0:8080/healthz) for liveness probes; None serves none.
    liveness: str | None = None


_installed = OperatorConfig()


def install(config: OperatorConfig) -> None:
    """Make `config` the one `current()` returns (at start-up, before any handler runs)."""
    global _installed
    _installed = config


def current() -> OperatorConfig:
    return _installed


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
