import re

from autoscene.naming import MAX_INVOCATION_NAME, invocation_name

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
SHA_A, SHA_B = "a" * 64, "b" * 64


UPLOAD = "u-1/1"  # files.upload_of: a RecordFile's uid and generation


def test_same_inputs_same_name() -> None:
    assert invocation_name("auto", "rec", "x/clip.mp4", SHA_A, UPLOAD) == invocation_name(
        "auto", "rec", "x/clip.mp4", SHA_A, UPLOAD
    )


def test_every_input_changes_the_name() -> None:
    """Another content, or the same content uploaded again after another one (generation 3) or into a
    Record made anew (another RecordFile uid), is a new run."""
    base = invocation_name("auto", "rec", "clip.mp4", SHA_A, UPLOAD)
    others = {
        invocation_name("other", "rec", "clip.mp4", SHA_A, UPLOAD),
        invocation_name("auto", "rec2", "clip.mp4", SHA_A, UPLOAD),
        invocation_name("auto", "rec", "x/clip.mp4", SHA_A, UPLOAD),
        invocation_name("auto", "rec", "clip.mp4", SHA_B, UPLOAD),
        invocation_name("auto", "rec", "clip.mp4", SHA_A, "u-1/3"),
        invocation_name("auto", "rec", "clip.mp4", SHA_A, "u-2/1"),
    }
    assert base not in others and len(others) == 6


def test_names_are_readable_and_valid_job_names() -> None:
    name = invocation_name("auto-extract-images", "recordings", "cam0/Front Camera 01.MP4", SHA_A, UPLOAD)
    assert name.startswith("auto-extract-images-front-camera-01-")
    long = invocation_name("t" * 200, "r" * 200, "ü" * 300 + ".mp4", SHA_A, UPLOAD)
    for candidate in (name, long, invocation_name("x", "y", "____.mp4", SHA_A, UPLOAD)):
        assert len(candidate) <= MAX_INVOCATION_NAME
        assert DNS_LABEL.match(candidate), candidate


DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def test_long_record_names_get_claims_of_their_own() -> None:
    """Two Records whose names share their first 246 characters must not share a volume claim."""
    from autoscene.naming import claim_name

    first, second = "r" * 246 + "-north", "r" * 246 + "-south"
    assert claim_name(first) != claim_name(second)
    for name in (claim_name(first), claim_name(second), claim_name("recordings")):
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name
    assert claim_name("recordings") == "record-recordings"  # short names stay as they were


def test_file_names_are_valid_unique_and_bounded() -> None:
    from autoscene.naming import file_name

    names = {
        file_name("rec", path) for path in ("a.mp4", "A.mp4", "a b.mp4", "a-b.mp4", "x/" * 2000 + "a.mp4")
    }
    assert len(names) == 5
    for name in names | {file_name("r" * 253, "ü" * 4000)}:
        assert len(name) <= 253 and DNS_SUBDOMAIN.match(name), name


def test_long_names_become_distinct_label_values() -> None:
    from autoscene.labels import is_label_value, value_of

    first, second = "r" * 70 + "-north", "r" * 70 + "-south"
    assert value_of(first) != value_of(second)
    assert is_label_value(value_of(first)) and value_of("recordings") == "recordings"
