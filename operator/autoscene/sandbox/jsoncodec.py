"""JSON for the embedded API server: orjson, with the standard library behind it.

Encoding and decoding are the largest part of the server's CPU under load (every write is read,
checked for size, answered and sent to each watch), and orjson does both about ten times faster. It
refuses a few values the API accepts, so those take the standard library: integers beyond 64 bits
and non-string keys (encoding), lone surrogates (decoding). Decoding an integer beyond 64 bits gives
a float, as kube-apiserver's decoder of unstructured objects does (int64, else float64).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON of a JSON-like value."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def loads(document: bytes | str) -> Any:
    """The value of a JSON document; ValueError (json.JSONDecodeError) when it is not one."""
    try:
        return orjson.loads(document)
    except orjson.JSONDecodeError:
        return json.loads(document)  # the same value where only orjson refuses it, else its error
