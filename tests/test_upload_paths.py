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


def test_registration_keeps_order_updates_changed_content_and_a_refused_file_stops_no_other(
    tmp_path: Path,
) -> None:
    """The RecordFiles come back in the files' order; new content at a known path updates its
    RecordFile, the same content changes nothing; a file the API refuses is reported once every other
    file is registered."""
    from autoscene import API_VERSION, kube
    from autoscene.sandbox.session import Sandbox
    from autoscene.upload import UploadedFile, register

    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    previous = kube._api_client  # the session's other fixtures keep using theirs
    try:
        with Sandbox(tmp_path / "sandbox", with_operator=False) as sandbox:
            sandbox.apply(
                [
                    {
                        "apiVersion": API_VERSION,
                        "kind": "Record",
                        "metadata": {"name": "r"},
                        "spec": {"storage": {"size": "1Gi"}},
                    }
                ]
            )
            first = [UploadedFile(f"f{index:02d}.bin", index, sha(f"a{index}")) for index in range(20)]
            assert [file["spec"]["path"] for file in register(sandbox.namespace, "r", first)] == [
                file.path for file in first
            ]
            again = [
                UploadedFile("f03.bin", 3, sha("a3")),  # the same content
                UploadedFile("f04.bin", 44, sha("new")),  # new content at a known path
                UploadedFile("bad.bin", -1, sha("bad")),  # refused by the schema (size >= 0)
                UploadedFile("f99.bin", 9, sha("a99")),  # after the refused one
            ]
            with pytest.raises(UploadError, match="bad.bin: could not be registered"):
                register(sandbox.namespace, "r", again)
            listed = kube.list_custom("recordfiles", sandbox.namespace)
            by_path = {file["spec"]["path"]: file for file in listed}
            assert len(listed) == 21 and "bad.bin" not in by_path
            assert (by_path["f04.bin"]["spec"]["sha256"], by_path["f04.bin"]["spec"]["size"]) == (
                sha("new"),
                44,
            )
            assert by_path["f03.bin"]["metadata"]["generation"] == 1
            assert by_path["f99.bin"]["spec"]["sha256"] == sha("a99")
    finally:
        kube._api_client = previous
