"""Make a contact sheet (one JPEG, a grid of evenly spaced frames, each labelled with its timestamp)
from the frames the frame extractor wrote.

Input is a frames folder's manifest.json, as the frame extractor writes it: a "frames" list whose
entries give each image's "file" (relative to the manifest's folder) and "seconds" (its presentation
timestamp). The sheet shows SHEET_FRAMES frames, the ones whose timestamps lie nearest to evenly
spaced times from the first frame to the last (every frame when there are fewer), in timestamp order,
left to right and top to bottom, SHEET_COLUMNS to a row, each scaled to SHEET_TILE_WIDTH pixels wide
keeping its aspect ratio (the first chosen frame's shape sets the tile height; a frame of another shape
is fitted inside its tile), with its timestamp (HH:MM:SS.mmm) in the lower left corner. It goes to
OUTPUT_FOLDER/<the manifest's folder>/contact_sheet.jpg, written whole or not at all. Frames are read
one at a time, decoded at a reduced size when they are much larger than a tile.

At exit a JSON summary (at most 4096 bytes) goes to the termination log:
  {"message": ..., "outputs": {"count": ..., "bytes": ..., "paths": [...]}, "sheets": ..., "frames": ...}

Settings (environment variables):
  INPUT_FOLDER               folder holding the frames folders (default /cos/files)
  OUTPUT_FOLDER              folder receiving the sheets (default /cos/outputs)
  AUTOSCENE_FILE             the manifest.json to read, relative to INPUT_FOLDER (a folder stands for
                             its manifest.json); unset: every manifest.json under INPUT_FOLDER,
                             recursively, in sorted order
  AUTOSCENE_TERMINATION_LOG  where the summary goes (default /dev/termination-log); TERMINATION_LOG
                             is read when it is unset
  SHEET_FRAMES               how many frames to show, 1-1000 (default 16)
  SHEET_COLUMNS              tiles per row, 1-64 (default 4; fewer when there are fewer frames)
  SHEET_TILE_WIDTH           width of each tile in pixels, 96-3840 (default 320)
  SHEET_QUALITY              JPEG quality of the sheet, 1-100 (default 90)

Exit status:
  0    every sheet written (or no manifest.json found in batch mode)
  1    an unexpected failure that running again may cure (a disk error, no permission)
  2    invalid settings (the message names the setting)
  3    bad input, final: a manifest.json that is missing or not valid, lists no frames, or lists
       frames whose files are missing or not images (with several manifests: every failure was of
       this kind)
"""
