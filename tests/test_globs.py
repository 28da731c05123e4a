import pytest

from autoscene.globs import InvalidGlobError, matches


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.mp4", "clip.mp4", True),
        ("*.mp4", "day1/cam0/clip.mp4", True),  # no `/`: the name in any folder
        ("*.mp4", "clip.mp4.part", False),
        ("*.mp4", "clip.MP4", False),  # case-sensitive
        ("cam0/*.mp4", "cam0/clip.mp4", True),
        ("cam0/*.mp4", "day1/cam0/clip.mp4", False),  # with `/`: anchored at the record's root
        ("cam0/*.mp4", "cam0/sub/clip.mp4", False),  # `*` does not cross `/`
        ("**/*.mp4", "clip.mp4", True),
        ("**/*.mp4", "a/b/c/clip.mp4", True),
        ("cam0/**/*.mp4", "cam0/clip.mp4", True),
        ("cam0/**/*.mp4", "cam0/x/y/clip.mp4", True),
        ("cam0/**/*.mp4", "cam1/x/clip.mp4", False),
        ("cam0/**", "cam0/x/y/z.bin", True),
        ("clip-?.mp4", "clip-1.mp4", True),
        ("clip-?.mp4", "clip-10.mp4", False),
        ("clip-[0-4].mp4", "clip-3.mp4", True),
        ("clip-[0-4].mp4", "clip-7.mp4", False),
        ("clip-[!0-4].mp4", "clip-7.mp4", True),
        ("a+b (1).mp4", "a+b (1).mp4", True),  # regex characters are literal
        ("a+b (1).mp4", "aab (1).mp4", False),
        ("*.{mp4,mkv}", "day1/clip.mkv", True),  # brace lists
        ("*.{mp4,mkv}", "clip.avi", False),
        ("*.{mp4,MP4}", "GOPR0001.MP4", True),
        ("*.mp4", "._clip.mp4", True),  # `*` matches a leading dot: sidecars need `exclude`
    ],
)
def test_glob_rules(pattern: str, path: str, expected: bool) -> None:
    assert matches(pattern, path) is expected


def test_exclude_and_ignore_case_as_the_sample_trigger_uses_them() -> None:
    def sample(path: str) -> bool:
        return matches("*.mp4", path, exclude=["._*"], ignore_case=True)

    assert sample("clip.mp4") and sample("day1/GOPR0001.MP4") and sample("cam0/Clip.Mp4")
    assert not sample("._clip.mp4") and not sample("day1/._GOPR0001.MP4") and not sample("notes.txt")
    assert not matches("*.mp4", "GOPR0001.MP4")  # case-sensitive unless asked


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "/abs/*.mp4",
        "clip-[0-4.mp4",
        "*.{mp4,mkv",
        "*.mp4}",
        "../*.mp4",
        "./day1/*.mp4",
        "day1//*.mp4",
        "day1/",
    ],
)
def test_unusable_globs_are_refused(pattern: str) -> None:
    with pytest.raises(InvalidGlobError):
        matches(pattern, "clip.mp4")
