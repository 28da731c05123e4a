"""File globs of Triggers, matched against a file's path inside its Record.

Rules (documented on `Trigger.spec.fileGlob`):
- `*` and `?` never cross `/`; `**` as a whole path segment matches any number of folders (also none);
- a pattern without `/` matches the file name in any folder, like a `.gitignore` line;
- `[abc]`, `[a-z]` and `[!abc]` are character classes; matching is case-sensitive.
"""

import functools
import re


class InvalidGlobError(ValueError):
    """The pattern cannot be used as a file glob."""


def matches(pattern: str, path: str) -> bool:
    """Whether the record path (relative, `/`-separated) matches the Trigger's glob."""
    return compile_glob(pattern).fullmatch(path) is not None


@functools.lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    if not pattern or pattern.startswith("/"):
        raise InvalidGlobError(f"file glob {pattern!r} must be a non-empty relative pattern")
    anchored = "/" in pattern
    segments = pattern.split("/")
    # A trailing `**` matches everything below its folder.
    last = len(segments) - 1
    body = "/".join(
        ".*" if segment == "**" and index == last else _segment_regex(segment)
        for index, segment in enumerate(segments)
    )
    # `**/` segments expand to "(?:.*/)?", so joining leaves a doubled separator to fold.
    body = body.replace("(?:.*/)?/", "(?:.*/)?")
    return re.compile(body if anchored else f"(?:.*/)?{body}")


def _segment_regex(segment: str) -> str:
    if segment == "**":
        return "(?:.*/)?"
    regex, index = [], 0
    while index < len(segment):
        char = segment[index]
        if char == "*":
            regex.append("[^/]*")
        elif char == "?":
            regex.append("[^/]")
        elif char == "[":
            end = segment.find("]", index + 2 if segment[index + 1 : index + 2] in ("!", "]") else index + 1)
            if end < 0:
                raise InvalidGlobError(f"unclosed character class in file glob segment {segment!r}")
            members = segment[index + 1 : end]
            negated = members.startswith("!")
            members = members[1:] if negated else members
            escaped = members.replace("\\", "\\\\").replace("^", "\\^")
            regex.append(f"[^/{escaped}]" if negated else f"[{escaped}]")
            index = end
        else:
            regex.append(re.escape(char))
        index += 1
    return "".join(regex)
