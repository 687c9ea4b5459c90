"""Typed payloads: a processor's payload declared as a dataclass or a TypedDict.

A processor registered with ``payload=SomeType`` has its payload checked
twice: by the producer before it sends (``ProcessorHandle.submit``), so a
mistake fails where it was made, and by the worker before the processor is
called, since a non-Python producer or an older build may send anything.
Both sides run this module, so they refuse the same things with the same
words, naming the field (``payload.size.width must be int, got '3'``).

The check is structural and shallow on purpose: JSON can only carry
str, int, float, bool, None, lists and objects, so those are the types
checked (with ``X | None``, ``Literal``, ``list[X]``, ``dict[str, X]`` and
nested dataclasses or TypedDicts). An annotation beyond them (a ``datetime``,
a custom class) is not checked: the payload holds its JSON form, which the
processor converts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from .text import clip


class PayloadError(ValueError):
    """A payload does not match its declared type; the message names the field."""


def check_payload_type(tp: Any) -> None:
    """Refuse at registration a ``payload=`` that is neither a dataclass nor a TypedDict."""
    if not (_is_dataclass_type(tp) or typing.is_typeddict(tp)):
        raise TypeError(f"payload= takes a dataclass or a TypedDict class, not {clip(tp)}")


def to_payload(tp: Any, value: Any) -> dict[str, Any]:
    """The producer's side: ``value`` (an instance of ``tp`` or a dict) as a checked dict."""
    if _is_dataclass_type(tp) and isinstance(value, tp):
        data = dataclasses.asdict(value)
    elif isinstance(value, Mapping):
        data = dict(value)
    else:
        raise PayloadError(
            f"payload must be a {tp.__name__} or a dict, not a {type(value).__name__}"
        )
    _check_object(tp, data, "payload")
    return data


def from_payload(tp: Any, data: Any) -> Any:
    """The worker's side: the checked payload as the processor declared it (a dataclass
    instance, or the dict itself for a TypedDict)."""
    _check_object(tp, data, "payload")
    return _build(tp, data)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _shape(tp: Any) -> tuple[dict[str, Any], set[str]]:
    """(field -> annotation, required field names) of a dataclass or TypedDict."""
    hints = typing.get_type_hints(tp)
    if _is_dataclass_type(tp):
        fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
        required = {
            name
            for name, f in fields.items()
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        return {name: hints.get(name, Any) for name in fields}, required
    # Required / NotRequired read from the annotations themselves: under
    # ``from __future__ import annotations`` __required_keys__ cannot see them
    extras = typing.get_type_hints(tp, include_extras=True)
    required = set()
    for name, hint in extras.items():
        marker = typing.get_origin(hint)
        if marker is typing.Required or (marker is not typing.NotRequired and tp.__total__):
            required.add(name)
    return dict(hints), required


def _check_object(tp: Any, value: Any, path: str) -> None:
    if not isinstance(value, Mapping):
        raise PayloadError(f"{path} must be an object ({tp.__name__}), got {clip(value)}")
    hints, required = _shape(tp)
    missing = sorted(required - value.keys())
    if missing:
        raise PayloadError(
            f"{path}.{missing[0]} is missing ({tp.__name__} needs {', '.join(sorted(required))})"
        )
    for key in value:
        if key not in hints:
            raise PayloadError(
                f"{path} has the unknown field {clip(key)}; {tp.__name__} has "
                f"{', '.join(hints) or 'no fields'}"
            )
    for key, hint in hints.items():
        if key in value:
            _check_value(hint, value[key], f"{path}.{key}")


def _name(hint: Any) -> str:
    if hint is type(None):
        return "None"
    if isinstance(hint, type) and not typing.get_args(hint):
        return hint.__name__
    return str(hint).replace("typing.", "")


def _check_value(hint: Any, value: Any, path: str) -> None:
    if hint is Any or hint is object:
        return
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        for option in args:
            try:
                _check_value(option, value, path)
                return
            except PayloadError:
                continue
        raise PayloadError(f"{path} must be {_name(hint)}, got {clip(value)}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise PayloadError(f"{path} must be one of {choices}, got {clip(value)}")
        return
    if hint is None or hint is type(None):
        if value is not None:
            raise PayloadError(f"{path} must be None, got {clip(value)}")
        return
    if origin in (list, tuple, set, frozenset) or hint in (list, tuple):
        if not isinstance(value, list):
            raise PayloadError(f"{path} must be a list, got {clip(value)}")
        item = args[0] if args else Any
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            item = Any  # a fixed-length tuple: its positions are not checked
        for i, element in enumerate(value):
            _check_value(item, element, f"{path}[{i}]")
        return
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(value, dict):
            raise PayloadError(f"{path} must be an object, got {clip(value)}")
        item = args[1] if len(args) == 2 else Any
        for key, element in value.items():
            _check_value(item, element, f"{path}.{key}")
        return
    if _is_dataclass_type(hint) or typing.is_typeddict(hint):
        _check_object(hint, value, path)
        return
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    else:
        return  # not a JSON type: the payload holds its JSON form, unchecked (module doc)
    if not ok:
        raise PayloadError(f"{path} must be {_name(hint)}, got {clip(value)}")


def _build(tp: Any, data: Mapping[str, Any]) -> Any:
    """A checked object as ``tp``: dataclasses instantiated, nested ones too."""
    if not _is_dataclass_type(tp):
        return dict(data)
    hints, _ = _shape(tp)
    kwargs = {key: _build_value(hints[key], value) for key, value in data.items()}
    return tp(**kwargs)


def _build_value(hint: Any, value: Any) -> Any:
    if _is_dataclass_type(hint) and isinstance(value, Mapping):
        return _build(hint, value)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        for option in args:
            if _is_dataclass_type(option) and isinstance(value, Mapping):
                return _build(option, value)
        return value
    if origin is list and args and isinstance(value, list):
        return [_build_value(args[0], v) for v in value]
    if origin is dict and len(args) == 2 and isinstance(value, dict):
        return {k: _build_value(args[1], v) for k, v in value.items()}
    return value
