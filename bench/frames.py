"""Frame extraction benchmark: the frame-extractor Action against the pipelines it replaces.

Generates H.264 clips at 480p (900 frames), 720p (300) and 1080p (150), each in three kinds: clean
(autoscene.sample_video, BT.601), BT.709 (converted and tagged like most HD footage) and noisy
(strong per-pixel noise, like a low-light sensor), and a short 4K clip for memory; then runs,
alternating, `--rounds` times each:

  original   the original one-thread loop: OpenCV VideoCapture.read + cv2.imwrite, JPEG quality 95
  ffmpeg-q2  ffmpeg -i in.mp4 -q:v 2 out_%06d.jpg
  decode     ffmpeg -i in.mp4 -f null -   (decoding alone: the floor for any extractor)
  extractor  images/frame-extractor/extract_frames.py, as a Job runs it
  baseline   with --baseline, another copy of the extractor (an earlier commit's, say), run beside it

It prints medians of frames/s, wall and CPU seconds (children included), CPU milliseconds per frame,
peak memory, output bytes, luma PSNR against the decoded source (BT.601 luma: the BT.709 clips' JPEG
luma is BT.601's, so their PSNR reads low), colour error against ffmpeg's own decode of the first
frame (median and 99th percentile of the differences of 16 x 16 block means, in levels), the ratios
(CPU per frame beside decoding alone, its floor), a summary per clip, and whether each target is met.
Needs the ffmpeg command. Usage: python bench/frames.py [--rounds 3] [--work bench/out] [--clips ...]
[--baseline OTHER/extract_frames.py] [--no-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np
import simplejpeg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from autoscene.sample_video import make_sample_video  # noqa: E402

EXTRACTOR = ROOT / "images" / "frame-extractor" / "extract_frames.py"
PSNR_SAMPLES = 24
MEMORY_LIMIT_MB = 400
TARGET_VS_ORIGINAL, TARGET_VS_FFMPEG, TARGET_WALL_OVER_CPU = 1.3, 1.4, 1.1
LAUNCHER_CPU_SECONDS = 0.03  # the launcher's own interpreter start
# Other processes taking more than this share of the machine during a run make its figures unreliable.
BUSY_MACHINE_SHARE = 0.05
RETRIES_WHEN_DISTURBED = 2
# Past this many seconds into the benchmark, disturbed runs are kept rather than repeated.
RETRY_BUDGET_SECONDS = 200

LAUNCHER = """
import json, os, sys, time
started = time.perf_counter()
child = os.fork()
if child == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(child, 0)
wall = time.perf_counter() - started
with open(sys.argv[1], "w") as report:
    json.dump([wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss], report)
