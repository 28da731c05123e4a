"""Image writing: sizes, rotation, JPEG and PNG encoding."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import simplejpeg

from framex.choice import Candidate
from framex.colour import Planes, bgr_picture, goes_through_bgr, jpeg_planes, subsampling_of, yuv_planes
from framex.opencv import opencv
from framex.records import FrameRecord
from framex.settings import ImageOptions


def upright_size(width: int, height: int, rotation: int) -> tuple[int, int]:
    return (height, width) if rotation % 180 else (width, height)


def scaled_size(width: int, height: int, options: ImageOptions) -> tuple[int, int]:
    """The size after shrinking to fit the maximum width and height, keeping the aspect ratio."""
    scale = min(
        1.0,
        (options.max_width or width) / width,
        (options.max_height or height) / height,
    )
    if scale >= 1.0:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def stored_size(frame: av.VideoFrame, rotation: int, options: ImageOptions) -> tuple[int, int]:
    """The size to shrink the stored (unrotated) picture to, so that the upright image fits."""
    upright = upright_size(frame.width, frame.height, rotation)
    return upright_size(*scaled_size(*upright, options), rotation)


def rotation_of(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees to turn the stored picture upright: 0, 90, 180 or 270."""
    return round((frame.rotation or 0) / 90) % 4 * 90


# OpenCV's names of the turns, by counter-clockwise degrees.
ROTATE_COUNTER_CLOCKWISE = {90: "ROTATE_90_COUNTERCLOCKWISE", 180: "ROTATE_180", 270: "ROTATE_90_CLOCKWISE"}


def rotate(plane: np.ndarray, rotation: int) -> np.ndarray:
    if not rotation:
        return plane
    cv2 = opencv()
    return cv2.rotate(plane, getattr(cv2, ROTATE_COUNTER_CLOCKWISE[rotation]))


def resize_planes(planes: list[np.ndarray], width: int, height: int) -> list[np.ndarray]:
    luma = planes[0]
    if (luma.shape[1], luma.shape[0]) == (width, height):
        return planes
    cv2 = opencv()
    resized = [cv2.resize(luma, (width, height), interpolation=cv2.INTER_AREA)]
    for chroma in planes[1:]:
        across = round(luma.shape[1] / chroma.shape[1])
        down = round(luma.shape[0] / chroma.shape[0])
        size = (-(-width // across), -(-height // down))
        resized.append(cv2.resize(chroma, size, interpolation=cv2.INTER_AREA))
    return resized


def encode_jpeg(frame: av.VideoFrame, options: ImageOptions) -> tuple[bytes, int, int]:
    """JPEG from the decoder's Y'CbCr planes (no RGB round trip), converted to BT.601 on the planes when
    the video has another colour matrix; through BGR for RGB video and the few frames that conversion
    does not take (see `colour`)."""
    if goes_through_bgr(frame):
        picture = upright_picture(bgr_picture(frame), frame, options)
        subsampling = subsampling_of(frame)
        data = simplejpeg.encode_jpeg(
            picture, quality=options.quality, colorspace="BGR", colorsubsampling=subsampling
        )
        return data, picture.shape[1], picture.shape[0]
    rotation = rotation_of(frame)
    decoded = yuv_planes(frame)
    resized = resize_planes(decoded.planes, *stored_size(frame, rotation, options))
    converted = jpeg_planes(Planes(resized, decoded.matrix, decoded.full_range))
    planes = [rotate(plane, rotation) for plane in converted]
    luma = planes[0]
    chroma = planes[1:] if len(planes) == 3 else [None, None]
    data = simplejpeg.encode_jpeg_yuv_planes(luma, chroma[0], chroma[1], quality=options.quality)
    return data, luma.shape[1], luma.shape[0]


def upright_picture(picture: np.ndarray, frame: av.VideoFrame, options: ImageOptions) -> np.ndarray:
    """A BGR picture of the frame shrunk to fit the options, then turned upright."""
    rotation = rotation_of(frame)
    width, height = stored_size(frame, rotation, options)
    if (width, height) != (frame.width, frame.height):
        cv2 = opencv()
        picture = cv2.resize(picture, (width, height), interpolation=cv2.INTER_AREA)
    return rotate(picture, rotation)


def encode_png(frame: av.VideoFrame, options: ImageOptions) -> tuple[bytes, int, int]:
    picture = upright_picture(bgr_picture(frame), frame, options)
    cv2 = opencv()
    ok, data = cv2.imencode(".png", picture, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return data.tobytes(), picture.shape[1], picture.shape[0]


def write_image(candidate: Candidate, folder: Path, options: ImageOptions) -> FrameRecord:
    """Runs on the encoding threads; OpenCV and libjpeg-turbo release the GIL while they work."""
    encode = encode_jpeg if options.format == "jpeg" else encode_png
    data, width, height = encode(candidate.frame, options)
    name = f"frame_{candidate.index:06d}.{options.extension}"
    with open(folder / name, "wb") as image:
        image.write(data)
    return FrameRecord(candidate.index, round(candidate.seconds, 6), width, height, name, len(data))
