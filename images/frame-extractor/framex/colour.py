"""Colour: a decoded frame as the planes a JPEG holds (BT.601 full-range YCbCr), or as BGR for PNG.

Both follow what ffmpeg's own conversion (libswscale) does with the frame's tags, so the images agree
with `ffmpeg -i video -frames:v 1 frame.png`:
- the matrix is the frame's colour space; untagged video, like every matrix libswscale does not
  know, is taken as BT.601 (libswscale's `sws_getCoefficients` default);
- the range is full for the `yuvj*` formats and for frames tagged full ("pc"/"jpeg") range, limited
  (16-235 luma, 16-240 chroma) otherwise, untagged included.

JPEG (JFIF) always stores full-range BT.601 YCbCr, and every reader decodes it that way. BT.601
sources (and grey video) need only the range stretch, a scale and an offset per plane, before their
planes go to the encoder (`jpeg_planes`). Other matrices (BT.709, BT.2020, ...) are converted to
full-range BT.601 on the planes by libavfilter's `colorspace` filter, in one pass that also takes 10
and 12 bits down to 8 (`converted_to_bt601`): each 2 x 2 block of luma is corrected with its own chroma
sample, as libswscale's own conversion to RGB does. Per 720p frame that measured 0.34 ms of CPU, as
little as the range stretch (0.33), where the BGR route cost 0.6 ms more (libswscale's BGR, then
libjpeg-turbo's conversion back), a 3 x 3 matrix on the planes with OpenCV 2.2 ms (`cv2.transform` of
two channels into three has no fast path) and libswscale's own YUV-to-YUV matrix conversion 2.5 ms. RGB
video, and the few frames of another matrix the filter does not take (see `goes_through_bgr`), go
through BGR (`bgr_picture`), which libjpeg-turbo turns back into BT.601 YCbCr.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from fractions import Fraction

import av
import av.filter
import numpy as np

from framex.opencv import opencv

# Video luma spans 16-235 and chroma 16-240, JPEG uses 0-255 for both: without this stretch the
# images come out washed out and measurably worse. Each is `level * scale + offset`, rounded and clipped
# to 0-255, as OpenCV's `transform` computes it for 8-bit planes: it gives the same levels as a lookup
# table for all 256 inputs (tested) and costs 0.3 ms per 720p frame against 0.5 ms for `cv2.LUT`.
LUMA_TO_FULL_RANGE = np.array([[255 / 219, -16 * 255 / 219]])
CHROMA_TO_FULL_RANGE = np.array([[255 / 224, 128 - 128 * 255 / 224]])
# 8-bit planar formats whose planes are read as they are; others are converted to one of these first.
PLANAR_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"}
FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p"}
AV_COLOR_RANGE_JPEG = 2  # FFmpeg's AVCOL_RANGE_JPEG: full range


@dataclass(frozen=True)
class Matrix:
    """A Y'CbCr matrix, by the name PyAV gives libswscale."""

    name: str


BT601 = Matrix("ITU601")
BT709 = Matrix("ITU709")
BT2020 = Matrix("BT2020")
SMPTE240M = Matrix("SMPTE240M")
FCC = Matrix("FCC")
# FFmpeg's AVColorSpace values and the matrix libswscale uses for each (sws_getCoefficients).
MATRIX_OF_COLORSPACE = {1: BT709, 4: FCC, 7: SMPTE240M, 9: BT2020, 10: BT2020}
# The `colorspace` filter's names for the matrices it converts from (libswscale gives BT.2020's constant
# luminance variant the non-constant one's coefficients, and so does this), and the formats it reads.
FILTER_NAME_OF_MATRIX = {BT709: "bt709", FCC: "fcc", SMPTE240M: "smpte240m", BT2020: "bt2020ncl"}
FILTER_INPUT_FORMATS = {
    f"yuv{subsampling}p{depth}" for subsampling in ("420", "422", "444") for depth in ("", "10le", "12le")
}


@dataclass(frozen=True)
class Planes:
    """A frame's 8-bit planes: Y alone for grey video, else Y, Cb, Cr at the frame's subsampling."""

    planes: list[np.ndarray]
    matrix: Matrix
    full_range: bool


def matrix_of(frame: av.VideoFrame) -> Matrix:
    return MATRIX_OF_COLORSPACE.get(int(frame.colorspace or 0), BT601)


def is_full_range(frame: av.VideoFrame) -> bool:
    return frame.format.name in FULL_RANGE_FORMATS or frame.color_range == AV_COLOR_RANGE_JPEG


def eight_bit_format(video_format: av.VideoFormat) -> str:
    """The 8-bit planar format with the same chroma subsampling (10-bit, semi-planar and alpha formats
    map to it); subsamplings the JPEG path does not take become 4:2:0."""
    if len(video_format.components) == 1:
        return "gray"
    across, down = video_format.chroma_width(1024), video_format.chroma_height(1024)
    return {(1024, 1024): "yuv444p", (512, 1024): "yuv422p"}.get((across, down), "yuv420p")


