"""Decoding one video: opening it, reading packets, numbering and handing frames to the encoders."""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import av

from framex.choice import Candidate, FramePositions, StartGate, chooser_for
from framex.limits import threads_that_fit
from framex.records import FrameRecord
from framex.settings import Settings
from framex.stopping import STOP_REQUESTED, Terminated
from framex.warmup import start, write_image

log = logging.getLogger("extract_frames")

PROGRESS_INTERVAL_SECONDS = 5.0
IN_FLIGHT_BYTES = 48 * 2**20  # decoded frames waiting to be encoded, at most (past a minimum count)
# Numbers of the last images kept: a frame given again after damage is not written twice.
RECENT_INDEXES = 64
# Above this many pixels (1080p), each decoding thread's own pictures weigh: one thread fewer.
LARGE_FRAME_PIXELS = 1920 * 1088
# H.264 below this many bits per pixel is decoded on one thread when there are 2 CPUs and every frame
# becomes an image. Measured with bench/frames.py's clips: decoding costs about 1.8 ns per pixel plus
# 12 ns per bit of video on one thread, and frame threads add 10-20 % to that; a JPEG image costs about
# 3.6 ns per pixel (the encoding, the range stretch or the matrix conversion, the file). As the encoding
# threads yield to decoding (`main.yield_to_decoding`), one decoding thread keeps pace with them up to
# about 0.15 bits per pixel (8 Mbit/s at 1080p30): the clean clips (0.07) and the BT.709 ones (0.13)
# measured 4-15 % less wall time and 3-6 % less CPU on one thread than on frame threads. Noisy video
# (2 bits per pixel) decodes 10 times slower than clean video and needs every CPU to decode.
ONE_DECODING_THREAD_BELOW_BITS_PER_PIXEL = 0.15


class VideoError(Exception):
    """The video cannot be read at all. `bad_input`: the file itself is at fault (empty, not a video,
    unsupported, incomplete), so trying again cannot help; false for what may pass (a missing file,
    permissions)."""

    def __init__(self, message: str, *, bad_input: bool = True) -> None:
        super().__init__(message)
        self.bad_input = bad_input


INCOMPLETE_RECORDING = (
    "recording is incomplete: its index (moov) was never written — was the upload or the recording cut off?"
)
# The top-level boxes an MP4 (ISO/IEC 14496-12) or QuickTime file starts with.
MP4_FIRST_BOXES = {b"ftyp", b"mdat", b"free", b"skip", b"wide", b"moov", b"pnot", b"uuid"}


def describe(error: BaseException) -> str:
    """The most telling words of an FFmpeg or OS error: FFmpeg's last log line when there is one."""
    logged = getattr(error, "log", None)
    if logged and len(logged) > 2 and str(logged[2]).strip():
        return str(logged[2]).strip()
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@contextmanager
def ffmpeg_messages() -> Iterator[None]:
    """Lets FFmpeg's error messages through, for the words of an exception ("moov atom not found").

    Only while opening: FFmpeg's log hook takes the GIL, and a decoder thread logging while its codec
    context is being freed (which holds the GIL) would deadlock.
    """
    av.logging.set_level(av.logging.ERROR)
    try:
        yield
    finally:
        av.logging.set_level(None)


def open_video(path: Path) -> av.container.InputContainer:
    """Opens the file for reading; VideoError says in plain words why it cannot be."""
    if not path.exists():
        raise VideoError("no such file", bad_input=False)
    if path.is_dir():
        raise VideoError("is a folder, not a video")
    if path.stat().st_size == 0:
        raise VideoError("empty file (0 bytes)")
    try:
        with ffmpeg_messages():
            # An absolute path: a name such as "http:clip.mp4" must not be taken for a URL.
            return av.open(str(path.absolute()), mode="r")
    except (av.FFmpegError, OSError) as error:
        if isinstance(error, PermissionError):
            raise VideoError("permission denied", bad_input=False) from None
        words = describe(error)
        if "moov atom not found" in words and starts_like_mp4(path):
            raise VideoError(INCOMPLETE_RECORDING) from None
        raise VideoError(f"not a readable video ({words})") from None


def starts_like_mp4(path: Path) -> bool:
    """Whether the file begins with an MP4 box (size, then type): a recording, not some other file."""
    try:
        with open(path, "rb") as file:
            return file.read(8)[4:8] in MP4_FIRST_BOXES
    except OSError:
        return False


