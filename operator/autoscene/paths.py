"""Where the project's own files are, for the sandbox that runs from a checkout."""

from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
CRDS = REPOSITORY / "crds"
SAMPLES = REPOSITORY / "manifests" / "samples"
CHAIN = REPOSITORY / "manifests" / "chain"
IMAGES = REPOSITORY / "images"
MANIFESTS = REPOSITORY / "manifests"


def require(folder: Path) -> Path:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is missing: the sandbox runs from a checkout of the repository")
    return folder
