"""The one config loader: YAML file, dotted `key.path=value` overrides, CLI flags generated from the fields.

Every typed config (TrainConfig, SFTConfig, RewardServiceConfig, ErvTrainConfig) is read through
`load_config`; a missing file, bad YAML, a malformed override or an invalid value raises
ConfigError with one line naming the file and the field. `add_config_flags` turns a pydantic
model's fields into argparse options whose help text is the field's description, so every field
is documented once. Runs in whichever process reads a config (the CLI, a service's entry point).
"""

from __future__ import annotations

import argparse
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticUndefined

from common.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: str | Path, model: type[BaseModel]) -> dict:
    """The YAML mapping in `path`; ConfigError when it is missing, not YAML or not a mapping."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path} must hold a mapping of {model.__name__} fields")
    return values


def apply_override(values: dict, override: str) -> None:
    """Set `a.b.c=value` in a nested dict; the value is parsed as YAML (numbers, bools, null, lists)."""
    path, sep, raw = override.partition("=")
    if not sep or not path.strip():
        raise ConfigError(
            f"override {override!r} is not of the form key.path=value (key=value for a top-level field)"
        )
    keys = path.strip().split(".")
    node = values
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {key} is not a section")
        node = child
    node[keys[-1]] = yaml.safe_load(raw)


def validation_message(err: ValidationError) -> str:
    """`field.path: problem` for every error, joined by `; ` (one line)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in err.errors()
    )


def load_config(
    model: type[M],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    flags: Mapping[str, Any] | None = None,
) -> M:
    """Validate `model` from the YAML at `path` (if any), then dotted `overrides`, then `flags` (set flags only).

    Raises ConfigError with one line: `<file or model name>: <field>: <problem>`.
    """
    values = read_mapping(path, model) if path is not None else {}
    for override in overrides:
        apply_override(values, override)
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    try:
        return model(**values)
    except ValidationError as err:
        raise ConfigError(
            f"{path if path is not None else model.__name__}: {validation_message(err)}"
        ) from None


# -- flags from fields ------------------------------------------------------------------------------


def _flag_type(annotation) -> tuple[Any, dict]:
    """(scalar type, extra argparse kwargs) of a field annotation; `X | None` is X."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    if typing.get_origin(annotation) is Literal:
        choices = list(typing.get_args(annotation))
        return type(choices[0]), {"choices": choices}
    if annotation in (int, float, str, bool, Path):
        return annotation, {}
    raise TypeError(f"no command-line flag for a field of type {annotation!r}")


def add_config_flags(
    parser: argparse.ArgumentParser, model: type[BaseModel], exclude: Iterable[str] = ()
) -> None:
    """One `--field-name` option per field of `model`; help = the field's description (and default).

    Flags default to None, so a flag left out keeps the file's (or the model's default) value;
    bool fields get `--name/--no-name`. Read them back with `flag_values`.
    """
    skip = set(exclude)
    for name, field in model.model_fields.items():
        if name in skip:
            continue
        scalar, extra = _flag_type(field.annotation)
        help_text = field.description or name
        if field.is_required():
            help_text += " (required)"
        elif field.default not in (None, PydanticUndefined):
            help_text += f" (default {field.default})"
        flag = "--" + name.replace("_", "-")
        if scalar is bool:
            parser.add_argument(
                flag, dest=name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        else:
            metavar = None if "choices" in extra else name.upper()
            parser.add_argument(
                flag, dest=name, type=scalar, default=None, metavar=metavar, help=help_text, **extra
            )


def flag_values(args: argparse.Namespace, model: type[BaseModel]) -> dict[str, Any]:
    """The fields of `model` that were given as flags in `args` (flags left out are not included)."""
    return {name: getattr(args, name) for name in model.model_fields if getattr(args, name, None) is not None}
