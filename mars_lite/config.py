"""Small JSON configs read into dataclasses, with errors that name the file and the field.

``load_config(cls, source)`` is shared by every config in the kit (model, training, ...): it
accepts a path to a JSON file, a dict, or an instance, rejects unknown keys, checks the type of
every field and calls the dataclass' own ``validate()`` when it has one.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar
from .errors import MarsLiteError

T = TypeVar("T")



class ConfigError(MarsLiteError, ValueError):
    """A config file or value is invalid; the message names the source and the field."""


def _check_type(value: Any, annotation: Any) -> bool:
    """True when ``value`` fits the (simple) type ``annotation`` used in our configs."""
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_check_type(value, arg) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        inner = args[0] if args else Any
        return isinstance(value, (list, tuple)) and all(_check_type(v, inner) for v in value)
    if origin is dict or annotation is dict:
        return isinstance(value, dict)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def load_config(cls: type[T], source: str | Path | dict | T, **overrides: Any) -> T:
    """Build the dataclass ``cls`` from a JSON file, a dict or an instance.

    Args:
        cls: a dataclass type.
        source: path to a ``.json`` file, a mapping of field values, or an instance of ``cls``.
        overrides: field values that replace those of ``source``.
    Raises:
        ConfigError: unknown key, wrong type, missing field or a failed ``validate()``; the
            message names the file (or "<dict>") and the field.
    """
    if isinstance(source, cls):
        values = dataclasses.asdict(source)
        origin = f"<{cls.__name__}>"
    elif isinstance(source, dict):
        values, origin = dict(source), "<dict>"
    else:
        path = Path(source)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from err
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a JSON object at the top level")
    values.update(overrides)
    values.pop("$comment", None)
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{origin}: unknown field(s) {unknown} for {cls.__name__}; "
                          f"known fields are {sorted(fields)}")
    for name, value in values.items():
        if not _check_type(value, hints[name]):
            raise ConfigError(f"{origin}: field {name!r} = {value!r} should be of type "
                              f"{getattr(hints[name], '__name__', hints[name])}")
    try:
        instance = cls(**values)
    except TypeError as err:
        raise ConfigError(f"{origin}: {err}") from err
    validate = getattr(instance, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as err:
            raise ConfigError(f"{origin}: {err}") from err
    return instance


def config_diff(a: Any, b: Any) -> list[str]:
    """Names of the fields whose values differ between two dataclass instances (``a.x=..`` form)."""
    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    return [f"{k}: {da.get(k)!r} != {db.get(k)!r}" for k in sorted(set(da) | set(db))
            if da.get(k) != db.get(k)]
