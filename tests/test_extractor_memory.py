"""The frame extractor sizes its threads and frames in flight from the container's cgroup limits, so a
4K or 8K video stays within a 1 GiB memory limit however many CPUs the node has."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .extractor_fixtures import EXTRACTOR, extractor, job_environment

GIB = 2**30


def cgroup_v2(folder: Path, cpu_max: str, memory_max: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cpu.max").write_text(f"{cpu_max}\n")
    (folder / "memory.max").write_text(f"{memory_max}\n")
    return folder


def cgroup_v1(folder: Path, quota: int, period: int, memory: int) -> Path:
    (folder / "cpu").mkdir(parents=True)
    (folder / "memory").mkdir(parents=True)
    (folder / "cpu" / "cpu.cfs_quota_us").write_text(f"{quota}\n")
    (folder / "cpu" / "cpu.cfs_period_us").write_text(f"{period}\n")
    (folder / "memory" / "memory.limit_in_bytes").write_text(f"{memory}\n")
    return folder


def test_cgroup_v2_limits(tmp_path: Path) -> None:
    limits = extractor("limits")
    root = cgroup_v2(tmp_path, "150000 100000", str(GIB))
    assert limits.container_limits(root, node_cpus=32) == limits.Limits(2, GIB, cpu_limited=True)
    root = cgroup_v2(tmp_path, "max 100000", "max")
    assert limits.container_limits(root, node_cpus=32) == limits.Limits(limits.CPUS_WITHOUT_LIMIT, None)
    assert limits.container_limits(root, node_cpus=2) == limits.Limits(2, None)


def test_cgroup_v1_limits(tmp_path: Path) -> None:
    limits = extractor("limits")
    root = cgroup_v1(tmp_path / "limited", 300_000, 100_000, GIB)
    assert limits.container_limits(root, node_cpus=32) == limits.Limits(3, GIB, cpu_limited=True)
    root = cgroup_v1(tmp_path / "unlimited", -1, 100_000, 9223372036854771712)
    assert limits.container_limits(root, node_cpus=32) == limits.Limits(limits.CPUS_WITHOUT_LIMIT, None)


def test_no_cgroup_files_means_no_limits(tmp_path: Path) -> None:
    limits = extractor("limits")
    assert limits.container_limits(tmp_path, node_cpus=4) == limits.Limits(4, None)


@pytest.mark.parametrize(("width", "height", "most"), [(3840, 2160, 8), (7680, 4320, 1)])
def test_threads_shrink_for_large_frames_under_a_memory_limit(width: int, height: int, most: int) -> None:
    limits = extractor("limits")
    many_cpus = limits.Limits(32, GIB, cpu_limited=True)
    assert 1 <= limits.threads_that_fit(many_cpus, width * height * 3 // 2) <= most
    assert limits.threads_that_fit(limits.Limits(32, None, cpu_limited=True), width * height * 3 // 2) == 32


def peak_memory_of_a_run(video: Path, tmp_path: Path, **settings: str) -> int:
    """Runs the program as a Job does and returns its peak resident memory in bytes."""
    inputs, outputs = video.parent, tmp_path / "outputs"
    environ = {**os.environ, **job_environment(inputs, outputs, AUTOSCENE_FILE=video.name, **settings)}
    process = subprocess.Popen([sys.executable, str(EXTRACTOR)], env=environ, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    assert process.returncode == 0, process.stderr.read().decode() if process.stderr else ""
    return usage.ru_maxrss * 1024


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")
@pytest.mark.parametrize(
    ("size", "frames", "tags"),
    [
        ("3840x2160", 40, []),
        ("7680x4320", 16, []),
        # Most 4K and 8K footage is BT.709: its frames are converted on the encoding threads' own graphs.
        ("3840x2160", 40, ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]),
        ("7680x4320", 16, ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]),
    ],
    ids=["4K", "8K", "4K-bt709", "8K-bt709"],
)
def test_4k_and_8k_stay_under_a_1_gib_limit_on_a_32_cpu_node(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], size: str, frames: int, tags: list[str]
) -> None:
    video = tmp_path / "files" / "big.mp4"
    video.parent.mkdir()
    command = [
        "ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", f"testsrc2=s={size}:r=30",
        "-frames:v", str(frames), "-c:v", "libx264", "-preset", "ultrafast", *tags, str(video),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    # A CPU request without a limit: the program sees all 32 CPUs, and the memory limit.
    root = cgroup_v2(tmp_path / "cgroup", "max 100000", str(GIB))

    peak = peak_memory_of_a_run(video, tmp_path, EXTRACT_NODE_CPUS="32", EXTRACT_CGROUP_ROOT=str(root))

    with capsys.disabled():
        kind = " BT.709" if tags else ""
        print(f"\n{size}{kind}, 32 CPUs, 1 GiB limit: peak memory {peak / 2**20:.0f} MiB")
    assert peak < GIB


def test_freed_image_buffers_are_reused_on_glibc() -> None:
    """glibc takes the mmap and trim thresholds, so every image's buffers are not mapped afresh
    (`framex.allocation`); elsewhere (musl) the call says it did nothing."""
    import platform

    done = extractor("allocation").reuse_freed_memory()
    assert done == (platform.libc_ver()[0] == "glibc")
