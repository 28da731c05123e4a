"""Deterministic sample videos for demos, tests and benchmarks.

The clips are drawn straight in YUV 4:2:0 (no colour conversion) so that even a 1080p clip is cheap to
make: a diagonal gradient and a dark block that move every frame, plus seeded noise so the encoder
cannot compress them to nothing. The same arguments always give the same pixels.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# Fresh noise for every 1080p frame would cost more than encoding it: one noise canvas drifts instead.
NOISE_AMPLITUDE = 6
NOISE_DRIFT = 64
# Luma stays within [52, 200] and chroma within 128 ± 20: every pixel maps to a valid RGB colour, as in
# camera footage, so converting to RGB clips nothing.
RAMP_FLOOR, RAMP_PERIOD = 66, 120
BLOCK_LUMA = 52
CHROMA_SWING = 40
# Variable frame rate clips step through these multiples of the nominal frame duration.
VFR_STEPS = (1, 1, 2, 1, 3, 1, 1, 2)
VFR_TIME_BASE = Fraction(1, 90_000)
ENCODERS = {"h264": "libx264", "hevc": "libx265"}


def make_sample_video(
    path: str | Path,
    *,
    width: int = 320,
    height: int = 240,
    frames: int = 48,
    fps: int = 24,
    codec: str = "h264",
    noise: bool = True,
    rotation: int | None = None,
    variable_frame_rate: bool = False,
    preset: str = "medium",
    crf: int = 23,
    gop: int | None = None,
    faststart: bool = False,
    with_audio: bool = False,
    pixel_format: str = "yuv420p",
    seed: int = 7,
) -> Path:
    """Write an MP4 and return its path.

    `rotation` is stored as display-matrix metadata, in degrees counter-clockwise, the way phones tag
    portrait clips (a phone held upright records landscape pixels tagged -90). `gop` is the keyframe
    interval in frames (the encoder's default when None). `faststart` puts the index at the front of
    the file, so a truncated copy still has the index of the frames that survive. `pixel_format` such
    as "yuv420p10le" makes a 10-bit clip (with codec="hevc").
    """
    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}, not {codec!r}")
    if width % 2 or height % 2:
        raise ValueError("width and height must be even for 4:2:0 video")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    options: dict[str, str] = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path.absolute()), mode="w", format="mp4", options=options) as container:
        stream = container.add_stream(ENCODERS[codec], rate=fps)
        assert isinstance(stream, av.video.stream.VideoStream)
        # The pictures are drawn in 8-bit 4:2:0; the encoder converts them to `pixel_format`.
        stream.width, stream.height, stream.pix_fmt = width, height, pixel_format
        stream.options = _encoder_options(codec, preset, crf, gop)
        if variable_frame_rate:
            stream.time_base = VFR_TIME_BASE
            stream.codec_context.time_base = VFR_TIME_BASE
        if rotation is not None:
            stream.set_display_rotation(rotation)
        audio = _add_silent_audio(container) if with_audio else None
        pictures = _Pictures(width, height, noise, seed)
        for index, pts in enumerate(frame_timestamps(frames, fps, variable_frame_rate)):
            frame = pictures.frame(index)
            if variable_frame_rate:
                frame.pts, frame.time_base = pts, VFR_TIME_BASE
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
        if audio is not None:
            _write_silence(container, audio, seconds=frames / fps)
    return path


def frame_timestamps(frames: int, fps: int, variable_frame_rate: bool = False) -> list[int]:
    """Presentation timestamps of a sample clip: frame numbers, or 1/90000 s ticks when variable."""
    if not variable_frame_rate:
        return list(range(frames))
    tick = VFR_TIME_BASE.denominator // fps
    stamps, now = [], 0
    for index in range(frames):
        stamps.append(now)
        now += VFR_STEPS[index % len(VFR_STEPS)] * tick
    return stamps


def make_audio_only_file(path: str | Path, *, seconds: float = 1.0) -> Path:
    """Write an MP4 holding a silent AAC track and no video stream."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path.absolute()), mode="w", format="mp4") as container:
        audio = _add_silent_audio(container)
        _write_silence(container, audio, seconds)
    return path


def _encoder_options(codec: str, preset: str, crf: int, gop: int | None) -> dict[str, object]:
    options: dict[str, object] = {"preset": preset, "crf": str(crf)}
    if codec == "hevc":
        x265 = "log-level=error"
        if gop is not None:
            x265 += f":keyint={gop}:min-keyint={gop}:scenecut=0"
        options["x265-params"] = x265
    elif gop is not None:
        options.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
    return options


class _Pictures:
    """Draws frame `n` of the moving test pattern in YUV 4:2:0.

    Each frame is a window into precomputed canvases (a diagonal ramp that pans, a noise field that
    drifts at another speed), so drawing one costs a few copies, not a full computation.
    """

    def __init__(self, width: int, height: int, noise: bool, seed: int) -> None:
        self.width, self.height = width, height
        self.block = max(8, min(width, height) // 6)
        ramp = (RAMP_FLOOR + np.arange(width + height + RAMP_PERIOD) % RAMP_PERIOD).astype(np.uint8)
        # Row r of the luma canvas is the ramp from r on: a diagonal gradient without computing one.
        self.luma_canvas = np.lib.stride_tricks.as_strided(
            ramp, shape=(height, width + RAMP_PERIOD), strides=(1, 1), writeable=False
        )
        self.noise_canvas = (
            np.random.default_rng(seed).integers(
                0, 2 * NOISE_AMPLITUDE + 1, (height, width + NOISE_DRIFT), dtype=np.uint8
            )
            if noise
            else None
        )
        chroma_width = width // 2
        swing = np.arange(chroma_width + 2 * CHROMA_SWING)
        # A triangle wave: chroma drifts smoothly, without a sharp wrap-around edge.
        self.chroma_canvas = (
            128 - CHROMA_SWING // 2 + np.abs(swing % (2 * CHROMA_SWING) - CHROMA_SWING)
        ).astype(np.uint8)
        self.image = np.empty((height * 3 // 2, width), dtype=np.uint8)

    def frame(self, index: int) -> av.VideoFrame:
        height, width = self.height, self.width
        luma = self.image[:height]
        shift = (4 * index) % RAMP_PERIOD
        luma[:] = self.luma_canvas[:, shift : shift + width]
        if self.noise_canvas is not None:
            drift = (13 * index) % NOISE_DRIFT
            # The ramp stays well inside [0, 255], so uint8 arithmetic cannot wrap.
            luma += self.noise_canvas[:, drift : drift + width]
            luma -= NOISE_AMPLITUDE
        top, left = self._block_corner(index)
        luma[top : top + self.block, left : left + self.block] = BLOCK_LUMA
        # The two chroma planes follow the luma plane, stored as rows of `width` bytes.
        chroma = self.image[height:].reshape(height, width // 2)
        offset = index % (2 * CHROMA_SWING)
        chroma[:] = self.chroma_canvas[offset : offset + width // 2]
        chroma[height // 2 :] = chroma[height // 2 :, ::-1]
        return av.VideoFrame.from_ndarray(self.image, format="yuv420p")

    def _block_corner(self, index: int) -> tuple[int, int]:
        span_x, span_y = self.width - self.block, self.height - self.block
        return (7 * index) % (span_y + 1), (11 * index) % (span_x + 1)


def _add_silent_audio(container: av.container.OutputContainer) -> av.audio.stream.AudioStream:
    stream: av.audio.stream.AudioStream = container.add_stream("aac", rate=48_000)
    stream.layout = "mono"
    return stream


def _write_silence(
    container: av.container.OutputContainer, stream: av.audio.stream.AudioStream, seconds: float
) -> None:
    samples_per_frame = 1024
    for start in range(0, int(seconds * 48_000), samples_per_frame):
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, samples_per_frame), dtype=np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 48_000, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