sys.exit(os.waitstatus_to_exitcode(status))
"""

ORIGINAL_LOOP = """
import sys, cv2
capture = cv2.VideoCapture(sys.argv[1])
index = 0
while True:
    ok, frame = capture.read()
    if not ok:
        break
    cv2.imwrite(f"{sys.argv[2]}/frame_{index:06d}.jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    index += 1
"""


@dataclass(frozen=True)
class Clip:
    name: str
    width: int
    height: int
    frames: int
    preset: str = "medium"
    # clean: autoscene.sample_video (BT.601); bt709: the same kind of picture tagged and converted
    # BT.709 like most HD footage; noisy: strong per-pixel temporal noise, like a low-light sensor.
    kind: str = "clean"

    @property
    def file_name(self) -> str:  # the parameters are in the name, so a cached clip is never stale
        return f"{self.name}-{self.width}x{self.height}-{self.frames}f-{self.preset}.mp4"


SIZES = (("480p", 854, 480, 900), ("720p", 1280, 720, 300), ("1080p", 1920, 1080, 150))
CLIPS = tuple(
    Clip(name if kind == "clean" else f"{name}-{kind}", width, height, frames, kind=kind)
    for name, width, height, frames in SIZES
    for kind in ("clean", "bt709", "noisy")
)
# Generated with the ffmpeg command: testsrc2 plus noise, converted and tagged per kind.
FFMPEG_FILTERS = {
    "bt709": "noise=alls=8:allf=t,scale=out_color_matrix=bt709:out_range=tv,format=yuv420p",
    "noisy": "noise=alls=40:allf=t+u,format=yuv420p",
}
FFMPEG_TAGS = {
    "bt709": [
        "-colorspace",
        "bt709",
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-color_range",
        "tv",
    ],
    "noisy": [],
}
TARGET_CPU_VS_ORIGINAL = 0.8
# Colour against ffmpeg's own decode, on 16 x 16 block means of the first frame: the median moves with a
# colour shift (a wrong matrix: 5 levels and more); ffmpeg's decode is itself 1-1.5 levels darker than
# the exact BT.601 conversion (libswscale's fast path truncates), so an exact pipeline reads about 1.2.
# The p99 comes from sharp colour edges and clipped noise, where every 4:2:0 JPEG differs from a PNG of
# the frame: printed beside the original loop's (a JPEG of the same frame), not judged. Flat colours are
# held to 3 levels by tests/test_extractor_colour.py.
COLOUR_TOLERANCE = 3
CLIP_4K = Clip("4k", 3840, 2160, 48, preset="veryfast")
PIPELINES = ("original", "ffmpeg-q2", "decode", "extractor")
# The extractor scripts run, by pipeline: this tree's, and with --baseline another copy's beside it, so
# that a change is measured against what it replaces in the same run (runs apart differ by 15-20 %).
EXTRACTORS = {"extractor": EXTRACTOR}


@dataclass
class Measure:
    wall: float
    cpu: float
    peak_mb: float
    output_bytes: int
    images: int
    elsewhere_cpu: float
    cores: int

    @property
    def elsewhere_share(self) -> float:
        """The share of the machine that other processes used during the run."""
        return self.elsewhere_cpu / (self.wall * self.cores)


@dataclass(frozen=True)
class ColourError:
    """Differences, in levels, between 16 x 16 block means of an image and of ffmpeg's own decode of
    the same frame, over every block and channel: a colour shift moves the median, compression noise
    averages out, and the few blocks on sharp colour edges (where chroma upsampling differs between
    readers) make the tail."""

    median: float
    p99: float
    largest: float


@dataclass
class Results:
    runs: dict[str, list[Measure]] = field(default_factory=dict)
    psnr: dict[str, float] = field(default_factory=dict)
    colour_error: dict[str, ColourError] = field(default_factory=dict)

    def median(self, pipeline: str, attribute: str) -> float:
        return statistics.median(getattr(run, attribute) for run in self.runs[pipeline])


def command_for(pipeline: str, video: Path, output: Path) -> tuple[list[str], dict[str, str]]:
    env = dict(os.environ)
    if pipeline == "original":
        return [sys.executable, "-c", ORIGINAL_LOOP, str(video), str(output)], env
    if pipeline == "ffmpeg-q2":
        return ["ffmpeg", "-v", "error", "-i", str(video), "-q:v", "2", str(output / "out_%06d.jpg")], env
    if pipeline == "decode":
        return ["ffmpeg", "-v", "error", "-i", str(video), "-f", "null", "-"], env
    env.update(
        INPUT_FOLDER=str(video.parent),
        AUTOSCENE_FILE=video.name,
        OUTPUT_FOLDER=str(output),
        AUTOSCENE_TERMINATION_LOG=str(output / "summary.json"),
    )
    return [sys.executable, str(EXTRACTORS[pipeline])], env


def busy_cpu_seconds() -> float:
    """CPU time spent by everything on the machine so far (all CPUs, all processes)."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def run_measured(command: list[str], env: dict[str, str], report: Path) -> tuple[float, float, float, float]:
    """Wall seconds, CPU seconds (user + system, the process and all it waited for), peak RSS in MB,
    and CPU seconds that other processes took meanwhile (a busy machine skews the comparison).

    A small launcher process starts the command: a child forked straight from this (large) process
    would count this process's memory as its own peak.
    """
    busy_before = busy_cpu_seconds()
    completed = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(report), *command],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    busy = busy_cpu_seconds() - busy_before
    if completed.returncode != 0:
        raise RuntimeError(
            f"{command[0]} failed ({completed.returncode}): {completed.stderr.decode()[-2000:]}"
        )
    wall, cpu, peak_kb = json.loads(report.read_text())
    return wall, cpu, peak_kb / 1024, max(0.0, busy - cpu - LAUNCHER_CPU_SECONDS)


