"""A small TOML configuration validator built on dataclasses.

Models are plain dataclasses whose fields are declared with `setting()`, which
keeps the field's documentation, range and allowed values in the model itself.
`load()` reads a TOML file and builds the model, checking types, ranges and
allowed values; unknown keys are errors. Every error names the file, the key
path and what is allowed, in one line, so an operator can fix it without a
traceback. `reference_markdown()` turns the same models into a configuration
reference document, so the documentation cannot drift from the code.

Supported field types: bool, int, float (an integer is accepted), str,
`X | None`, unions of those scalars (`int | str`), `list[X]`, `dict[str, X]` and
nested dataclasses (a TOML table; `SomeModel | None` is a table that may be absent). Deliberately no pydantic:
the node agent must stay small.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from puewatch.errors import ConfigError

T = TypeVar("T")

_NO_DEFAULT = dataclasses.MISSING


def setting(
    default: Any = _NO_DEFAULT,
    *,
    doc: str,
    default_factory: Any = _NO_DEFAULT,
    min: float | None = None,  # noqa: A002 - reads naturally at the call site
    max: float | None = None,  # noqa: A002
    min_exclusive: bool = False,
    choices: Sequence[Any] | None = None,
    secret: bool = False,
    example: Any = None,
) -> Any:
    """Declare a configuration field.

    doc: one or two sentences for the reference document.
    min/max: inclusive bounds for numbers (`min_exclusive` makes min exclusive),
      and for lists, dicts and strings bounds on their length.
    choices: the only values allowed.
    secret: never echo the value in an error message.
    """
    meta = {
        "doc": doc,
        "min": min,
        "max": max,
        "min_exclusive": min_exclusive,
        "choices": tuple(choices) if choices is not None else None,
        "secret": secret,
        "example": example,
    }
    if default_factory is not _NO_DEFAULT:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class _Invalid(Exception):
    """One validation error: the key path and the message."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


class _Noted(_Invalid):
    """A table or item that could not be built, its errors already noted (`check_file` mode)."""


# While `check_file` runs: every error found, so a check reports them all at once rather than the first.
_noted: list[_Invalid] | None = None


def _note(exc: _Invalid) -> _Noted:
    """Note `exc` (once) and return what to raise in its place; outside `check_file` it is raised as it is."""
    if _noted is None:
        raise exc
    if not isinstance(exc, _Noted):
        _noted.append(exc)
    return _Noted(exc.path, exc.message)


def _each(items: list[tuple[Any, Any]], convert: Any) -> list[tuple[Any, Any]]:
    """(key, converted value) of every item; in `check_file` mode an item in error is noted and left out."""
    out, failed = [], False
    for key, value in items:
        try:
            out.append((key, convert(key, value)))
        except _Invalid as exc:
            _note(exc)
            failed = True
    if failed:
        raise _Noted("", "")
    return out


def _join(path: str, key: str) -> str:
    if not key:
        return path
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        (arg,) = typing.get_args(tp)
        return f"list of {_type_name(arg)}"
    if origin is dict:
        _, arg = typing.get_args(tp)
        return f"table of {_type_name(arg)}"
    if dataclasses.is_dataclass(tp):
        return "table"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(tp, getattr(tp, "__name__", str(tp)))


def _show(value: Any, secret: bool) -> str:
    if secret:
        return "<hidden>"
    if isinstance(value, dict):
        return "a table"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_SCALARS = (bool, int, float, str)


def _is_scalar(tp: type, value: Any) -> bool:
    if tp is bool or isinstance(value, bool):
        return tp is bool and isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float))
    return isinstance(value, tp)