def mp4_cut_short(path: Path) -> bool:
    """Whether an MP4/MOV file ends inside one of its top-level boxes (ISO/IEC 14496-12, 4.2: a box
    starts with its 32-bit size, or 1 and a 64-bit size after its type; 0 runs to the end of the file).
    A recording cut exactly between two frames leaves every frame it holds whole, and libavformat
    then ends at the cut as at a normal end, with no error: only the `mdat` box's size still says
    that more bytes were written. Read here since the demuxer does not expose it; a file that is not
    made of boxes is never cut short by this test."""
    if not starts_like_mp4(path):
        return False
    try:
        size = path.stat().st_size
        with open(path, "rb") as file:
            offset = 0
            while offset + 8 <= size:
                file.seek(offset)
                header = file.read(16)
                length = int.from_bytes(header[:4], "big")
                if length == 1 and len(header) == 16:
                    length = int.from_bytes(header[8:16], "big")
                if length == 0:  # the last box, to the end of the file
                    return False
                if length < 8:
                    return False  # not a box: nothing to judge by
                offset += length
            return offset > size
    except OSError:
        return False


def video_stream(
    container: av.container.InputContainer, wanted: int | None = None
) -> av.video.stream.VideoStream:
    """The video stream to extract: `wanted` (an index in the file, as ffprobe lists it), else the one
    the ffmpeg command picks. ffmpeg (fftools, `-map` unset) scores each video stream by its area in
    pixels, with a bonus for the default disposition, and cover art last; here default streams come
    first outright, then the largest, then the first in the file."""
    attached, default = av.stream.Disposition.attached_pic, av.stream.Disposition.default
    videos = [stream for stream in container.streams.video if not stream.disposition & attached]
    if wanted is not None:
        chosen = [stream for stream in container.streams.video if stream.index == wanted]
        if not chosen:
            listed = ", ".join(str(stream.index) for stream in container.streams.video) or "none"
            raise VideoError(f"no video stream {wanted} (video streams: {listed})")
        return chosen[0]
    if not videos:
        kinds = ", ".join(sorted({str(stream.type) for stream in container.streams})) or "none"
        raise VideoError(f"no video stream (streams: {kinds})")
    return max(
        videos,
        key=lambda stream: (
            bool(stream.disposition & default),
            stream.codec_context.width * stream.codec_context.height,
            -stream.index,
        ),
    )


class Timeline:
    """Seconds from the start of the video, from a frame's timestamp."""

    def __init__(self, stream: av.video.stream.VideoStream) -> None:
        self.time_base = float(stream.time_base or 0)
        self.origin = stream.start_time
        self.rate = float(stream.average_rate or stream.guessed_rate or 0) or None
        self.last = -1.0

    def seconds(self, pts: int | None) -> float:
        if pts is None or not self.time_base:
            self.last += 1 / (self.rate or 25)
            return self.last
        if self.origin is None:
            self.origin = pts
        self.last = (pts - self.origin) * self.time_base
        return self.last

    def ticks(self, seconds: float) -> int:
        return round(seconds / self.time_base) + (self.origin or 0)

    def frame_duration(self, frame: av.VideoFrame) -> float:
        if frame.duration and self.time_base:
            return frame.duration * self.time_base
        return 1 / self.rate if self.rate else 0.0


class Damage:
    """Where the video first stopped decoding cleanly, for the error message."""

    def __init__(self) -> None:
        self.after_seconds: float | None = None
        self.what = ""

    def note(self, what: str, after_seconds: float) -> None:
        if self.after_seconds is None:
            self.after_seconds, self.what = after_seconds, what

    @property
    def found(self) -> bool:
        return self.after_seconds is not None


