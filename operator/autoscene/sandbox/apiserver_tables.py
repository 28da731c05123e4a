"""Server-side printing: `meta.k8s.io/v1` Tables for `kubectl get`, columns picked by simple JSONPaths."""

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .apiserver_printers import human_duration, parse_time
from .apiserver_resources import PrinterColumn, ResourceType

_NAME_COLUMN = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_FILTER = re.compile(r"""^\?\(@\.([\w.\-/]+)\s*(==|!=)\s*(?:"([^"]*)"|'([^']*)'|([^)\s]+))\)$""")


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def _path_steps(path: str) -> list[str]:
    """Split `.a.b[0]['c.d'][?(@.type=="X")]` into steps; `\\.` escapes a dot inside a key."""
    path = path.strip()
    if path.startswith("{") and path.endswith("}"):
        path = path[1:-1]
    steps: list[str] = []
    index = 0
    while index < len(path):
        char = path[index]
        if char == ".":
            index += 1
        elif char == "[":
            end = path.index("]", index) if not path.startswith("[?(", index) else path.index(")]", index) + 1
            steps.append(path[index + 1 : end].strip("'\""))
            index = end + 1
        else:
            key = []
            while index < len(path) and path[index] not in ".[":
                if path[index] == "\\" and index + 1 < len(path):
                    index += 1
                key.append(path[index])
                index += 1
            steps.append("".join(key))
    return steps


def _step(values: list[Any], step: str) -> list[Any]:
    found: list[Any] = []
    for value in values:
        if step == "*":
            found.extend(
                value.values() if isinstance(value, Mapping) else value if isinstance(value, list) else []
            )
        elif (match := _FILTER.match(step)) and isinstance(value, list):
            field, operator, *literals = match.groups()
            expected = next(literal for literal in literals if literal is not None)
            found.extend(
                item
                for item in value
                if (_scalar_text(_lookup(item, field)) == expected) == (operator == "==")
            )
        elif isinstance(value, list) and re.fullmatch(r"-?\d+", step):
            position = int(step)
            if -len(value) <= position < len(value):
                found.append(value[position])
        elif isinstance(value, Mapping) and step in value:
            found.append(value[step])
    return found


def _lookup(value: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def json_path_value(obj: Mapping[str, Any], path: str) -> Any:
    """The first value a simple JSONPath finds, or None."""
    values: list[Any] = [obj]
    for step in _path_steps(path):
        values = _step(values, step)
    return values[0] if values else None


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else str(value)


def _cell(column: PrinterColumn, obj: Mapping[str, Any], now: datetime) -> Any:
    if column.derive is not None:
        return column.derive(obj, now)
    value = json_path_value(obj, column.json_path)
    if value is None:
        return None
    if column.type == "date":
        moment = parse_time(value)
        return "<invalid>" if moment is None else human_duration((now - moment).total_seconds())
    if column.type == "integer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    if column.type == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    return _scalar_text(value)


def _column_definition(column: PrinterColumn) -> dict[str, Any]:
    return {
        "name": column.name,
        "type": column.type,
        "format": column.format,
        "priority": column.priority,
        "description": column.description
        or f"Custom resource definition column (in JSONPath format): {column.json_path}",
    }


def _row_object(obj: Mapping[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata", {}),
    }


def table_of(
    resource: ResourceType,
    objects: Iterable[Mapping[str, Any]],
    resource_version: str,
    *,
    include_object: str = "Metadata",
    with_columns: bool = True,
) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = []
    for obj in objects:
        cells = [obj.get("metadata", {}).get("name")]
        cells += [_cell(column, obj, now) for column in resource.printer_columns]
        row: dict[str, Any] = {"cells": cells}
        if (row_object := _row_object(obj, include_object)) is not None:
            row["object"] = row_object
        rows.append(row)
    name_column = {**_NAME_COLUMN, "priority": resource.name_priority}
    columns = [name_column] + [_column_definition(column) for column in resource.printer_columns]
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": columns if with_columns else [],
        "rows": rows,
    }
