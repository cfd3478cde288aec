"""Message types by name, and numeric field paths into them checked against the type (`voltage`,
`linear_acceleration.z`, `data[0]`).

A channel of the forecaster names a message type ("sensor_msgs/msg/BatteryState") and a field path. Both
are checked against the type's introspection data when the node starts, so a typo fails at start-up with
a message naming the parameter; at run time a path (xlstm_ros.engines.channels.FieldPath) can only fail on
an index beyond a sequence's length, which the node counts as a dropped sample.
"""
from __future__ import annotations

import importlib
import re

from xlstm_ros.engines.channels import FieldPath, canonical_type

NUMERIC_TYPES = frozenset({"float", "double", "long double", "int8", "uint8", "int16", "uint16", "int32",
                           "uint32", "int64", "uint64", "boolean", "octet", "char"})
_SEGMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:\[(?P<index>-?\d+)\])?$")
_SEQUENCE = re.compile(r"^sequence<(?P<element>[^,>]+)(?:,\s*\d+)?>$")
_ARRAY = re.compile(r"^(?P<element>.+)\[(?P<size>\d+)\]$")


class FieldPathError(ValueError):
    """A message type name or field path does not exist or does not lead to a number."""


def import_message_type(name: str) -> type:
    """The message class for "pkg/msg/Type" (or "pkg/Type")."""
    parts = canonical_type(name).split("/")
    if len(parts) != 3 or parts[1] != "msg" or not all(parts):
        raise FieldPathError(f"message type '{name}' is not of the form package/msg/Type")
    package, _, type_name = parts
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError as error:
        raise FieldPathError(f"message package '{package}' is not installed ({error})") from None
    msg_type = getattr(module, type_name, None)
    if msg_type is None or not hasattr(msg_type, "get_fields_and_field_types"):
        raise FieldPathError(f"message type '{name}' does not exist in package '{package}'")
    return msg_type


def _element_type(type_text: str) -> tuple[str, int | None] | None:
    """(element type, fixed size or None) for sequence/array type strings, None for scalars."""
    match = _SEQUENCE.match(type_text)
    if match:
        return match["element"].strip(), None
    match = _ARRAY.match(type_text)
    if match:
        return match["element"].strip(), int(match["size"])
    return None


def compile_field_path(msg_type: type, path: str) -> FieldPath:
    """Validate `path` against `msg_type` and return a FieldPath; FieldPathError explains what is wrong."""
    if not path or not path.strip():
        raise FieldPathError("field path is empty")
    steps = []
    current_type, type_text = msg_type, None
    segments = path.strip().split(".")
    for position, segment in enumerate(segments):
        match = _SEGMENT.match(segment)
        if not match:
            raise FieldPathError(f"field path '{path}': '{segment}' is not a field name with an optional [index]")
        if current_type is None:
            raise FieldPathError(f"field path '{path}': '{segments[position - 1]}' is a {type_text}, "
                                 f"it has no field '{match['name']}'")
        fields = current_type.get_fields_and_field_types()
        name = match["name"]
        if name not in fields:
            raise FieldPathError(f"field path '{path}': {current_type.__name__} has no field '{name}' "
                                 f"(fields: {', '.join(fields)})")
        type_text = fields[name]
        index = None
        if match["index"] is not None:
            element = _element_type(type_text)
            if element is None:
                raise FieldPathError(f"field path '{path}': '{name}' is a {type_text}, not an array")
            index = int(match["index"])
            type_text, size = element
            if size is not None and not -size <= index < size:
                raise FieldPathError(f"field path '{path}': index {index} is outside '{name}' of size {size}")
        elif _element_type(type_text) is not None:
            raise FieldPathError(f"field path '{path}': '{name}' is a {type_text}; pick an element, "
                                 f"for example '{name}[0]'")
        steps.append((name, index))
        current_type = _nested_type(type_text)
    if current_type is not None or type_text not in NUMERIC_TYPES:
        raise FieldPathError(f"field path '{path}' ends at a {type_text}, not a number")
    return FieldPath(path.strip(), tuple(steps))


def _nested_type(type_text: str) -> type | None:
    if "/" not in type_text:
        return None
    return import_message_type(type_text)


def has_header(msg_type: type) -> bool:
    """True when the type carries a std_msgs/Header named `header` (its stamp is the sample time)."""
    return msg_type.get_fields_and_field_types().get("header") == "std_msgs/Header"