def frames_in_flight(frame: av.VideoFrame, workers: int) -> int:
    """How many decoded frames may wait for the encoding threads: enough that they never run dry
    (4 x workers + 4 up to 1080p), few enough that memory stays bounded (workers + 1 at 4K)."""
    frame_bytes = sum(plane.buffer_size for plane in frame.planes)
    return max(workers + 1, min(4 * workers + 4, IN_FLIGHT_BYTES // max(1, frame_bytes)))


class Extraction:
    """Decodes one video on this thread while a pool of threads encodes and writes the images.

    A bounded number of frames wait for the pool (`frames_in_flight`), which bounds memory.
    """

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        folder: Path,
        settings: Settings,
        pool: ThreadPoolExecutor,
        name: str,
        threads: int,
    ) -> None:
        self.container, self.stream, self.folder, self.pool = container, stream, folder, pool
        self.name, self.selection, self.image = name, settings.selection, settings.image
        self.workers = threads
        self.in_flight_limit = 0  # set from the first frame's size
        self.timeline = Timeline(stream)
        self.positions = FramePositions()
        self.chooser = chooser_for(self.selection)
        self.gate = StartGate(self.timeline.ticks(self.selection.start) if self.selection.start else None)
        self.keyframes_only = self.selection.mode == "keyframes"
        self.damage = Damage()
        self.in_flight: deque[Future[FrameRecord]] = deque()
        self.records: list[FrameRecord] = []
        self.recent_indexes: deque[int] = deque(maxlen=RECENT_INDEXES)
        self.packets_read = self.packets_decoded = self.frames_decoded = self.kept = 0
        self.last_good: Candidate | None = None
        self.next_index = 0
        self.started = self.last_progress = time.monotonic()

    def run(self) -> None:
        """Reads and decodes to the end (or the range's end); a demuxer error ends the reading, not
        the decoding: the frames the decoder's threads still hold are drained, as ffmpeg does."""
        start(self.pool)  # the encoding side's imports, from the first video on, while it decodes
        try:
            try:
                wanted_more = self._read_packets()
            except av.FFmpegError as error:  # the demuxer cannot go on: keep what was decoded
                self.damage.note(f"read error: {describe(error)}", self._last_good_seconds())
                wanted_more = True
            if wanted_more and self._decode(None):
                self._check_complete()
        finally:
            self._collect(until=0)
            self.records.sort(key=lambda record: record.index)  # late frames in their place

    def _read_packets(self) -> bool:
        """Feeds every packet to the decoder; False once no later frame is wanted."""
        for packet in self.container.demux(self.stream):
            if packet.size == 0:  # end-of-stream marker; the decoder is flushed by run()
                continue
            if not self._read(packet):
                return False  # past the range's end, or enough frames
        return True

    def _read(self, packet: av.Packet) -> bool:
        if STOP_REQUESTED.is_set():
            raise Terminated()
        self.packets_read += 1
        if packet.is_corrupt:  # libavformat flags a packet read short: the file ends inside it
            self.damage.note("truncated: the file ends inside a frame", self._last_good_seconds())
        if not packet.is_discard:  # decoded for reference only, never shown: it has no frame number
            self.positions.saw_packet(packet.pts)
        if self.keyframes_only and not packet.is_keyframe:
            return True
        for admitted in self.gate.admit(packet):
            if not self._decode(admitted):
                return False
        return True

    def _decode(self, packet: av.Packet | None) -> bool:
        try:
            frames = self.stream.decode(packet)
        except av.error.EOFError:
            return True
        except av.FFmpegError as error:
            self.damage.note(f"undecodable data ({describe(error)})", self._last_good_seconds())
            return True
        if packet is not None and not packet.is_discard:
            self.packets_decoded += 1
        for frame in frames:
            if not self._take(frame):
                return False
        return True

    def _take(self, frame: av.VideoFrame) -> bool:
        """Handles one decoded frame; False once no later frame is wanted."""
        self.frames_decoded += 1
        self._report_progress()
        candidate = Candidate(frame, self.positions.position_of(frame.pts), self.timeline.seconds(frame.pts))
        if frame.is_corrupt:  # kept, as ffmpeg keeps it: the decoder concealed what it could not read
            self.damage.note("damaged frame", self._last_good_seconds())
        if self.last_good is not None and candidate.index < self.next_index:
            return self._take_late(candidate)
        if not self.keyframes_only and self.last_good is not None and candidate.index > self.next_index:
            self.damage.note("frames missing", self._last_good_seconds())
        self.last_good, self.next_index = candidate, candidate.index + 1
        if candidate.seconds < self.selection.start:
            return True
        if self.selection.end is not None and candidate.seconds >= self.selection.end:
            self._submit_all(self.chooser.finish(self.selection.end))
            return False
        self._submit_all(self.chooser.offer(candidate))
        return not self._has_enough()

    def _take_late(self, candidate: Candidate) -> bool:
        """A frame behind the others: damage made the decoder give it late, or twice. Kept once, as
        ffmpeg keeps it, where its number is still free and the mode chooses by number."""
        self.damage.note("frames out of order", self._last_good_seconds())
        if candidate.index in self.recent_indexes or not self.chooser.by_number:
            return True
        within_range = self.selection.start <= candidate.seconds < (self.selection.end or math.inf)
        if within_range:
            self._submit_all(self.chooser.offer(candidate))
        return not self._has_enough()

    def _submit_all(self, candidates: list[Candidate]) -> None:
        for candidate in candidates:
            if self._has_enough():
                return
            if not self.in_flight_limit:
                self.in_flight_limit = frames_in_flight(candidate.frame, self.workers)
            self._collect(until=self.in_flight_limit - 1)
            self.in_flight.append(self.pool.submit(write_image, candidate, self.folder, self.image))
            self.kept += 1
            self.recent_indexes.append(candidate.index)

    def _has_enough(self) -> bool:
        return self.selection.max_frames is not None and self.kept >= self.selection.max_frames

    def _collect(self, until: int) -> None:
        """Waits for the oldest images until at most `until` remain in flight."""
        while len(self.in_flight) > until:
            self.records.append(self.in_flight[0].result())
            self.in_flight.popleft()

    def _check_complete(self) -> None:
        """After the last packet: did the file hold every frame it announces, and did all decode?"""
        if self.last_good is not None:
            end = self.last_good.seconds + self.timeline.frame_duration(self.last_good.frame)
            self._submit_all(self.chooser.finish(min(end, self.selection.end or math.inf)))
        if not self.packets_read:
            self.damage.note("no frames in its video stream", 0.0)
        elif self.packets_decoded > self.frames_decoded and not self.damage.found:
            self.damage.note("frames missing", self._last_good_seconds())
        elif not self.damage.found and mp4_cut_short(Path(self.container.name)):
            self.damage.note("truncated: the file ends between two frames", self._last_good_seconds())

    def _last_good_seconds(self) -> float:
        return self.last_good.seconds if self.last_good is not None else 0.0

    def _report_progress(self) -> None:
        now = time.monotonic()
        if now - self.last_progress < PROGRESS_INTERVAL_SECONDS:
            return
        self.last_progress = now
        elapsed = now - self.started
        log.info(
            "%s: %d frames decoded, %d images, at %.1f s of the video, %.0f frames/s",
            self.name,
            self.frames_decoded,
            self.kept,
            self._last_good_seconds(),
            self.frames_decoded / elapsed,
        )

    @property
    def bad_input(self) -> bool:
        """Nothing in the file could be decoded: it is not a video this program can read."""
        return self.damage.found and not self.records

    def failure(self) -> str | None:
        if not self.damage.found:
            return None
        if not self.records:
            return f"not a readable video ({self.damage.what})"
        if self.damage.what.startswith("truncated"):  # every frame before the end was decoded by now
            return f"truncated after {self._last_good_seconds():.2f} s (extracted {len(self.records)} frames)"
        return f"corrupt after {self.damage.after_seconds:.2f} s (extracted {len(self.records)} frames)"


def configure_decoder(stream: av.video.stream.VideoStream, settings: Settings) -> int:
    """Sets the decoder's threads from the container's limits, the video's frame size and bit rate;
    returns the thread count that bounds the encoding threads' share and the frames in flight."""
    context = stream.codec_context
    # FFmpeg's own default counts the node's CPUs, not the container's share: on a large node that
    # would mean a dozen frame threads, each holding frames in memory, fighting over a CPU or two.
    threads = threads_that_fit(settings.limits, estimated_frame_bytes(context))
    if settings.selection.mode == "keyframes":
        context.skip_frame = "NONKEY"
    if decodes_on_one_thread(stream, settings):
        context.thread_count = 1  # on this thread, between the packets, while the encoders work
        return min(threads, settings.workers)
    context.thread_type = "AUTO"  # frame threads, or slice threads where frames cannot be threaded
    large = context.width * context.height > LARGE_FRAME_PIXELS
    context.thread_count = threads if large else threads + 1
    return min(threads, settings.workers)


def decodes_on_one_thread(stream: av.video.stream.VideoStream, settings: Settings) -> bool:
    """Whether one decoding thread keeps pace with the encoding: 2 CPUs at most, every frame an image,
    and H.264 cheap to decode for its size (`ONE_DECODING_THREAD_BELOW_BITS_PER_PIXEL`). Other codecs
    and unknown bit rates keep frame threads, which are never much slower."""
    if settings.limits.cpus > 2 or settings.selection.mode != "all" or stream.codec_context.name != "h264":
        return False
    density = bits_per_pixel(stream)
    return density is not None and density < ONE_DECODING_THREAD_BELOW_BITS_PER_PIXEL


def bits_per_pixel(stream: av.video.stream.VideoStream) -> float | None:
    """The stream's average bit rate per pixel of each frame, from the file's header; None if unknown."""
    context = stream.codec_context
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    pixels = context.width * context.height
    if not stream.bit_rate or not rate or not pixels:
        return None
    return float(stream.bit_rate) / (pixels * rate)


def estimated_frame_bytes(context: av.video.codeccontext.VideoCodecContext) -> int:
    """Bytes of one decoded frame, from the stream's parameters (before any frame is decoded)."""
    width, height = max(1, context.width), max(1, context.height)
    video_format = context.format
    if video_format is None:
        return width * height * 3 // 2
    deep = any(component.bits > 8 for component in video_format.components)
    chroma = video_format.chroma_width(width) * video_format.chroma_height(height)
    planes = 1 if len(video_format.components) == 1 else 3
    return (width * height + (planes - 1) * chroma) * (2 if deep else 1)
