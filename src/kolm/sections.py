"""Config sections: dataclasses that validate themselves, with help text and ranges.

`option(...)` declares a field with its help text and allowed values; a class
deriving from `Section` checks every field at construction. `from_dict` builds
a section from YAML/CLI data and reports *every* problem at once: unknown keys
(with the valid ones listed), wrong types, values out of range.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import MISSING, field, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin

from kolm.errors import ConfigError

__all__ = ["Section", "option", "from_dict", "to_dict"]


# ----------------------------------------------------------------------------
# Declaring fields


def option(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    choices: typing.Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A dataclass field with help text and a validated range.

    `choices` restricts the value to a set; `ge/gt/le/lt` bound numbers. A
    `Literal[...]` annotation is an alternative to `choices`.
    """
    meta = {"help": help, "choices": choices, "ge": ge, "gt": gt, "le": le, "lt": lt}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    if isinstance(default, (list, dict, set)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


class Section:
    """Base class of every config section: validates itself on construction."""

    def __post_init__(self) -> None:
        problems = _check_section(self, prefix="")
        if problems:
            raise ConfigError(_format_problems(problems))
        try:
            self.validate()
        except ConfigError as exc:
            text = str(exc)
            raise ConfigError(text if text.startswith(_HEAD) else _format_problems([text])) from None

    def validate(self) -> None:
        """Cross-field checks; override and raise ConfigError("field: what is wrong; what to do")."""


# ----------------------------------------------------------------------------
# Type checking of values


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(tp))
    if origin is not None:
        args = ", ".join(_type_name(a) for a in get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """Convert `value` (from YAML/CLI) to `tp`, appending a message on failure."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            problems.append(f"{path}: {value!r} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1 and is_dataclass(others[0]):  # an optional section: report its fields' own problems
            return _coerce(value, others[0], path, problems)
        for arg in args:
            if arg is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, arg, path, trial)
            if not trial:
                return out
        problems.append(f"{path}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            problems.append(f"{path}: expected a list ({_type_name(tp)}), got {value!r}")
            return value
        (item_tp, *_) = get_args(tp) or (Any,)
        return [_coerce(v, item_tp, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping, got {value!r}")
            return value
        key_tp, val_tp = get_args(tp) or (Any, Any)
        return {k: _coerce(v, val_tp, f"{path}.{k}", problems) for k, v in value.items()}
    if isinstance(tp, type) and is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            problems.append(f"{path}: expected a mapping of {tp.__name__} settings, got {value!r}")
            return value
        return _build(tp, value, path, problems)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "yes", "on", "1", "false", "no", "off", "0"}:
            return value.lower() in {"true", "yes", "on", "1"}
        problems.append(f"{path}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool):
            problems.append(f"{path}: expected an integer, got {value!r}")
            return value
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(float(value)) if float(value).is_integer() else int(value)
            except ValueError:
                pass
        problems.append(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        problems.append(f"{path}: expected a number, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        problems.append(f"{path}: expected a string, got {value!r}")
        return value
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_section(obj: Any, prefix: str) -> list[str]:
    """Type/range check of an already-built section (used by __post_init__)."""
    problems: list[str] = []
    hints = _hints(type(obj))
    for f in fields(obj):
        path = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        coerced = _coerce(value, hints[f.name], path, problems)
        if coerced is not value:
            object.__setattr__(obj, f.name, coerced)
        problems.extend(_check_range(coerced, f, path))
    return problems


def _check_range(value: Any, f: dataclasses.Field, path: str) -> list[str]:
    meta = f.metadata
    out: list[str] = []
    if value is None:
        return out
    choices = meta.get("choices")
    if choices is not None:
        items = value if isinstance(value, list) else [value]
        for item in items:
            if item not in choices:
                out.append(f"{path}: {item!r} is not allowed; choose one of {list(choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        for key, ok, word in (
            ("ge", lambda v, b: v >= b, ">="),
            ("gt", lambda v, b: v > b, ">"),
            ("le", lambda v, b: v <= b, "<="),
            ("lt", lambda v, b: v < b, "<"),
        ):
            bound = meta.get(key)
            if bound is not None and not ok(value, bound):
                out.append(f"{path}: {value!r} is out of range; it must be {word} {bound}")
    return out


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    """Build dataclass `cls` from a mapping, collecting problems instead of raising."""
    known = {f.name: f for f in fields(cls)}
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key not in known:
            hint = difflib.get_close_matches(str(key), list(known), n=1)
            near = f" (did you mean '{hint[0]}'?)" if hint else ""
            problems.append(f"{path}: unknown key{near}; valid keys: {', '.join(sorted(known))}")
            continue
        before = len(problems)
        kwargs[key] = _coerce(value, hints[key], path, problems)
        if len(problems) == before:
            problems.extend(_check_range(kwargs[key], known[key], path))
    for name, f in known.items():
        if name not in kwargs and f.default is MISSING and f.default_factory is MISSING:
            problems.append(f"{prefix + '.' if prefix else ''}{name}: required setting is missing")
    if problems:
        return None
    try:
        return cls(**kwargs)
    except ConfigError as exc:
        lines = str(exc).splitlines()
        problems.extend(line.strip().removeprefix("- ") for line in lines[1:] or lines)
        return None


_HEAD = "invalid configuration (설정 오류)"


def _format_problems(problems: list[str]) -> str:
    head = f"{_HEAD}: {len(problems)} problem(s)"
    return "\n".join([head] + [f"  - {p}" for p in problems])


def from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Build and validate a config dataclass from a mapping; raise ConfigError listing every problem."""
    problems: list[str] = []
    obj = _build(cls, data or {}, "", problems)
    if problems:
        raise ConfigError(_format_problems(problems))
    return obj


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (for YAML, JSON and hashing)."""
    if is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
