"""Extract the frames of MP4 videos into JPEG or PNG images.

Each video VIDEO.mp4 gets a folder OUTPUT_FOLDER/VIDEO/ (the video's path relative to INPUT_FOLDER,
without its extension) holding frame_<index>.jpg images, where <index> (six digits) is the frame's
position in the video counting from 0, and a manifest.json that lists every image (frame index,
timestamp in seconds from the start of the video, width, height, file name) and describes the video
(source, codec, fps, mode, complete, error). Images of an earlier run in that folder are removed
first; the manifest is written next, marked incomplete, and rewritten at the end, so an interrupted
run never leaves images without a manifest saying so.

At exit a JSON summary (at most 4096 bytes) goes to the termination log:
  {"message": ..., "outputs": {"count": ..., "bytes": ..., "paths": [...]},
   "frames": ..., "seconds": ..., "framesPerSecond": ...}

Settings: an environment variable, or the command-line flag beside it, which wins.
  INPUT_FOLDER               --input-folder     folder holding the videos (default /cos/files)
  OUTPUT_FOLDER              --output-folder    folder receiving the images (default /cos/outputs)
  AUTOSCENE_FILE             --file             the video to process, relative to INPUT_FOLDER;
                                                unset: every *.mp4 under INPUT_FOLDER, recursively,
                                                in sorted order
  AUTOSCENE_TERMINATION_LOG  --termination-log  where the summary goes (default /dev/termination-log)
  EXTRACT_MODE               --mode             all (default) | every-nth | fps | keyframes
  EXTRACT_EVERY_N            --every-n          every-nth mode: keep frames 0, N, 2N, ...
  EXTRACT_FPS                --fps              fps mode: frames per second wanted; the frame nearest
                                                each multiple of 1/FPS seconds is kept
  EXTRACT_START              --start            skip frames before this second (default 0)
  EXTRACT_END                --end              stop before this second (default: the end)
  EXTRACT_MAX_FRAMES         --max-frames       stop after this many images per video
  EXTRACT_FORMAT             --format           jpeg (default) | png
  EXTRACT_QUALITY            --quality          JPEG quality, 1-100 (default 90)
  EXTRACT_MAX_WIDTH          --max-width        shrink wider images to this width, keeping the aspect
  EXTRACT_MAX_HEIGHT         --max-height       shrink taller images to this height, likewise
  EXTRACT_STREAM             --stream           the video stream to extract, by its index in the file
                                                (as ffprobe lists it); default: the one ffmpeg picks
                                                (default disposition first, then the largest)
  EXTRACT_WORKERS            --workers          image encoding threads (default: CPUs available)

Threads and frames in flight follow the container: its cgroup CPU limit (without one, the node's CPUs,
at most 8) and its memory limit, which bounds them again for large frames (4K, 8K).
EXTRACT_CGROUP_ROOT and EXTRACT_NODE_CPUS stand in for /sys/fs/cgroup and the CPU count, to see how the
program behaves on another machine.

The keyframes mode decodes key frames only, so it is many times faster than the others. Images come
out upright: the rotation stored in the video (portrait phone clips) is applied. A file name that
starts with a dash is given as --file=-name.mp4.

Exit status:
  0    every video extracted completely
  1    a failure that running again may cure: a missing file, no permission, a disk error, a video
       cut short or damaged after some frames were extracted
  2    invalid settings
  3    bad input, final: a file that is empty, not a video, an incomplete recording (no index),
       without a video stream, or in a format that cannot be decoded (with several videos: every
       failure was of this kind)
  143  stopped by SIGTERM
"""
