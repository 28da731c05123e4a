"""The frame extractor's colours against ffmpeg's own decode, across colour matrices, ranges, bit depths,
chroma subsampling and codecs.

Each case is a tiny clip of flat colour patches, encoded by the ffmpeg command with the colour matrix,
range and pixel format of the case, and tagged (or not) accordingly. The reference is what
`ffmpeg -i clip -frames:v 1 ref.png` makes of it; every image format the extractor writes must agree
with it within 3 levels per channel on each patch.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from .extractor_fixtures import EXTRACTOR, extractor, run_in_process

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs the ffmpeg command")

# Saturated colours move most under a wrong matrix; grey checks the range alone.
PATCH_COLOURS_RGB = [
    (60, 200, 60),
    (197, 36, 197),
    (40, 60, 200),
    (230, 150, 30),
    (128, 128, 128),
    (200, 40, 40),
]
PATCH = 32  # pixels; a multiple of 16 keeps every patch whole in 4:2:0 and in the codecs' blocks
TOLERANCE = 3  # levels per channel

# Container tags of each matrix: ffmpeg's names for colorspace, primaries and transfer.
TAGS = {
    "bt601": ("smpte170m", "smpte170m", "smpte170m"),
    "bt709": ("bt709", "bt709", "bt709"),
    "bt2020": ("bt2020nc", "bt2020", "bt2020-10"),
}
CODEC_ARGUMENTS = {
    "h264": ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "8"],
    "hevc": ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "8", "-x265-params", "log-level=error"],
    "av1": ["-c:v", "libaom-av1", "-cpu-used", "8", "-crf", "8", "-b:v", "0"],
    "mjpeg": ["-c:v", "mjpeg", "-q:v", "2", "-strict", "unofficial"],
}


@dataclass(frozen=True)
class Case:
    codec: str
    matrix: str  # bt601 | bt709 | bt2020
    full_range: bool
    chroma: str  # 420 | 422 | 444
    bits: int = 8
    tagged: bool = True
    odd_size: bool = False  # one column and one row more (black): 4:4:4 and AV1 allow odd sizes

    @property
    def pixel_format(self) -> str:
        depth = "" if self.bits == 8 else f"{self.bits}le"
        return f"yuv{self.chroma}p{depth}"

    def __str__(self) -> str:
        range_name = "full" if self.full_range else "limited"
        tags = "" if self.tagged else "-untagged"
        odd = "-odd" if self.odd_size else ""
        return f"{self.codec}-{self.matrix}-{range_name}-{self.chroma}-{self.bits}bit{tags}{odd}"


CASES = [
    *(Case("h264", matrix, full, "420") for matrix in TAGS for full in (False, True)),
    Case("h264", "bt709", False, "420", bits=10),
    Case("h264", "bt709", False, "422"),
    Case("h264", "bt709", True, "444"),
    Case("h264", "bt709", False, "444", odd_size=True),
    Case("h264", "bt601", False, "420", tagged=False),
    Case("h264", "bt601", True, "420", tagged=False),
    Case("hevc", "bt709", False, "420"),
    *(Case("hevc", matrix, full, "420", bits=10) for matrix in TAGS for full in (False, True)),
    Case("hevc", "bt2020", False, "422", bits=10),
    Case("hevc", "bt709", False, "444", bits=10),
    Case("hevc", "bt601", True, "444"),
    Case("hevc", "bt601", False, "420", bits=10, tagged=False),
    Case("av1", "bt709", False, "420"),
    Case("av1", "bt2020", False, "420", bits=10),
    Case("av1", "bt709", True, "444"),
    Case("av1", "bt709", False, "420", odd_size=True),
    Case("mjpeg", "bt601", True, "420"),
    Case("mjpeg", "bt601", True, "422"),
    Case("mjpeg", "bt709", False, "444"),
]


def patch_picture() -> np.ndarray:
    """Three patches across, two down, as BGR."""
    picture = np.zeros((2 * PATCH, 3 * PATCH, 3), np.uint8)
    for number, (red, green, blue) in enumerate(PATCH_COLOURS_RGB):
        row, column = divmod(number, 3)
        picture[row * PATCH : (row + 1) * PATCH, column * PATCH : (column + 1) * PATCH] = (blue, green, red)
    return picture


def make_patch_clip(case: Case, folder: Path) -> Path:
    source = folder / "patches.png"
    if not source.exists():
        cv2.imwrite(str(source), patch_picture())
    clip = folder / f"{case}.mp4"
    scale = f"scale=out_color_matrix={case.matrix}:out_range={'pc' if case.full_range else 'tv'}"
    if case.matrix == "bt601":
        scale = f"scale=out_color_matrix=bt601:out_range={'pc' if case.full_range else 'tv'}"
    pad = "pad=iw+1:ih+1," if case.odd_size else ""
    tags: list[str] = []
    if case.tagged:
        space, primaries, transfer = TAGS[case.matrix]
        tags = ["-colorspace", space, "-color_primaries", primaries, "-color_trc", transfer]
    if case.tagged or case.full_range:  # a range flag alone, as some encoders write, is "untagged" too
        tags += ["-color_range", "pc" if case.full_range else "tv"]
    command = [
        "ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "10", "-i", str(source),
        "-frames:v", "2", "-vf", f"{pad}{scale},format={case.pixel_format}",
        *CODEC_ARGUMENTS[case.codec], *tags, str(clip),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return clip


def ffmpeg_reference(clip: Path) -> np.ndarray:
    """The first frame as the ffmpeg command decodes it to PNG, as 8-bit BGR."""
    reference = clip.with_suffix(".ref.png")
    command = ["ffmpeg", "-loglevel", "error", "-y", "-i", str(clip), "-frames:v", "1", str(reference)]
    subprocess.run(command, check=True, capture_output=True, timeout=60)
    picture = cv2.imread(str(reference), cv2.IMREAD_UNCHANGED)
    if picture.dtype == np.uint16:  # ffmpeg writes 16-bit PNG from 10-bit video
        picture = np.round(picture / 257).astype(np.uint8)
    return picture[..., :3]


def patch_levels(picture: np.ndarray) -> np.ndarray:
    """Per patch, the median BGR of its middle (away from edges that compression and chroma blur)."""
    levels = []
    for number in range(len(PATCH_COLOURS_RGB)):
        row, column = divmod(number, 3)
        top, left = row * PATCH + PATCH // 4, column * PATCH + PATCH // 4
        middle = picture[top : top + PATCH // 2, left : left + PATCH // 2].reshape(-1, 3)
        levels.append(np.median(middle, axis=0))
    return np.array(levels)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("colour")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_every_format_matches_ffmpegs_decode(clips: Path, tmp_path: Path, case: Case) -> None:
    clip = make_patch_clip(case, clips)
    expected = patch_levels(ffmpeg_reference(clip))
    inputs = tmp_path / "files"
    inputs.mkdir()
    shutil.copyfile(clip, inputs / "patches.mp4")

    for image_format in ("jpeg", "png"):
        outputs = tmp_path / image_format
        outcome = run_in_process(
            inputs, outputs, AUTOSCENE_FILE="patches.mp4", EXTRACT_FORMAT=image_format, EXTRACT_MAX_FRAMES="1"
        )
        assert outcome.status == 0, outcome.summary
        image = next((outputs / "patches").glob("frame_000000.*"))
        picture = cv2.imread(str(image), cv2.IMREAD_COLOR)
        error = np.abs(patch_levels(picture) - expected).max()
        assert error <= TOLERANCE, (image_format, patch_levels(picture).tolist(), expected.tolist())


@pytest.mark.parametrize(
    ("case", "through_bgr"),
    [
        (Case("h264", "bt709", False, "420"), False),
        (Case("hevc", "bt2020", True, "420", bits=10), False),
        (Case("h264", "bt709", False, "444", odd_size=True), True),
    ],
    ids=str,
)
def test_other_matrices_are_converted_on_the_planes(clips: Path, case: Case, through_bgr: bool) -> None:
    """BT.709 and BT.2020 JPEGs come from the planes, converted there, as cheaply as BT.601's (no RGB
    round trip); only what the conversion refuses, odd sizes among them, goes through BGR."""
    with av.open(str(make_patch_clip(case, clips))) as container:
        frame = next(container.decode(video=0))
    assert extractor("colour").goes_through_bgr(frame) == through_bgr
    if not through_bgr:
        planes = extractor("colour").yuv_planes(frame)
        assert (planes.matrix, planes.full_range) == (extractor("colour").BT601, True)
        assert [plane.dtype for plane in planes.planes] == [np.uint8] * 3


def test_converted_matrices_need_no_opencv(clips: Path, tmp_path: Path) -> None:
    """A BT.709 JPEG at the video's own size is converted by FFmpeg's filter and encoded by
    libjpeg-turbo: OpenCV (20 ms of CPU to import) is never loaded."""
    inputs = tmp_path / "files"
    inputs.mkdir()
    shutil.copyfile(make_patch_clip(Case("h264", "bt709", False, "420"), clips), inputs / "patches.mp4")
    probe = "import sys, framex.main; status = framex.main.main([]); print(status, 'cv2' in sys.modules)"
    environ = {
        **os.environ,
        "INPUT_FOLDER": str(inputs),
        "OUTPUT_FOLDER": str(tmp_path / "out"),
        "AUTOSCENE_TERMINATION_LOG": str(tmp_path / "summary.json"),
    }
    ran = subprocess.run(
        [sys.executable, "-c", probe], cwd=EXTRACTOR.parent, env=environ, capture_output=True, text=True
    )
    assert ran.stdout.split() == ["0", "False"], ran.stderr[-2000:]


LEVEL_WIDTH = 4  # pixels per level: two chroma samples in 4:2:0
BAND = 16  # rows per ramp, a whole row of 16 x 16 blocks


def ramp_clip(folder: Path, full_range: bool) -> Path:
    """Every level 0-255 of luma, then of Cb, then of Cr, as horizontal ramps in bands of 16 rows (the
    other two components neutral), written as YUV samples (not converted from RGB, so levels outside
    16-235 are there too) and encoded losslessly, tagged BT.601 with the range of the case."""
    levels = np.repeat(np.arange(256, dtype=np.uint8), LEVEL_WIDTH)
    width, height = levels.size, 3 * BAND
    luma = np.full((height, width), 128, np.uint8)
    luma[:BAND] = levels
    chroma_levels = levels[::2]
    blue = np.full((height // 2, width // 2), 128, np.uint8)
    red = blue.copy()
    blue[BAND // 2 : BAND] = chroma_levels
    red[BAND : 3 * BAND // 2] = chroma_levels
    frame = np.concatenate([luma.ravel(), blue.ravel(), red.ravel()]).tobytes()
    clip = folder / f"ramps-{'full' if full_range else 'limited'}.mp4"
    range_name = "pc" if full_range else "tv"
    command = [
        "ffmpeg", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p",
        "-s", f"{width}x{height}", "-r", "10", "-i", "-", "-frames:v", "2",
        "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
        "-colorspace", "smpte170m", "-color_primaries", "smpte170m", "-color_trc", "smpte170m",
        "-color_range", range_name, str(clip),
    ]  # fmt: skip
    subprocess.run(command, input=frame * 2, check=True, capture_output=True, timeout=120)
    return clip


def ramp_levels(picture: np.ndarray) -> np.ndarray:
    """Per band and level, the median BGR of the middle of its cells (away from band and level edges)."""
    bands = []
    for band in range(3):
        rows = picture[band * BAND + BAND // 4 : (band + 1) * BAND - BAND // 4]
        cells = rows.reshape(rows.shape[0], 256, LEVEL_WIDTH, 3)[:, :, 1:3]
        bands.append(np.median(cells.transpose(1, 0, 2, 3).reshape(256, -1, 3), axis=1))
    return np.array(bands)


@pytest.mark.parametrize("full_range", [False, True], ids=["limited", "full"])
def test_every_level_matches_ffmpegs_decode(clips: Path, tmp_path: Path, full_range: bool) -> None:
    """The range stretch (or its absence) on every luma and chroma level, clipping included."""
    clip = ramp_clip(clips, full_range)
    expected = ramp_levels(ffmpeg_reference(clip))
    inputs = tmp_path / "files"
    inputs.mkdir()
    shutil.copyfile(clip, inputs / "ramps.mp4")

    for image_format in ("jpeg", "png"):
        outputs = tmp_path / image_format
        outcome = run_in_process(
            inputs, outputs, AUTOSCENE_FILE="ramps.mp4", EXTRACT_FORMAT=image_format, EXTRACT_MAX_FRAMES="1"
        )
        assert outcome.status == 0, outcome.summary
        picture = cv2.imread(str(next((outputs / "ramps").glob("frame_000000.*"))), cv2.IMREAD_COLOR)
        error = np.abs(ramp_levels(picture) - expected)
        if not full_range and image_format == "jpeg":
            # Chroma beyond 16-240 breaks the limited-range rules and no encoder writes it from a picture;
            # a JPEG's full range cannot hold it (it is clipped at 0 and 255), so only luma is checked
            # there: 0-15 and 236-255 included.
            error[1:, :16] = error[1:, 241:] = 0
        worst = np.unravel_index(error.argmax(), error.shape)
        assert error.max() <= TOLERANCE, (
            image_format,
            worst,
            ramp_levels(picture)[worst[:2]],
            expected[worst[:2]],
        )
