"""
Decoding of the protobuf request bodies that `kubectl create namespace|configmap|secret|serviceaccount` send.

kubectl's typed clients write `application/vnd.kubernetes.protobuf`: a `k8s\\0` magic, then a
`runtime.Unknown` envelope holding the apiVersion, the kind and the object's own protobuf encoding.
Only the kinds above are understood (with the fields those commands set); others are 415.
"""

import base64
from collections.abc import Iterator
from typing import Any

MAGIC = b"k8s\x00"

# A schema maps a field number to (JSON name, how to decode it, the schema of a nested message).
Schema = dict[int, tuple[str, str, Any]]

_OWNER_REFERENCE: Schema = {
    1: ("kind", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
    6: ("controller", "bool", None),
    7: ("blockOwnerDeletion", "bool", None),
}
_OBJECT_META: Schema = {
    1: ("name", "string", None),
    2: ("generateName", "string", None),
    3: ("namespace", "string", None),
    6: ("resourceVersion", "string", None),
    11: ("labels", "map", "string"),
    12: ("annotations", "map", "string"),
    13: ("ownerReferences", "messages", _OWNER_REFERENCE),
    14: ("finalizers", "strings", None),
}
_OBJECT_REFERENCE: Schema = {
    1: ("kind", "string", None),
    2: ("namespace", "string", None),
    3: ("name", "string", None),
    4: ("uid", "string", None),
    5: ("apiVersion", "string", None),
}
_KINDS: dict[str, Schema] = {
    "Namespace": {
        1: ("metadata", "message", _OBJECT_META),
        2: ("spec", "message", {1: ("finalizers", "strings", None)}),
    },
    "ConfigMap": {
        1: ("metadata", "message", _OBJECT_META),
        2: ("data", "map", "string"),
        3: ("binaryData", "map", "bytes"),
        4: ("immutable", "bool", None),
    },
    "Secret": {
        1: ("metadata", "message", _OBJECT_META),
        2: ("data", "map", "bytes"),
        3: ("type", "string", None),
        4: ("stringData", "map", "string"),
        5: ("immutable", "bool", None),
    },
    "ServiceAccount": {
        1: ("metadata", "message", _OBJECT_META),
        2: ("secrets", "messages", _OBJECT_REFERENCE),
        3: ("imagePullSecrets", "messages", {1: ("name", "string", None)}),
        4: ("automountServiceAccountToken", "bool", None),
    },
}


class UnsupportedProtobuf(ValueError):
    """A protobuf body of a kind (or a shape) this decoder does not know."""


def _varint(data: bytes, position: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if position >= len(data):
            raise UnsupportedProtobuf("truncated varint")
        byte = data[position]
        value |= (byte & 0x7F) << shift
        position, shift = position + 1, shift + 7
        if not byte & 0x80:
            return value, position


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) pairs: ints for varints, bytes for length-delimited and fixed-size fields."""
    position = 0
    while position < len(data):
        key, position = _varint(data, position)
        number, wire_type = key >> 3, key & 7
        value: int | bytes
        if wire_type == 0:
            value, position = _varint(data, position)
        elif wire_type == 2:
            length, position = _varint(data, position)
            value, position = data[position : position + length], position + length
        elif wire_type in (1, 5):
            size = 8 if wire_type == 1 else 4
            value, position = data[position : position + size], position + size
        else:
            raise UnsupportedProtobuf(f"unsupported wire type {wire_type}")
        yield number, value


def _scalar(value: int | bytes, how: str) -> Any:
    if how == "bool":
        return bool(value)
    if not isinstance(value, bytes):
        raise UnsupportedProtobuf(f"expected bytes for a {how}")
    return base64.b64encode(value).decode() if how == "bytes" else value.decode("utf-8")


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue  # fields the server assigns itself, or that those commands never set
        name, how, nested = schema[number]
        if how == "message" and isinstance(value, bytes):
            result[name] = _message(value, nested)
        elif how == "messages" and isinstance(value, bytes):
            result.setdefault(name, []).append(_message(value, nested))
        elif how == "strings":
            result.setdefault(name, []).append(_scalar(value, "string"))
        elif how == "map" and isinstance(value, bytes):
            entry = dict(_fields(value))
            key = _scalar(entry.get(1, b""), "string")
            result.setdefault(name, {})[key] = _scalar(entry.get(2, b""), nested)
        elif (scalar := _scalar(value, how)) not in ("", False):
            result[name] = scalar  # Go encodes empty non-pointer fields too; JSON omits them
    return result


def decode_object(body: bytes) -> dict[str, Any]:
    if not body.startswith(MAGIC):
        raise UnsupportedProtobuf("the body lacks the k8s protobuf magic")
    envelope = dict(_fields(body[len(MAGIC) :]))
    type_meta = envelope.get(1, b"")
    raw = envelope.get(2, b"")
    if not isinstance(type_meta, bytes) or not isinstance(raw, bytes):
        raise UnsupportedProtobuf("malformed envelope")
    header = _message(type_meta, {1: ("apiVersion", "string", None), 2: ("kind", "string", None)})
    schema = _KINDS.get(header.get("kind", ""))
    if schema is None:
        raise UnsupportedProtobuf(
            f"protobuf bodies of kind {header.get('kind')!r} are not supported; use JSON"
        )
    return {**header, **_message(raw, schema)}