def run_pipeline(pipeline: str, video: Path, output: Path) -> Measure:
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    # Start each run with nothing left to write back from the one before: the kernel's writeback would
    # otherwise take CPU from whichever pipeline happens to run next.
    os.sync()
    wall, cpu, peak, elsewhere = run_measured(
        *command_for(pipeline, video, output), output.parent / "usage.json"
    )
    images = [path for path in output.rglob("*") if path.suffix == ".jpg"]
    written = sum(path.stat().st_size for path in output.rglob("*") if path.is_file())
    return Measure(wall, cpu, peak, written, len(images), elsewhere, os.cpu_count() or 1)


def luma_psnr(video: Path, images: list[Path], samples: int = PSNR_SAMPLES) -> float:
    """PSNR of the images' luma against the decoded source's, stretched to full range like a JPEG's."""
    picks = set(np.linspace(0, len(images) - 1, samples).round().astype(int).tolist())
    squared_errors = []
    with av.open(str(video)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index not in picks:
                continue
            plane = frame.planes[0]
            rows = np.frombuffer(memoryview(plane), np.uint8).reshape(-1, plane.line_size)
            source = rows[: frame.height, : frame.width].astype(np.float64)
            source = np.clip((source - 16) * 255 / 219, 0, 255)
            image = simplejpeg.decode_jpeg(images[index].read_bytes(), colorspace="GRAY")[..., 0]
            squared_errors.append(np.mean((source - image) ** 2))
    return float(10 * np.log10(255**2 / np.mean(squared_errors)))


def colour_error(video: Path, image: Path, scratch: Path) -> ColourError:
    reference_path = scratch / "reference.png"
    command = ["ffmpeg", "-v", "error", "-y", "-i", str(video), "-frames:v", "1", str(reference_path)]
    subprocess.run(command, check=True)
    reference = cv2.imread(str(reference_path), cv2.IMREAD_COLOR).astype(np.float32)
    picture = cv2.imread(str(image), cv2.IMREAD_COLOR).astype(np.float32)
    height, width = (reference.shape[0] // 16) * 16, (reference.shape[1] // 16) * 16

    def block_means(pixels: np.ndarray) -> np.ndarray:
        return pixels[:height, :width].reshape(height // 16, 16, width // 16, 16, 3).mean(axis=(1, 3))

    differences = np.abs(block_means(picture) - block_means(reference))
    return ColourError(
        float(np.median(differences)), float(np.percentile(differences, 99)), float(differences.max())
    )


def make_clip(clip: Clip, folder: Path) -> Path:
    path = folder / clip.file_name
    if not path.exists():
        started = time.perf_counter()
        partial = folder / f"partial-{clip.file_name}"
        if clip.kind == "clean":
            make_sample_video(
                partial, width=clip.width, height=clip.height, frames=clip.frames, fps=30, preset=clip.preset
            )
        else:
            source = f"testsrc2=s={clip.width}x{clip.height}:r=30"
            command = [
                "ffmpeg",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                source,
                "-frames:v",
                str(clip.frames),
            ]
            command += [
                "-vf",
                FFMPEG_FILTERS[clip.kind],
                "-c:v",
                "libx264",
                "-preset",
                clip.preset,
                "-crf",
                "23",
            ]
            subprocess.run([*command, *FFMPEG_TAGS[clip.kind], "-f", "mp4", str(partial)], check=True)
        partial.rename(path)
        print(f"  made {path.name} in {time.perf_counter() - started:.1f} s", flush=True)
    return path


def undisturbed_run(pipeline: str, video: Path, output: Path, deadline: float) -> Measure:
    """Runs the pipeline again (a few times at most, time permitting) while other processes take a
    noticeable share of the machine: on a shared machine that comes and goes."""
    for _ in range(RETRIES_WHEN_DISTURBED):
        measure = run_pipeline(pipeline, video, output)
        if measure.elsewhere_share <= BUSY_MACHINE_SHARE or time.perf_counter() > deadline:
            return measure
        print(f"  {pipeline}: other processes took {measure.elsewhere_share:.0%} of the machine; again")
    return run_pipeline(pipeline, video, output)


def pipelines() -> tuple[str, ...]:
    return PIPELINES + tuple(name for name in EXTRACTORS if name not in PIPELINES)


def bench_clip(clip: Clip, video: Path, scratch: Path, rounds: int, deadline: float) -> Results:
    chosen = pipelines()
    results = Results({pipeline: [] for pipeline in chosen})
    for round_number in range(rounds):
        # Rotate the order every round so that no pipeline always runs first (or after a big delete).
        order = chosen[round_number % len(chosen) :] + chosen[: round_number % len(chosen)]
        for pipeline in order:
            measure = undisturbed_run(pipeline, video, scratch / pipeline, deadline)
            results.runs[pipeline].append(measure)
            if pipeline != "decode" and measure.images != clip.frames:
                print(f"  WARNING {pipeline} wrote {measure.images} images, expected {clip.frames}")
    for pipeline in chosen:
        if pipeline != "decode":
            images = sorted((scratch / pipeline).rglob("*.jpg"))
            results.psnr[pipeline] = luma_psnr(video, images)
            results.colour_error[pipeline] = colour_error(video, images[0], scratch)
        shutil.rmtree(scratch / pipeline, ignore_errors=True)
    return results


@dataclass(frozen=True)
class Summary:
    """The extractor against the others on one clip: the figures the targets are judged by."""

    clip: str
    vs_original: float  # frames/s, extractor / original loop
    vs_ffmpeg: float  # frames/s, extractor / ffmpeg -q:v 2
    cpu_vs_original: float  # CPU per frame, extractor / original loop
    decode_vs_original: float  # CPU per frame, decoding alone / original loop: the floor of the above
    colour: ColourError
    baseline: Baseline | None = None


@dataclass(frozen=True)
class Baseline:
    """The --baseline extractor on one clip, and the extractor against it."""

    vs_original: float  # frames/s, baseline / original loop
    vs_ffmpeg: float  # frames/s, baseline / ffmpeg -q:v 2
    cpu_vs_original: float  # CPU per frame, baseline / original loop
    extractor_cpu: float  # CPU per frame, extractor / baseline
    extractor_fps: float  # frames/s, extractor / baseline


def print_table(clip: Clip, results: Results, cores: int) -> tuple[list[tuple[str, bool]], Summary]:
    print(f"\n{clip.name}: {clip.width}x{clip.height}, {clip.frames} frames")
    columns = (
        "frames/s",
        "wall s",
        "cpu s",
        "cpu ms/f",
        "peak MB",
        "out MB",
        "PSNR dB",
        "col med",
        "col p99",
        "others %",
    )
    print(f"  {'pipeline':<10}" + "".join(f"{column:>9}" for column in columns))
    fps = {}
    for pipeline in pipelines():
        wall = results.median(pipeline, "wall")
        fps[pipeline] = clip.frames / wall
        psnr = results.psnr.get(pipeline)
        colour = results.colour_error.get(pipeline)
        cpu = results.median(pipeline, "cpu")
        print(
            f"  {pipeline:<10}{fps[pipeline]:>9.1f}{wall:>9.2f}{cpu:>9.2f}{1000 * cpu / clip.frames:>9.2f}"
            f"{max(run.peak_mb for run in results.runs[pipeline]):>9.1f}"
            f"{results.median(pipeline, 'output_bytes') / 1e6:>9.1f}"
            f"{'-' if psnr is None else f'{psnr:.2f}':>9}"
            f"{'-' if colour is None else f'{colour.median:.1f}':>9}"
            f"{'-' if colour is None else f'{colour.p99:.1f}':>9}"
            f"{100 * results.median(pipeline, 'elsewhere_share'):>9.1f}"
        )
    vs_original = fps["extractor"] / fps["original"]
    vs_ffmpeg = fps["extractor"] / fps["ffmpeg-q2"]
    wall_over_cpu = statistics.median(run.wall / (run.cpu / cores) for run in results.runs["extractor"])
    psnr_margin = results.psnr["extractor"] - results.psnr["original"]
    cpu_vs_original = results.median("extractor", "cpu") / results.median("original", "cpu")
    decode_vs_original = results.median("decode", "cpu") / results.median("original", "cpu")
    colour = results.colour_error["extractor"]
    original_p99 = results.colour_error["original"].p99
    print(
        f"  extractor: {vs_original:.2f}x original, {vs_ffmpeg:.2f}x ffmpeg-q2, "
        f"{fps['extractor'] / fps['decode']:.2f}x decode-only; PSNR {psnr_margin:+.2f} dB vs original; "
        f"wall = {wall_over_cpu:.2f} x (cpu / {cores} cores)"
    )
    print(
        f"  extractor: cpu per frame {cpu_vs_original:.2f}x original (decoding alone: "
        f"{decode_vs_original:.2f}x); colour vs ffmpeg's decode: median {colour.median:.1f}, "
        f"p99 {colour.p99:.1f}, largest {colour.largest:.1f} levels"
    )
    baseline = None
    if "baseline" in results.runs:
        baseline = Baseline(
            fps["baseline"] / fps["original"],
            fps["baseline"] / fps["ffmpeg-q2"],
            results.median("baseline", "cpu") / results.median("original", "cpu"),
            results.median("extractor", "cpu") / results.median("baseline", "cpu"),
            fps["extractor"] / fps["baseline"],
        )
        print(
            f"  baseline:  {baseline.vs_original:.2f}x original, {baseline.vs_ffmpeg:.2f}x ffmpeg-q2, cpu per"
            f" frame {baseline.cpu_vs_original:.2f}x original; the extractor against it: cpu per frame"
            f" {baseline.extractor_cpu:.2f}x, frames/s {baseline.extractor_fps:.2f}x"
        )
    verdicts = [
        (
            f"{clip.name}: >= {TARGET_VS_ORIGINAL}x the original loop ({vs_original:.2f}x)",
            vs_original >= TARGET_VS_ORIGINAL,
        ),
        (
            f"{clip.name}: >= {TARGET_VS_FFMPEG}x ffmpeg -q:v 2 ({vs_ffmpeg:.2f}x)",
            vs_ffmpeg >= TARGET_VS_FFMPEG,
        ),
        (
            f"{clip.name}: cpu/frame <= {TARGET_CPU_VS_ORIGINAL}x the original's ({cpu_vs_original:.2f}x;"
            f" decoding alone {decode_vs_original:.2f}x)",
            cpu_vs_original <= TARGET_CPU_VS_ORIGINAL,
        ),
        (
            f"{clip.name}: colour vs ffmpeg's decode, median <= {COLOUR_TOLERANCE} levels"
            f" ({colour.median:.1f}; p99 {colour.p99:.1f}, the original loop's {original_p99:.1f})",
            colour.median <= COLOUR_TOLERANCE,
        ),
        (f"{clip.name}: PSNR >= the original loop's ({psnr_margin:+.2f} dB)", psnr_margin >= 0),
        (
            f"{clip.name}: wall <= {TARGET_WALL_OVER_CPU} x cpu/cores ({wall_over_cpu:.2f})",
            wall_over_cpu <= TARGET_WALL_OVER_CPU,
        ),
    ]
    summary = Summary(
        clip.name, vs_original, vs_ffmpeg, cpu_vs_original, decode_vs_original, colour, baseline
    )
    return verdicts, summary


def print_summary(summaries: list[Summary]) -> None:
    """One line per clip: the extractor's ratios, side by side."""
    print(
        "\nextractor, per clip (wall: frames/s ratio, higher is better; cpu: CPU per frame ratio, lower is"
        " better; decode: decoding alone, the floor of cpu; colour: median / p99 levels):"
    )
    with_baseline = any(summary.baseline for summary in summaries)
    extra = f"{'| baseline: vs orig':>20}{'vs ffmpeg':>10}{'cpu':>7}" if with_baseline else ""
    print(f"  {'clip':<14}{'vs orig':>9}{'vs ffmpeg':>10}{'cpu':>7}{'decode':>8}{'colour':>12}{extra}")
    for summary in summaries:
        colour = f"{summary.colour.median:.1f} / {summary.colour.p99:.1f}"
        line = (
            f"  {summary.clip:<14}{summary.vs_original:>8.2f}x{summary.vs_ffmpeg:>9.2f}x"
            f"{summary.cpu_vs_original:>6.2f}x{summary.decode_vs_original:>7.2f}x{colour:>12}"
        )
        if summary.baseline:
            base = summary.baseline
            line += f"{base.vs_original:>19.2f}x{base.vs_ffmpeg:>9.2f}x{base.cpu_vs_original:>6.2f}x"
        print(line)


def bench_memory(video: Path, scratch: Path) -> list[tuple[str, bool]]:
    print(f"\n4k: {CLIP_4K.width}x{CLIP_4K.height}, {CLIP_4K.frames} frames (memory)")
    peaks = {}
    for pipeline in ("original", "extractor"):
        measure = run_pipeline(pipeline, video, scratch / pipeline)
        peaks[pipeline] = measure.peak_mb
        print(f"  {pipeline:<10} peak {measure.peak_mb:.1f} MB, {CLIP_4K.frames / measure.wall:.1f} frames/s")
        shutil.rmtree(scratch / pipeline, ignore_errors=True)
    peak = peaks["extractor"]
    return [(f"4k: extractor peak memory < {MEMORY_LIMIT_MB} MB ({peak:.0f} MB)", peak < MEMORY_LIMIT_MB)]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="runs of each pipeline per clip (default 3)")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "out", help="clip cache folder")
    parser.add_argument("--clips", nargs="*", default=[clip.name for clip in CLIPS], help="clips to run")
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another extract_frames.py to run beside the extractor, e.g. from"
        " `git archive HEAD images/frame-extractor | tar -x -C /tmp/before`",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the 4K clip's peak memory")
    arguments = parser.parse_args()
    if arguments.baseline:
        EXTRACTORS["baseline"] = arguments.baseline.resolve()
    if shutil.which("ffmpeg") is None:
        print("the ffmpeg command is needed (apt-get install ffmpeg)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    cores = os.cpu_count() or 1
    arguments.work.mkdir(parents=True, exist_ok=True)
    print(f"frame extraction benchmark: {cores} cores, {arguments.rounds} rounds, medians", flush=True)
    chosen = [clip for clip in CLIPS if clip.name in arguments.clips]
    memory_clip = () if arguments.no_memory else (CLIP_4K,)
    videos = {clip: make_clip(clip, arguments.work) for clip in (*chosen, *memory_clip)}
    verdicts: list[tuple[str, bool]] = []
    summaries: list[Summary] = []
    busy_runs = 0
    with tempfile.TemporaryDirectory(dir=arguments.work, prefix="runs-") as scratch:
        for clip in chosen:
            results = bench_clip(
                clip, videos[clip], Path(scratch), arguments.rounds, started + RETRY_BUDGET_SECONDS
            )
            clip_verdicts, summary = print_table(clip, results, cores)
            verdicts += clip_verdicts
            summaries.append(summary)
            busy_runs += sum(
                run.elsewhere_share > BUSY_MACHINE_SHARE for runs in results.runs.values() for run in runs
            )
        if not arguments.no_memory:
            verdicts += bench_memory(videos[CLIP_4K], Path(scratch))
    print_summary(summaries)
    elapsed = time.perf_counter() - started
    if busy_runs:
        print(
            f"\nWARNING: other processes used more than {BUSY_MACHINE_SHARE:.0%} of the machine during"
            f" {busy_runs} runs (column 'others %'): those figures understate the pipelines that ran then."
        )
    verdicts.append((f"benchmark under 10 minutes ({elapsed:.0f} s)", elapsed < 600))
    print("\ntargets:")
    for description, met in verdicts:
        print(f"  {'MET    ' if met else 'NOT MET'} {description}")
    return 0 if all(met for _, met in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