def _convert(tp: Any, value: Any, path: str, meta: dict[str, Any]) -> Any:
    secret = bool(meta.get("secret"))
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return _convert(args[0], value, path, meta)
        if not all(a in _SCALARS for a in args):
            raise TypeError(f"{path}: only `X | None` and unions of bool, int, float and str are supported")
        # `int | str` (a GPU index or UUID): the first type the value is; its checks apply.
        for arg in args:
            if _is_scalar(arg, value):
                return _convert(arg, value, path, meta)
        raise _Invalid(path, f"must be {_type_name(tp)}, got {_show(value, secret)}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _Invalid(path, f"must be a table, got {_show(value, secret)}")
        return _build(tp, value, path)
    if origin is list:
        (arg,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise _Invalid(path, f"must be a list of {_type_name(arg)}, got {_show(value, secret)}")
        _check_length(len(value), path, meta, "items")
        return [v for _, v in _each(list(enumerate(value)), lambda i, v: _convert(arg, v, f"{path}[{i}]", {"secret": secret}))]
    if origin is dict:
        key_tp, arg = typing.get_args(tp)
        if key_tp is not str:
            raise TypeError(f"{path}: dict keys must be str")
        if not isinstance(value, dict):
            raise _Invalid(path, f"must be a table of {_type_name(arg)}, got {_show(value, secret)}")
        _check_length(len(value), path, meta, "keys")
        return dict(_each(list(value.items()), lambda k, v: _convert(arg, v, _join(path, k), {"secret": secret})))
    if tp is bool:
        if not isinstance(value, bool):
            raise _Invalid(path, f"must be a boolean (true or false), got {_show(value, secret)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _Invalid(path, f"must be an integer, got {_show(value, secret)}")
        _check_range(value, path, meta)
        _check_choices(value, path, meta)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid(path, f"must be a number, got {_show(value, secret)}")
        value = float(value)
        if not math.isfinite(value):
            raise _Invalid(path, f"must be a finite number, got {value}")
        _check_range(value, path, meta)
        _check_choices(value, path, meta)
        return value
    if tp is str:
        if not isinstance(value, str):
            raise _Invalid(path, f"must be a string, got {_show(value, secret)}")
        _check_length(len(value), path, meta, "characters")
        _check_choices(value, path, meta)
        return value
    raise TypeError(f"{path}: unsupported field type {tp!r}")


def _check_range(value: float, path: str, meta: dict[str, Any]) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None:
        if meta.get("min_exclusive") and not value > lo:
            raise _Invalid(path, f"must be greater than {lo}{_range_hint(meta)}, got {value}")
        if not meta.get("min_exclusive") and value < lo:
            raise _Invalid(path, f"must be at least {lo}{_range_hint(meta)}, got {value}")
    if hi is not None and value > hi:
        raise _Invalid(path, f"must be at most {hi}{_range_hint(meta)}, got {value}")


def _range_hint(meta: dict[str, Any]) -> str:
    text = describe_range(meta)
    return f" (allowed: {text})" if text else ""


def _check_length(n: int, path: str, meta: dict[str, Any], unit: str) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and n < lo:
        raise _Invalid(path, f"must have at least {int(lo)} {unit}, got {n}")
    if hi is not None and n > hi:
        raise _Invalid(path, f"must have at most {int(hi)} {unit}, got {n}")


def _check_choices(value: Any, path: str, meta: dict[str, Any]) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise _Invalid(path, f"must be one of {allowed}; got {_show(value, bool(meta.get('secret')))}")


def _build(model: type[T], table: dict[str, Any], path: str) -> T:
    hints = typing.get_type_hints(model)
    known = {f.name: f for f in dataclasses.fields(model) if f.init}
    failed = False
    where = f"[{path}]" if path else "top level"
    allowed = ", ".join(known) or "(none)"
    for k in table:
        if k not in known:
            # (The table is still built from its known keys: their own problems are reported too.)
            _note(_Invalid(_join(path, k), f"unknown key in {where}; allowed keys: {allowed}"))
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        key_path = _join(path, name)
        try:
            if name in table:
                kwargs[name] = _convert(hints[name], table[name], key_path, dict(f.metadata))
            elif f.default is _NO_DEFAULT and f.default_factory is _NO_DEFAULT:
                raise _Invalid(key_path, f"is required ({_type_name(hints[name])}: {f.metadata.get('doc', '')})")
        except _Invalid as exc:
            _note(exc)
            failed = True
    if failed:
        raise _Noted(path, "")
    obj = model(**kwargs)
    check = getattr(obj, "check", None)
    if callable(check):
        problems = check()
        for key, message in problems:
            _note(_Invalid(_join(path, key), message))
        if problems:
            raise _Noted(path, "")
    return obj


def build(model: type[T], data: dict[str, Any], source: str = "<config>") -> T:
    """Validate `data` (a parsed TOML document) against `model`; errors name `source`. Stops at the first, also
    inside `check_file` (a profile file built while a collector config is checked: its errors were noted as
    the config's, under the config's name, and the profile's own error was empty; found by the input audit)."""
    global _noted
    outer, _noted = _noted, None
    try:
        return _build(model, data, "")
    except _Invalid as exc:
        raise ConfigError(f"{source}: {exc.path}: {exc.message}") from None
    finally:
        _noted = outer


def check_file(path: str | Path, model: type[T]) -> tuple[T | None, list[str]]:
    """(the model, []) for a valid file, else (None, every error found: `FILE: KEY: message` each), for
    `--check-config`, which reports every problem at once (`load` stops at the first)."""
    global _noted
    try:
        data = _read(Path(path))
    except ConfigError as exc:
        return None, [str(exc)]
    _noted = []
    try:
        obj = _build(model, data, "")
    except _Invalid:
        obj = None
    finally:
        found, _noted = _noted, None
    if found:
        return None, [f"{path}: {e.path}: {e.message}" for e in found]
    return obj, []


def load(path: str | Path, model: type[T]) -> T:
    """Read and validate a TOML configuration file."""
    return build(model, _read(Path(path)), str(path))


def _read(path: Path, what: str = "configuration file") -> dict[str, Any]:
    """The parsed TOML document; a `ConfigError` naming the file when it cannot be read or parsed.
    A UTF-8 byte order mark at the start (Windows Notepad writes one) is read past."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return data


def read_toml(path: str | Path, what: str = "configuration file") -> dict[str, Any]:
    """A TOML file (a configuration, a site file, a carbon file), read as every one of them is."""
    return _read(Path(path), what)


def duplicate(names: list[str]) -> str | None:
    """The first name given twice, or None."""
    seen: set[str] = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


def describe_range(meta: dict[str, Any]) -> str:
    """The allowed values of a field in words, for errors and the reference."""
    if meta.get("choices") is not None:
        return ", ".join(repr(c) for c in meta["choices"])
    lo, hi = meta.get("min"), meta.get("max")
    parts = []
    if lo is not None:
        parts.append(f"> {lo}" if meta.get("min_exclusive") else f">= {lo}")
    if hi is not None:
        parts.append(f"<= {hi}")
    return " and ".join(parts)


def _default_text(f: dataclasses.Field) -> str:
    if f.metadata.get("secret") and not (f.default is not _NO_DEFAULT and f.default):
        return "(unset)"  # a secret with a default of its own (SNMPv2c's "public") shows it: it is no secret
    if f.default is not _NO_DEFAULT:
        d = f.default
    elif f.default_factory is not _NO_DEFAULT:
        d = f.default_factory()
        if dataclasses.is_dataclass(d):
            return "(table)"
    else:
        return "(required)"
    if d is None:
        return "(unset)"
    if isinstance(d, bool):
        return "true" if d else "false"
    if isinstance(d, str):
        return f'"{d}"'
    return repr(d)


def reference_markdown(model: type, title: str, path: str = "") -> str:
    """A Markdown configuration reference generated from the model's field docs."""
    lines: list[str] = []
    if not path:
        lines += [f"# {title}", ""]
        if model.__doc__:
            lines += [model.__doc__.strip(), ""]
    hints = typing.get_type_hints(model)
    nested: list[tuple[str, type, dataclasses.Field]] = []
    rows = []
    for f in dataclasses.fields(model):
        tp = hints[f.name]
        origin = typing.get_origin(tp)
        inner = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        if origin is dict and dataclasses.is_dataclass(inner[-1]):
            # A table of tables, each keyed by a name of the user's choice.
            nested.append((f"{f.name}.<name>", inner[-1], f))
            continue
        if dataclasses.is_dataclass(inner[0]):
            nested.append((f.name, inner[0], f))
            continue
        allowed = describe_range(dict(f.metadata))
        if tp is str and f.metadata.get("choices") is None:
            allowed = "non-empty" if f.metadata.get("min") else ""
        doc = f.metadata.get("doc", "")
        rows.append(f"| `{f.name}` | {_type_name(tp)} | `{_default_text(f)}` | {allowed} | {doc} |")
    if rows:
        if path:
            lines += [f"## `[{path}]`", ""]
            if model.__doc__:
                lines += [model.__doc__.strip(), ""]
        lines += ["| key | type | default | allowed | description |", "|---|---|---|---|---|", *rows, ""]
    for name, sub, f in nested:
        sub_path = _join(path, name)
        text = reference_markdown(sub, title, sub_path)
        doc = f.metadata.get("doc")
        if doc and not sub.__doc__ and f"## `[{sub_path}]`" in text:
            # The model has no docstring of its own: use the field's doc.
            text = text.replace(f"## `[{sub_path}]`\n\n", f"## `[{sub_path}]`\n\n{doc}\n\n", 1)
        lines.append(text)
    return "\n".join(lines)
