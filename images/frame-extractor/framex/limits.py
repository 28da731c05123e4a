"""What the container allows: CPUs and memory from its cgroup limits, and the threads and frames in
flight that fit them.

A Pod with a CPU request but no CPU limit sees every CPU of the node; sized from those, threads and
frames in flight would follow the node (a 4K video took 1.2 GB on a 32-CPU node). So the CPU count is
capped when the cgroup sets no CPU limit, and the memory limit bounds the count again per video, from
the size of its frames.

Sources: cgroup v2 `cpu.max` ("QUOTA PERIOD", or "max PERIOD") and `memory.max` (bytes, or "max");
cgroup v1 `cpu/cpu.cfs_quota_us` (-1: none) with `cpu/cpu.cfs_period_us`, and
`memory/memory.limit_in_bytes` (a huge number: none). The kernel's documentation of cgroups v1 and v2.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Without a CPU limit: at most this many threads of each kind, whatever the node's size.
CPUS_WITHOUT_LIMIT = 8
# cgroup v1 writes a page-rounded 2**63 - 1 for "no limit"; anything past 2**60 bytes means none.
NO_MEMORY_LIMIT_ABOVE = 2**60
# Memory the interpreter, its libraries and the decoder's reference pictures take besides the
# per-thread frames, and the share of the limit that frames may fill (the rest is headroom).
BASE_BYTES = 200 * 2**20
REFERENCE_FRAMES = 6
MEMORY_SHARE = 0.75
# Decoded frames each decoding thread, encoding thread and frame in flight adds, counted in frames:
# the decoder's picture, the frame waiting, the encoder's converted copy (BGR is twice a 4:2:0
# frame) and its output.
FRAMES_PER_THREAD = 5


@dataclass(frozen=True)
class Limits:
    """CPUs to size threads by (at least 1) and the memory limit in bytes (None: no limit)."""

    cpus: int
    memory_bytes: int | None
    cpu_limited: bool = False


def read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cpu_quota(root: Path) -> float | None:
    """CPUs the cgroup's quota allows (e.g. 1.5), or None without a quota."""
    v2 = read_text(root / "cpu.max")
    if v2 is not None:
        quota, _, period = v2.partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100_000)
    quota_v1 = read_text(root / "cpu" / "cpu.cfs_quota_us") or read_text(
        root / "cpu,cpuacct" / "cpu.cfs_quota_us"
    )
    period_v1 = read_text(root / "cpu" / "cpu.cfs_period_us") or read_text(
        root / "cpu,cpuacct" / "cpu.cfs_period_us"
    )
    if quota_v1 is None or period_v1 is None or int(quota_v1) <= 0:
        return None
    return int(quota_v1) / int(period_v1)


def memory_limit(root: Path) -> int | None:
    """The cgroup's memory limit in bytes, or None without one."""
    text = read_text(root / "memory.max") or read_text(root / "memory" / "memory.limit_in_bytes")
    if text is None or text == "max" or int(text) >= NO_MEMORY_LIMIT_ABOVE:
        return None
    return int(text)


def container_limits(cgroup_root: Path = CGROUP_ROOT, node_cpus: int | None = None) -> Limits:
    """The container's limits. `node_cpus` (default: this process's CPU affinity) and `cgroup_root`
    can be given, to present the program with another machine."""
    cpus = node_cpus if node_cpus is not None else len(os.sched_getaffinity(0))
    try:
        quota = cpu_quota(cgroup_root)
        memory = memory_limit(cgroup_root)
    except ValueError:  # an unexpected file format: behave as without limits
        quota, memory = None, None
    if quota is None:
        return Limits(max(1, min(cpus, CPUS_WITHOUT_LIMIT)), memory)
    return Limits(max(1, min(cpus, math.ceil(quota))), memory, cpu_limited=True)


def limits_from(environ: dict[str, str]) -> Limits:
    """The container's limits; EXTRACT_CGROUP_ROOT and EXTRACT_NODE_CPUS stand in for the real ones
    (tests and benchmarks use them to present many CPUs and a memory limit)."""
    root = Path(environ.get("EXTRACT_CGROUP_ROOT") or CGROUP_ROOT)
    node_cpus = environ.get("EXTRACT_NODE_CPUS", "")
    return container_limits(root, int(node_cpus) if node_cpus.isdigit() else None)


def threads_that_fit(limits: Limits, frame_bytes: int) -> int:
    """How many decoding threads (and encoding threads) fit the memory limit for frames of
    `frame_bytes` each: at least 1, at most the CPUs."""
    if limits.memory_bytes is None:
        return limits.cpus
    room = limits.memory_bytes * MEMORY_SHARE - BASE_BYTES - REFERENCE_FRAMES * frame_bytes
    return max(1, min(limits.cpus, int(room // (FRAMES_PER_THREAD * max(1, frame_bytes)))))
