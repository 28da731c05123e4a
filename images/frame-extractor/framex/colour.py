"""Colour: a decoded frame as the planes a JPEG holds (BT.601 full-range YCbCr), or as BGR for PNG.

Both follow what ffmpeg's own conversion (libswscale) does with the frame's tags, so the images agree
with `ffmpeg -i video -frames:v 1 frame.png`:
- the matrix is the frame's colour space; untagged video, like every matrix libswscale does not
  know, is taken as BT.601 (libswscale's `sws_getCoefficients` default);
- the range is full for the `yuvj*` formats and for frames tagged full ("pc"/"jpeg") range, limited
  (16-235 luma, 16-240 chroma) otherwise, untagged included.

JPEG (JFIF) always stores full-range BT.601 YCbCr, and every reader decodes it that way. BT.601
sources need only the range stretch (a lookup table) before their planes go to the encoder: the
fast path. Other matrices are converted on the planes themselves: a BT.601 chroma pair is a 2 x 2 mix
of the source's chroma pair (grey stays grey whatever the matrix), and BT.601 luma is the source's
luma plus a mix of its chroma. This costs a few plane-wide passes, far less than a round trip
through RGB (see bench/frames.py, `--colour-paths`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import av
import cv2
import numpy as np

# Video luma spans 16-235 and chroma 16-240, JPEG uses 0-255 for both: without this stretch the
# images come out washed out and measurably worse.
LUMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 16) * 255 / 219), 0, 255).astype(np.uint8)
CHROMA_TO_FULL_RANGE = np.clip(np.round((np.arange(256) - 128) * 255 / 224 + 128), 0, 255).astype(np.uint8)
# 8-bit planar formats whose planes are read as they are; others are converted to one of these first.
PLANAR_FORMATS = {"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "gray"}
FULL_RANGE_FORMATS = {"yuvj420p", "yuvj422p", "yuvj444p"}
AV_COLOR_RANGE_JPEG = 2  # FFmpeg's AVCOL_RANGE_JPEG: full range


@dataclass(frozen=True)
class Matrix:
    """A Y'CbCr matrix by its luma weights of red and blue (ITU-T H.273, Table 4)."""

    name: str
    red: float
    blue: float

    def forward(self) -> np.ndarray:
        """3 x 3: R'G'B' (0-1) to Y' (0-1), Pb and Pr (-0.5 to 0.5)."""
        red, blue = self.red, self.blue
        green = 1 - red - blue
        luma = np.array([red, green, blue])
        return np.array(
            [
                luma,
                (np.array([0, 0, 1]) - luma) / (2 - 2 * blue),
                (np.array([1, 0, 0]) - luma) / (2 - 2 * red),
            ]
        )


BT601 = Matrix("bt601", 0.299, 0.114)
BT709 = Matrix("bt709", 0.2126, 0.0722)
BT2020 = Matrix("bt2020", 0.2627, 0.0593)
SMPTE240M = Matrix("smpte240m", 0.212, 0.087)
FCC = Matrix("fcc", 0.30, 0.11)
# FFmpeg's AVColorSpace values and the matrix libswscale uses for each (sws_getCoefficients).
MATRIX_OF_COLORSPACE = {1: BT709, 4: FCC, 7: SMPTE240M, 9: BT2020, 10: BT2020}
# PyAV's names of the same matrices for libswscale, for the conversion to BGR.
SWSCALE_COLORSPACE = {
    "bt601": av.video.reformatter.Colorspace.ITU601,
    "bt709": av.video.reformatter.Colorspace.ITU709,
    "bt2020": av.video.reformatter.Colorspace.BT2020,
    "smpte240m": av.video.reformatter.Colorspace.SMPTE240M,
    "fcc": av.video.reformatter.Colorspace.FCC,
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
    """The frame's 8-bit Y'CbCr planes, without copying when the decoder's own format is 8-bit planar."""
    matrix, full_range = matrix_of(frame), is_full_range(frame)
    if frame.format.name not in PLANAR_FORMATS:
        # Depth and layout only: libswscale converts neither matrix nor range between two YUV formats
        # of the same (unspecified) range.
        frame = frame.reformat(format=eight_bit_format(frame.format), threads=1)
    luma = plane_view(frame, 0, frame.width, frame.height)
    if frame.format.name == "gray":
        return Planes([luma], matrix, full_range)
    chroma_width = frame.format.chroma_width(frame.width)
    chroma_height = frame.format.chroma_height(frame.height)
    chroma = [plane_view(frame, number, chroma_width, chroma_height) for number in (1, 2)]
    return Planes([luma, *chroma], matrix, full_range)


@cache
def to_bt601(matrix: Matrix) -> np.ndarray:
    """3 x 3 on (Y', Pb, Pr): the source matrix's values to BT.601's for the same R'G'B'. Its first
    column is (1, 0, 0): only luma takes a share of chroma."""
    conversion: np.ndarray = BT601.forward() @ np.linalg.inv(matrix.forward())
    return conversion


def jpeg_planes(planes: Planes) -> list[np.ndarray]:
    """Full-range BT.601 Y'CbCr planes, as JPEG holds them, at the same sizes.

    Luma: 8-bit (Y, Cb, Cr) codes, limited or full range, map to BT.601 full range as
    Y601 = s_y (Y - o_y) + s_c (m01 (Cb - 128) + m02 (Cr - 128)) and
    C601 = 128 + s_c (m_i1 (Cb - 128) + m_i2 (Cr - 128)), with (s_y, o_y, s_c) = (255/219, 16, 255/224)
    for limited range and (1, 0, 1) for full range, and m = `to_bt601(matrix)`.
    """
    luma, *chroma = planes.planes
    if not planes.full_range:
        luma = cv2.LUT(luma, LUMA_TO_FULL_RANGE)
    if not chroma:
        return [luma]
    cb, cr = chroma
    if planes.matrix == BT601:
        if not planes.full_range:
            cb, cr = cv2.LUT(cb, CHROMA_TO_FULL_RANGE), cv2.LUT(cr, CHROMA_TO_FULL_RANGE)
        return [luma, cb, cr]
    m = to_bt601(planes.matrix) * (1.0 if planes.full_range else 255 / 224)
    # The luma correction is computed at chroma resolution and upsampled, like chroma itself.
    correction = mix(cb, cr, m[0, 1], m[0, 2], 0.0, cv2.CV_16S)
    if correction.shape != luma.shape:
        correction = cv2.resize(correction, (luma.shape[1], luma.shape[0]), interpolation=cv2.INTER_LINEAR)
    luma = cv2.add(luma, correction, dtype=cv2.CV_8U)
    return [
        luma,
        mix(cb, cr, m[1, 1], m[1, 2], 128.0, cv2.CV_8U),
        mix(cb, cr, m[2, 1], m[2, 2], 128.0, cv2.CV_8U),
    ]


def mix(cb: np.ndarray, cr: np.ndarray, of_cb: float, of_cr: float, plus: float, depth: int) -> np.ndarray:
    """of_cb (Cb - 128) + of_cr (Cr - 128) + plus, rounded and saturated to `depth`, in one pass."""
    offset = plus - 128 * (of_cb + of_cr)
    result: np.ndarray = cv2.addWeighted(cb, of_cb, cr, of_cr, offset, dtype=depth)
    return result


def bgr_picture(frame: av.VideoFrame) -> np.ndarray:
    """The frame as 8-bit BGR (height x width x 3), converted by libswscale with the frame's matrix and
    range stated explicitly (PyAV would otherwise take the range as unspecified, i.e. limited)."""
    matrix = SWSCALE_COLORSPACE[matrix_of(frame).name]
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
