"""File globs of Triggers, matched against a file's path inside its Record.

Rules (documented on `Trigger.spec.fileGlob`), carried out by wcmatch (a well-kept matcher, with
GLOBSTAR, BRACE, MATCHBASE and DOTMATCH) rather than our own code:
- `*` and `?` never cross `/`; `**` as a whole path segment matches any number of folders (also none);
- a pattern without `/` matches the file name in any folder, like a `.gitignore` line;
- `[abc]`, `[a-z]` and `[!abc]` are character classes; `{mp4,mkv}` is a list of alternatives;
- `*` also matches names that start with a dot (`*.mp4` matches `._clip.mp4`: exclude such files);
- matching is case-sensitive unless the Trigger asks otherwise (`ignoreCase`).
A Trigger's `exclude` globs, by the same rules, take files back out.
"""

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from wcmatch import glob

_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.MATCHBASE | glob.DOTMATCH


class InvalidGlobError(ValueError):
    """The pattern cannot be used as a file glob."""


@dataclass(frozen=True)
class FileFilter:
    """The files a Trigger fires on: its glob, less its exclusions."""

    include: glob.WcMatcher
    exclude: glob.WcMatcher | None

    def matches(self, path: str) -> bool:
        """Whether the record path (relative, `/`-separated) is one of these files."""
        return bool(self.include.match(path)) and not (self.exclude is not None and self.exclude.match(path))


def matches(pattern: str, path: str, exclude: Sequence[str] = (), ignore_case: bool = False) -> bool:
    """Whether the record path matches `pattern` and none of the `exclude` patterns."""
    return file_filter(pattern, tuple(exclude), ignore_case).matches(path)


@functools.lru_cache(maxsize=512)
def file_filter(pattern: str, exclude: tuple[str, ...] = (), ignore_case: bool = False) -> FileFilter:
    """The compiled filter; `InvalidGlobError` saying which pattern cannot be used and why."""
    for candidate in (pattern, *exclude):
        _check(candidate)
    flags = _FLAGS | (glob.IGNORECASE if ignore_case else 0)
    return FileFilter(
        glob.compile(pattern, flags=flags), glob.compile(list(exclude), flags=flags) if exclude else None
    )


def _check(pattern: str) -> None:
    """What wcmatch would take literally but a person surely meant otherwise is refused instead."""
    if not pattern or pattern.startswith("/"):
        raise InvalidGlobError(f"file glob {pattern!r} must be a non-empty relative pattern")
    if any(segment in ("", ".", "..") for segment in pattern.split("/")):
        # A record path is normalised (upload.record_path): such a segment would match no file, ever.
        raise InvalidGlobError(
            f"file glob {pattern!r} can never match: record paths have no '.', '..' or empty segments"
        )
    for segment in pattern.split("/"):
        opened = segment.find("[")
        if opened >= 0:
            start = opened + (2 if segment[opened + 1 : opened + 2] in ("!", "^", "]") else 1)
            if segment.find("]", start) < 0:
                raise InvalidGlobError(f"unclosed character class in file glob segment {segment!r}")
    if pattern.count("{") != pattern.count("}"):
        raise InvalidGlobError(f"unbalanced braces in file glob {pattern!r}")
