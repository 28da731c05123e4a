"""The operator image's size, estimated from images/operator/Dockerfile's layers without building it.

The image is its base image plus a few small layers (the user, metadata) and one large one: the
virtualenv /opt/autoscene copied from the builder stage. That virtualenv is measured by doing what the
builder stage does, into a temporary folder: a virtualenv without pip, images/operator/requirements.lock
installed with the Dockerfile's pip options (hashes required, wheels only, no other dependency), then
the package's own wheel. Sizes count as a layer's tar does (512-byte headers and blocks).

The base image cannot be measured on a machine without a container engine; its size is an input
(--base-mb; the default is about what `docker images` reports for python:3.11-slim-bookworm on amd64).

    python images/operator/image_size.py              # installs the lock (downloads the wheels)
    python images/operator/image_size.py --installed  # the locked distributions of this environment
"""

import argparse
import importlib.metadata
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
LOCK = HERE / "requirements.lock"
BASE_IMAGE = "python:3.11.13-slim-bookworm"
BASE_IMAGE_MB = 130.0  # uncompressed, linux/amd64; not measured here
MB = 1_000_000
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path = LOCK) -> dict[str, str]:
    """The lock's pins: canonical name -> version."""
    pins = {}
    for line in lock.read_text().splitlines():
        match = PIN.match(line)
        if match:
            pins[canonical(match[1])] = match[2]
    return pins


def tar_bytes(sizes: Iterable[int]) -> int:
    """What files of these sizes take in a layer's tar: a header and whole 512-byte blocks each."""
    return sum(512 + -(-size // 512) * 512 for size in sizes)


def installed_sizes(names: Iterable[str]) -> dict[str, int]:
    """Each distribution's installed files in this environment, as a layer would hold them."""
    sizes = {}
    for name in names:
        distribution = importlib.metadata.distribution(name)
        files = [distribution.locate_file(path) for path in distribution.files or []]
        sizes[name] = tar_bytes(Path(path).stat().st_size for path in files if Path(path).is_file())
    return sizes


def folder_bytes(folder: Path) -> int:
    return tar_bytes(
        path.stat().st_size for path in folder.rglob("*") if path.is_file() and not path.is_symlink()
    )


def built_virtualenv(lock: Path = LOCK) -> tuple[int, dict[str, int]]:
    """The builder stage's /opt/autoscene, made here: its size, and each top-level folder's."""
    with tempfile.TemporaryDirectory() as scratch:
        venv, wheels = Path(scratch) / "venv", Path(scratch) / "wheels"
        python = str(venv / "bin" / "python")
        pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--python", python]
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        subprocess.run(
            [*pip, "install", "--quiet", "--no-cache-dir", "--require-hashes", "--no-deps"]
            + ["--only-binary=:all:", "-r", str(lock)],
            check=True,
        )
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--wheel-dir",
                str(wheels),
                str(REPO),
            ],
            check=True,
        )
        subprocess.run([*pip, "install", "--quiet", "--no-deps", *map(str, wheels.glob("*.whl"))], check=True)
        site = next((venv / "lib").glob("python*/site-packages"))
        parts = {
            path.name: folder_bytes(path) if path.is_dir() else tar_bytes([path.stat().st_size])
            for path in site.iterdir()
        }
        return folder_bytes(venv), parts


def report(venv_bytes: int, parts: dict[str, int], base_mb: float, how: str) -> str:
    lines = [f"operator image, estimated from images/operator/Dockerfile ({how}):"]
    for name, size in sorted(parts.items(), key=lambda item: -item[1])[:10]:
        lines.append(f"  {size / MB:8.1f} MB  {name}")
    lines += [
        f"  {venv_bytes / MB:8.1f} MB  /opt/autoscene (the virtualenv layer, {len(parts)} entries)",
        f"  {base_mb:8.1f} MB  {BASE_IMAGE} (base image, given)",
        f"  {base_mb + venv_bytes / MB:8.1f} MB  total, uncompressed",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--installed", action="store_true", help="measure this environment's copies")
    parser.add_argument("--base-mb", type=float, default=BASE_IMAGE_MB, help="the base image's size")
    options = parser.parse_args()
    if options.installed:
        parts = installed_sizes(locked())
        print(report(sum(parts.values()), parts, options.base_mb, "installed distributions of the lock"))
    else:
        venv_bytes, parts = built_virtualenv()
        print(report(venv_bytes, parts, options.base_mb, "the lock installed as the builder stage does"))


if __name__ == "__main__":
    main()
