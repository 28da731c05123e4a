"""Which frames to keep: numbering, the modes' choosers and the start of the range."""

from __future__ import annotations

import math
from array import array
from bisect import bisect_left, insort
from dataclasses import dataclass

import av

from framex.settings import Selection


@dataclass
class Candidate:
    """A decoded frame with its place in the video."""

    frame: av.VideoFrame
    index: int
    seconds: float


class FramePositions:
    """Numbers frames by presentation order, counting every packet read, decoded or not.

    Packets arrive in decode order; a frame's number is how many packets have an earlier timestamp.
    The timestamps are kept sorted (8 bytes a packet): they arrive nearly in order, so each insertion
    is cheap, and a frame a damaged stream gives out of order still gets its own number.
    """

    def __init__(self) -> None:
        self.timestamps = array("q")
        self.last = -1

    def saw_packet(self, pts: int | None) -> None:
        if pts is not None:
            insort(self.timestamps, pts)

    def position_of(self, pts: int | None) -> int:
        if pts is None:
            self.last += 1
        else:
            self.last = bisect_left(self.timestamps, pts)
        return self.last


class Chooser:
    """Keeps every frame offered: the all and keyframes modes (the decoder already skips the rest)."""

    by_number = True  # chooses by frame number alone, so a frame offered late is still judged right

    def offer(self, candidate: Candidate) -> list[Candidate]:
        return [candidate]

    def finish(self, limit_seconds: float) -> list[Candidate]:
        return []


class EveryNth(Chooser):
    def __init__(self, n: int) -> None:
        self.n = n

    def offer(self, candidate: Candidate) -> list[Candidate]:
        return [candidate] if candidate.index % self.n == 0 else []


class NearestToRate(Chooser):
    """For each multiple of 1/rate seconds, the frame whose timestamp is nearest (the earlier on a tie).

    Works on timestamps, so variable frame rate videos are sampled evenly in time. A frame is never
    kept twice, even when the rate asked exceeds the video's.
    """

    by_number = False

    def __init__(self, rate: float, start: float) -> None:
        self.rate = rate
        self.step = math.ceil(start * rate - 1e-9)
        self.previous: Candidate | None = None
        self.last_kept: Candidate | None = None

    @property
    def target(self) -> float:
        return self.step / self.rate

    def offer(self, candidate: Candidate) -> list[Candidate]:
        kept = []
        while candidate.seconds >= self.target:
            earlier = self.previous
            if earlier is not None and self.target - earlier.seconds <= candidate.seconds - self.target:
                kept += self._keep(earlier)
            else:
                kept += self._keep(candidate)
            self.step += 1
        self.previous = candidate
        return kept

    def finish(self, limit_seconds: float) -> list[Candidate]:
        """The video (or the range) ends before `limit_seconds`: the last frame may still be nearest."""
        if self.previous is not None and self.target < limit_seconds - 1e-6:  # the end is exclusive
            return self._keep(self.previous)
        return []

    def _keep(self, candidate: Candidate) -> list[Candidate]:
        if candidate is self.last_kept:
            return []
        self.last_kept = candidate
        return [candidate]


def chooser_for(selection: Selection) -> Chooser:
    if selection.mode == "every-nth" and selection.every_n is not None:
        return EveryNth(selection.every_n)
    if selection.mode == "fps" and selection.fps is not None:
        return NearestToRate(selection.fps, selection.start)
    return Chooser()


class StartGate:
    """Holds back packets until the range's start: decoding begins at the last key frame before it.

    Reading from the beginning (rather than seeking) is what lets every frame keep its real number.
    """

    def __init__(self, start_pts: int | None) -> None:
        self.start_pts = start_pts
        self.group: list[av.Packet] = []

    def admit(self, packet: av.Packet) -> list[av.Packet]:
        if self.start_pts is None:
            return [packet]
        if packet.is_keyframe:
            self.group = []
        self.group.append(packet)
        if packet.pts is None or packet.pts < self.start_pts:
            return []
        self.start_pts = None
        group, self.group = self.group, []
        return group
