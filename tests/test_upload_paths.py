import hashlib
from pathlib import Path

import pytest

from autoscene.upload import UploadError, copy_into_folder, plan, record_path


@pytest.mark.parametrize("name", ["../x.mp4", "a/../../x.mp4", "/etc/passwd", "", "..", "a\\b.mp4", "~/x"])
def test_paths_that_escape_the_record_are_refused(name: str) -> None:
    with pytest.raises(UploadError):
        record_path(name)


@pytest.mark.parametrize(
    ("name", "normal"), [("a.mp4", "a.mp4"), ("cam/./a.mp4", "cam/a.mp4"), ("cam//a.mp4", "cam/a.mp4")]
)
def test_paths_are_normalised(name: str, normal: str) -> None:
    assert record_path(name) == normal


def test_plan_checks_every_source_before_copying(tmp_path: Path) -> None:
    good = tmp_path / "good.mp4"
    good.write_bytes(b"x")
    with pytest.raises(UploadError, match="missing.mp4: no such file"):
        plan([good, tmp_path / "missing.mp4"])
    with pytest.raises(UploadError, match="not a regular file"):
        plan([tmp_path])
    with pytest.raises(UploadError, match="same path"):
        other = tmp_path / "sub"
        other.mkdir()
        (other / "good.mp4").write_bytes(b"y")
        plan([good, other / "good.mp4"])
    with pytest.raises(UploadError, match="escapes"):
        plan([good], prefix="../outside")
    assert plan([good], prefix="day1/cam0/") == [(good, "day1/cam0/good.mp4")]


def test_copy_hashes_while_copying_and_leaves_no_partial_files(tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    data = bytes(range(256)) * 20_000
    source.write_bytes(data)
    seen: list[int] = []
    uploaded = copy_into_folder(source, tmp_path / "volume", "deep/dir/big.bin", seen.append)
    assert uploaded.sha256 == hashlib.sha256(data).hexdigest()
    assert uploaded.size == len(data) == sum(seen)
    assert (tmp_path / "volume/deep/dir/big.bin").read_bytes() == data
    assert [p.name for p in (tmp_path / "volume/deep/dir").iterdir()] == ["big.bin"]
