import re

from autoscene.naming import MAX_INVOCATION_NAME, invocation_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SHA_A, SHA_B = "a" * 64, "b" * 64


def test_same_inputs_same_name() -> None:
    assert invocation_name("auto", "rec", "x/clip.mp4", SHA_A) == invocation_name(
        "auto", "rec", "x/clip.mp4", SHA_A
    )


def test_every_input_changes_the_name() -> None:
    base = invocation_name("auto", "rec", "clip.mp4", SHA_A)
    others = {
        invocation_name("other", "rec", "clip.mp4", SHA_A),
        invocation_name("auto", "rec2", "clip.mp4", SHA_A),
        invocation_name("auto", "rec", "x/clip.mp4", SHA_A),
        invocation_name("auto", "rec", "clip.mp4", SHA_B),
    }
    assert base not in others and len(others) == 4


def test_names_are_readable_and_valid_job_names() -> None:
    name = invocation_name("auto-extract-images", "recordings", "cam0/Front Camera 01.MP4", SHA_A)
    assert name.startswith("auto-extract-images-front-camera-01-")
    long = invocation_name("t" * 200, "r" * 200, "ü" * 300 + ".mp4", SHA_A)
    for candidate in (name, long, invocation_name("x", "y", "____.mp4", SHA_A)):
        assert len(candidate) <= MAX_INVOCATION_NAME
        assert DNS_LABEL.match(candidate), candidate
