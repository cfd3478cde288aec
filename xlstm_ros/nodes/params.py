"""Declared, described and validated ROS parameters for the xlstm_ros nodes.

Each node lists its parameters as `Param`s. `declare_all` declares them with their descriptions, reads the
values, runs each validator and raises `ParameterError` naming the parameter on the first invalid value.
`reject_unknown` turns a parameter that was given (params file or -p) but is not declared, a typo in a
config file for example, into the same error. Nodes catch `ParameterError` in `main`, log it and exit 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

_TYPE_OF_DEFAULT = {bool: Parameter.Type.BOOL, int: Parameter.Type.INTEGER, float: Parameter.Type.DOUBLE,
                    str: Parameter.Type.STRING}


class ParameterError(ValueError):
    """An invalid or unknown parameter; the message starts with the parameter's name."""

    def __init__(self, name: str, problem: str):
        super().__init__(f"parameter '{name}': {problem}")
        self.name = name


@dataclass(frozen=True)
class Param:
    """A parameter: name, default (its type is the parameter's type), description, optional check.

    `check(value)` returns None when the value is fine, else a sentence saying what is wrong."""

    name: str
    default: Any
    description: str
    check: Callable[[Any], str | None] | None = None
    string_array: bool = False


def declare_all(node: Node, params: Iterable[Param]) -> dict[str, Any]:
    """Declare and validate `params`; returns {name: value}."""
    values = {}
    for param in params:
        try:
            value = _declare(node, param)
        except (InvalidParameterTypeException, InvalidParameterValueException) as error:
            raise ParameterError(param.name, str(error)) from None
        problem = param.check(value) if param.check else None
        if problem:
            raise ParameterError(param.name, f"{problem} (got {value!r})")
        values[param.name] = value
    return values


def _declare(node: Node, param: Param) -> Any:
    descriptor = ParameterDescriptor(description=param.description, read_only=True)
    if param.string_array:
        node.declare_parameter(param.name, Parameter.Type.STRING_ARRAY, descriptor)
        value = node.get_parameter(param.name).value
        return list(param.default) if value is None else list(value)
    descriptor.dynamic_typing = True  # accept 1 for a double parameter; the type is checked below
    value = node.declare_parameter(param.name, param.default, descriptor).value
    expected = type(param.default)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ParameterError(param.name, f"expected a {_TYPE_OF_DEFAULT[expected].name.lower()}, got {value!r}")
    return value


def reject_unknown(node: Node) -> None:
    """Raise ParameterError for any parameter override that the node did not declare."""
    overrides = getattr(node, "_parameter_overrides", {})
    unknown = sorted(name for name in overrides if not node.has_parameter(name))
    if unknown:
        raise ParameterError(unknown[0], f"unknown parameter of node '{node.get_name()}' "
                                         f"(unknown: {', '.join(unknown)}); check the spelling in the config")


def positive(value: float) -> str | None:
    return None if value > 0 else "must be positive"


def at_least(minimum: float) -> Callable[[float], str | None]:
    return lambda value: None if value >= minimum else f"must be at least {minimum}"


def one_of(*choices: str) -> Callable[[str], str | None]:
    return lambda value: None if value in choices else f"must be one of {', '.join(choices)}"
