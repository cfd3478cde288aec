"""Command-line options generated from a config dataclass, so that a parser never drifts from its config.

A field declared with `option(default, help, ...)` becomes `--field-name`: its type comes from the
annotation (int, float, str, `X | None`, `tuple[int, ...]`), a bool becomes `--name/--no-name`, and
`parse` or `choices` refine it. `config_from_args` builds the config back from the parsed options.
"""
from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, Callable, Sequence


def option(default: Any, help: str, *, parse: Callable[[str], Any] | None = None,
           choices: Sequence[str] | None = None, metavar: str | None = None, **metadata: Any) -> Any:
    """A dataclass field that add_config_arguments turns into one command-line option (`metadata`: more
    field metadata for the config's own use)."""
    return dataclasses.field(default=default, metadata={"help": help, "parse": parse, "choices": choices,
                                                        "metavar": metavar, **metadata})


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH such as 192x256, got '{text}'") from error
    return height, width


def parse_ints(text: str) -> tuple[int, ...]:
    """'1,3,5' -> (1, 3, 5)."""
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from error


def parse_names(text: str) -> tuple[str, ...]:
    """'a, b,c' -> ('a', 'b', 'c'); empty items are left out."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _parser_of(annotation: Any) -> Callable[[str], Any]:
    """The string parser of a field's annotation: int, float, str, `X | None` or `tuple[int, ...]`."""
    arguments = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return _parser_of(arguments[0])
    if typing.get_origin(annotation) is tuple and all(a in (int, Ellipsis) for a in arguments):
        return parse_ints
    if annotation in (int, float, str):
        return annotation
    raise TypeError(f"no command-line parser for the annotation {annotation!r}; pass option(parse=...)")


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One option per `option(...)` field of the dataclass `config_class`, with its default and help."""
    hints = typing.get_type_hints(config_class)
    for item in dataclasses.fields(config_class):
        if "help" not in item.metadata:
            continue
        flag = "--" + item.name.replace("_", "-")
        meta = item.metadata
        if hints[item.name] is bool:
            parser.add_argument(flag, default=item.default, action=argparse.BooleanOptionalAction, help=meta["help"])
            continue
        parser.add_argument(flag, default=item.default, type=meta["parse"] or _parser_of(hints[item.name]),
                            choices=meta["choices"], metavar=meta["metavar"], help=meta["help"])


def config_from_args(config_class: type, args: argparse.Namespace) -> Any:
    """An instance of the config dataclass `config_class` from parsed options named like its fields."""
    return config_class(**{item.name: getattr(args, item.name) for item in dataclasses.fields(config_class)
                           if hasattr(args, item.name)})


def parse_config(config_class: type, argv: Sequence[str] | None = None, prog: str | None = None,
                 description: str | None = None) -> Any:
    """Parse the command line `argv` into an instance of the config dataclass `config_class`."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser, config_class)
    return config_from_args(config_class, parser.parse_args(argv))