def yuv_planes(frame: av.VideoFrame) -> Planes:
    """The frame's 8-bit Y'CbCr planes, without copying when the decoder's own format is 8-bit planar
    and its matrix BT.601; other matrices come back converted to full-range BT.601."""
    matrix, full_range = matrix_of(frame), is_full_range(frame)
    grey = len(frame.format.components) == 1
    if not grey and matrix != BT601:
        if frame.format.name not in FILTER_INPUT_FORMATS:
            frame = frame.reformat(format=eight_bit_format(frame.format), threads=1)  # as below
        frame, matrix, full_range = converted_to_bt601(frame, matrix, full_range), BT601, True
    elif frame.format.name not in PLANAR_FORMATS:
        # Depth and layout only: libswscale converts neither matrix nor range between two YUV formats of
        # the same matrix and the same (unspecified) range.
        frame = frame.reformat(format=eight_bit_format(frame.format), threads=1)
    luma = plane_view(frame, 0, frame.width, frame.height)
    if frame.format.name == "gray":
        return Planes([luma], matrix, full_range)
    chroma_width = frame.format.chroma_width(frame.width)
    chroma_height = frame.format.chroma_height(frame.height)
    chroma = [plane_view(frame, number, chroma_width, chroma_height) for number in (1, 2)]
    return Planes([luma, *chroma], matrix, full_range)


def jpeg_planes(planes: Planes) -> list[np.ndarray]:
    """Full-range Y'CbCr planes at the same sizes, as JPEG holds them (`yuv_planes` gives BT.601).
    Chroma beyond limited range's 16-240, which breaks its rules and which no encoder writes from a
    picture, is clipped at 0 and 255 (tested)."""
    if planes.full_range:
        return planes.planes
    stretches = (LUMA_TO_FULL_RANGE, CHROMA_TO_FULL_RANGE, CHROMA_TO_FULL_RANGE)
    transform = opencv().transform
    return [transform(plane, stretch) for plane, stretch in zip(planes.planes, stretches, strict=False)]


def goes_through_bgr(frame: av.VideoFrame) -> bool:
    """Whether JPEG needs the BGR route: RGB video, or video of a matrix other than BT.601 that the
    `colorspace` filter does not take: the full-range `yuvj*` formats (libswscale would change their
    range on the way to a format it reads), an odd width or height (AV1 and 4:4:4 allow them; the
    filter refuses them as not implemented)."""
    if frame.format.is_rgb:
        return True
    if len(frame.format.components) == 1 or matrix_of(frame) == BT601:
        return False
    return frame.format.name.startswith("yuvj") or bool(frame.width % 2 or frame.height % 2)


# Each encoding thread converts with its own filter graph (a graph is not shared between threads),
# kept while the frames' size, format, matrix and range stay the same.
converters = threading.local()


def converted_to_bt601(frame: av.VideoFrame, matrix: Matrix, full_range: bool) -> av.VideoFrame:
    """The frame as 8-bit full-range BT.601 Y'CbCr at its own subsampling, from `matrix` and the range
    given (not the frame's tags: untagged video is read as libswscale reads it, see `matrix_of`)."""
    key = (frame.width, frame.height, frame.format.name, matrix, full_range)
    cached: tuple[tuple[object, ...], av.filter.Graph] | None = getattr(converters, "cached", None)
    if cached is None or cached[0] != key:
        cached = (key, conversion_graph(frame, matrix, full_range))
        converters.cached = cached
    graph = cached[1]
    graph.vpush(frame)
    converted: av.VideoFrame = graph.vpull()
    return converted


def conversion_graph(frame: av.VideoFrame, matrix: Matrix, full_range: bool) -> av.filter.Graph:
    graph = av.filter.Graph()
    graph.threads = 1  # the encoding threads are the parallelism
    source = graph.add_buffer(
        width=frame.width, height=frame.height, format=frame.format, time_base=Fraction(1, 90000)
    )
    # `fast`: the matrix and the range only, no gamma or primaries (libswscale changes neither either);
    # the primaries and transfer named are then only placeholders the filter requires.
    options = {
        "ispace": FILTER_NAME_OF_MATRIX[matrix],
        "irange": "pc" if full_range else "tv",
        "iprimaries": "bt709",
        "itrc": "bt709",
        "space": "bt470bg",
        "range": "pc",
        "primaries": "bt709",
        "trc": "bt709",
        "format": eight_bit_format(frame.format),
        "fast": "1",
    }
    conversion = graph.add("colorspace", ":".join(f"{name}={value}" for name, value in options.items()))
    sink = graph.add("buffersink")
    source.link_to(conversion)
    conversion.link_to(sink)
    graph.configure()
    return graph


def subsampling_of(frame: av.VideoFrame) -> str:
    """The frame's chroma subsampling as libjpeg-turbo names it: 444, 422 or 420 (the rest)."""
    return eight_bit_format(frame.format).removeprefix("yuv").removesuffix("p").replace("gray", "420")


def bgr_picture(frame: av.VideoFrame) -> np.ndarray:
    """The frame as 8-bit BGR (height x width x 3), converted by libswscale with the frame's matrix and
    range stated explicitly (PyAV would otherwise take the range as unspecified, i.e. limited)."""
    matrix = matrix_of(frame).name
    source_range = "JPEG" if is_full_range(frame) else "MPEG"
    converted = frame.reformat(
        format="bgr24",
        src_colorspace=matrix,
        dst_colorspace=matrix,
        src_color_range=source_range,
        dst_color_range="JPEG",
        threads=1,
    )
    picture: np.ndarray = converted.to_ndarray()
    return picture


def plane_view(frame: av.VideoFrame, number: int, width: int, height: int) -> np.ndarray:
    """A plane of the decoded frame as an array, without copying (rows may carry padding)."""
    plane = frame.planes[number]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
    return rows[:height, :width]
