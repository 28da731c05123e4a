"""The frame extractor's threads: one decoding thread for low-bit-rate H.264 on 2 CPUs, frame threads
otherwise (the choice changes the CPU spent, never the images), encoding threads that yield to
decoding, and the encoding side's modules left to the encoding threads."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import av
import pytest

from autoscene.sample_video import make_sample_video

from .extractor_fixtures import EXTRACTOR, Samples, extractor, run_in_process


def settings_for(inputs: Path, outputs: Path, cpus: int, **environ: str) -> Any:
    """Settings as the program reads them, on a machine of `cpus` CPUs without cgroup limits."""
    no_limits = outputs.parent / "no-cgroup"
    no_limits.mkdir(exist_ok=True)
    return extractor("settings").read_settings(
        [],
        {
            "INPUT_FOLDER": str(inputs),
            "OUTPUT_FOLDER": str(outputs),
            "EXTRACT_CGROUP_ROOT": str(no_limits),
            "EXTRACT_NODE_CPUS": str(cpus),
            **environ,
        },
    )


@pytest.fixture(scope="module")
def clean_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 of little detail: about 0.07 bits per pixel, like clean footage at a usual bit rate."""
    path = tmp_path_factory.mktemp("decoding") / "clean.mp4"
    return make_sample_video(path, width=320, height=240, frames=24, fps=24, noise=False)


@pytest.fixture(scope="module")
def dense_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """H.264 of noise at a high quality: several bits per pixel, like a low-light sensor's video."""
    path = tmp_path_factory.mktemp("decoding") / "dense.mp4"
    return make_sample_video(path, width=320, height=240, frames=24, fps=24, crf=4)


def one_thread(clip: Path, tmp_path: Path, cpus: int, **environ: str) -> bool:
    decoding = extractor("decoding")
    settings = settings_for(clip.parent, tmp_path / "out", cpus, **environ)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        density = decoding.bits_per_pixel(stream)
        assert density is not None
        chosen: bool = decoding.decodes_on_one_thread(stream, settings)
        decoding.configure_decoder(stream, settings)
        assert (stream.codec_context.thread_count == 1) == chosen
        return chosen


def test_low_bit_rate_h264_is_decoded_on_one_thread_with_2_cpus(clean_clip: Path, tmp_path: Path) -> None:
    assert one_thread(clean_clip, tmp_path, cpus=2)
    assert one_thread(clean_clip, tmp_path, cpus=1)


def test_frame_threads_otherwise(
    clean_clip: Path, dense_clip: Path, tmp_path: Path, samples: Samples
) -> None:
    assert not one_thread(clean_clip, tmp_path, cpus=4)  # one thread would hold the encoders back
    assert not one_thread(clean_clip, tmp_path, cpus=2, EXTRACT_MODE="every-nth", EXTRACT_EVERY_N="5")
    assert not one_thread(dense_clip, tmp_path, cpus=2)
    assert not one_thread(samples.path("hevc.mp4"), tmp_path, cpus=2)


@pytest.mark.parametrize("image_format", ["jpeg", "png"])
def test_images_are_the_same_whichever_decoding_threads(
    clean_clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, image_format: str
) -> None:
    inputs = tmp_path / "files"
    inputs.mkdir()
    shutil.copyfile(clean_clip, inputs / "clip.mp4")
    decoding = extractor("decoding")
    images = {}
    for one in (True, False):
        monkeypatch.setattr(decoding, "decodes_on_one_thread", lambda stream, settings, one=one: one)
        outputs = tmp_path / f"one-{one}"
        outcome = run_in_process(inputs, outputs, AUTOSCENE_FILE="clip.mp4", EXTRACT_FORMAT=image_format)
        assert outcome.status == 0, outcome.summary
        images[one] = {name: (outputs / "clip" / name).read_bytes() for name in outcome.images("clip")}
    assert len(images[True]) == 24
    assert images[True] == images[False]


def test_encoding_threads_yield_to_decoding() -> None:
    main = extractor("main")
    seen: list[int] = []

    def encoding_thread() -> None:
        main.yield_to_decoding()
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=encoding_thread)
    thread.start()
    thread.join()
    ours = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(19, ours + main.ENCODING_NICENESS)]
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ours  # this thread's is its own


def test_the_decoding_side_starts_without_the_encoding_modules() -> None:
    """numpy, simplejpeg and OpenCV are imported on an encoding thread while the first video decodes
    (`framex.warmup`): the entry point's own imports must not pull them in."""
    probe = "import sys, framex.main; print(sorted({'numpy', 'simplejpeg', 'cv2'} & set(sys.modules)))"
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=EXTRACTOR.parent, capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
