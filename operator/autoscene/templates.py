"""Parameters of an Action and the placeholders that carry them into its command, args and env.

Placeholders are `{{name}}` with a closed set of names: `parameter.<key>`, `record.name`, `file.path`,
`file.stem`, `invocation.name`. Written here rather than with a template engine: Jinja and its kind
evaluate expressions and filters, which user-supplied values in a shared cluster should not reach, and
only exact substitution with an error for any unknown name is wanted. Pure: no I/O.
"""

import re
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")


class ParameterError(ValueError):
    """A parameter or placeholder that cannot be resolved; the message names it."""


# The reason of a run whose parameters its Action refuses (ParameterError), and of a Trigger all of
# whose runs would be refused so.
INVALID_PARAMETERS = "InvalidParameters"


def resolve(
    declared: Iterable[Mapping[str, Any]], *given: tuple[str, Mapping[str, Any] | None]
) -> dict[str, str]:
    """The value of every declared parameter: the first of `given` (a (source, values) pair, e.g.
    ("Invocation", spec.parameters), most specific first) that sets it, else its `default`.
    ParameterError for a value given to a parameter the Action does not declare, or a required one
    (`required: true`, no default) that nobody set."""
    declarations = {entry["name"]: entry for entry in declared}
    for source, values in given:
        unknown = sorted(set(values or {}) - set(declarations))
        if unknown:
            raise ParameterError(f"{source} sets {_names(unknown)} that the Action does not declare")
    resolved: dict[str, str] = {}
    for name, entry in declarations.items():
        found = next((values[name] for _, values in given if values and name in values), None)
        if found is None:
            found = entry.get("default")
        if found is None:
            if entry.get("required"):
                raise ParameterError(f'the required parameter "{name}" has no value')
            found = ""
        resolved[name] = str(found)
    return resolved


def context(parameters: Mapping[str, str], record: str, file: str, invocation: str) -> dict[str, str]:
    """The values placeholders may name, for a run of `invocation` on `file` of `record`."""
    return {
        **{f"parameter.{name}": value for name, value in parameters.items()},
        "record.name": record,
        "file.path": file,
        "file.stem": PurePosixPath(file).stem,
        "invocation.name": invocation,
    }


def expand(text: str, values: Mapping[str, str], where: str) -> str:
    """`text` with each `{{name}}` replaced by its value; ParameterError naming an unknown placeholder
    and `where` it is (e.g. "args[1]")."""

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            raise ParameterError(f"unknown placeholder {{{{{name}}}}} in {where}")
        return values[name]

    return PLACEHOLDER.sub(value_of, text)


def _names(names: list[str]) -> str:
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"parameter{'s' if len(names) > 1 else ''} {quoted}"
