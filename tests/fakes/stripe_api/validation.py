"""Parameter checks: Stripe's bracket-notation form decoding, and validation against
stripe-python's own ``stripe.params`` TypedDicts (walked into a schema), metadata limits.
"""

from __future__ import annotations

import decimal
import json
import re
import threading
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import stripe._request_options as _stripe_request_options
import typing_extensions
from stripe._stripe_context import StripeContext
from stripe._stripe_object import UntypedStripeObject

from .errors import StripeHTTPError, _missing
from .records import JSON

# ------------------------------------------------------------- form decoding

_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")


def decode_form(pairs: Iterable[tuple[str, str]]) -> JSON:
    """Decode Stripe's bracket notation into nested dicts (lists stay index-keyed).

    ``a[b][0][c]=v`` -> ``{"a": {"b": {"0": {"c": "v"}}}}``; ``a[]=x`` appends.
    Use :func:`listify` to turn index-keyed dicts into lists.
    """
    root: JSON = {}
    for key, value in pairs:
        m = _KEY_RE.match(key)
        parts = [key] if m is None else [m.group(1), *re.findall(r"\[([^\[\]]*)\]", m.group(2))]
        node = root
        for i, part in enumerate(parts):
            name = str(len(node)) if part == "" else part
            if i == len(parts) - 1:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    return root


def listify(value: Any) -> Any:
    """Turn dicts whose keys are all indices ("0", "1", ...) into lists, recursively."""
    if isinstance(value, dict):
        if value and all(k.isdigit() for k in value):
            return [listify(value[k]) for k in sorted(value, key=int)]
        return {k: listify(v) for k, v in value.items()}
    return value


# ------------------------------------------------ parameter schema from TypedDicts


@dataclass(frozen=True)
class _Scalar:
    kind: Literal["str", "int", "bool", "decimal", "float", "any"]


@dataclass(frozen=True)
class _Enum:
    values: frozenset[str]


@dataclass(frozen=True)
class _Map:
    """``Dict[str, str]`` / ``UntypedStripeObject``: free keys (metadata)."""


@dataclass(frozen=True)
class _ListOf:
    item: _Node


@dataclass(eq=False)
class _Object:
    name: str
    fields: dict[str, tuple[_Node, bool]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Union:
    options: tuple[_Node, ...]


_Node: TypeAlias = "_Scalar | _Enum | _Map | _ListOf | _Object | _Union"

_REQUEST_OPTION_KEYS = frozenset(_stripe_request_options.RequestOptions.__annotations__)
_HINT_LOCALS: dict[str, Any] = {**vars(_stripe_request_options), "StripeContext": StripeContext}
_OBJECT_CACHE: dict[type, _Object] = {}
_SCHEMA_LOCK = threading.RLock()
_WRAPPERS: set[Any] = {typing.NotRequired, typing.Required, typing_extensions.NotRequired,
                       typing_extensions.Required, typing_extensions.ReadOnly}  # fmt: skip
_LIST_ORIGINS = {list, typing.List}  # noqa: UP006
_DICT_ORIGINS = {dict, typing.Dict, Mapping}  # noqa: UP006


def schema_for(typed_dict: type) -> _Object:
    """The parameter schema of a stripe-python params TypedDict (cached, recursive)."""
    with _SCHEMA_LOCK:
        cached = _OBJECT_CACHE.get(typed_dict)
        return cached if cached is not None else _build_schema(typed_dict)


def _build_schema(typed_dict: type) -> _Object:
    obj = _Object(typed_dict.__name__)
    _OBJECT_CACHE[typed_dict] = obj  # before recursing: TypedDicts may be recursive
    hints = typing.get_type_hints(typed_dict, localns=_HINT_LOCALS, include_extras=True)
    required: frozenset[str] = getattr(typed_dict, "__required_keys__", frozenset())
    is_request_options = set(hints) >= _REQUEST_OPTION_KEYS
    for name, tp in hints.items():
        if is_request_options and name in _REQUEST_OPTION_KEYS:
            continue  # api_key, idempotency_key, ...: client options, never sent as params
        obj.fields[name] = (_node_for(tp), name in required)
    return obj


def _node_for(tp: Any) -> _Node:
    origin = typing_extensions.get_origin(tp)
    args = typing_extensions.get_args(tp)
    if origin in _WRAPPERS:
        return _node_for(args[0])
    if tp is str:
        return _Scalar("str")
    if tp is bool:
        return _Scalar("bool")
    if tp is int:
        return _Scalar("int")
    if tp is float:
        return _Scalar("float")
    if tp is decimal.Decimal:
        return _Scalar("decimal")
    if tp is Any or tp is object:
        return _Scalar("any")
    if isinstance(tp, type) and typing_extensions.is_typeddict(tp):
        return _OBJECT_CACHE.get(tp) or _build_schema(tp)
    if origin in (Literal, typing_extensions.Literal):
        return _Enum(frozenset(str(a).lower() if isinstance(a, bool) else str(a) for a in args))
    if origin in (typing.Union, types.UnionType):
        options: list[_Node] = []
        for arg in args:
            if arg is type(None):
                continue
            node = _node_for(arg)
            options.extend(node.options if isinstance(node, _Union) else [node])
        return options[0] if len(options) == 1 else _Union(tuple(options))
    if origin in _LIST_ORIGINS:
        return _ListOf(_node_for(args[0]) if args else _Scalar("any"))
    if origin in _DICT_ORIGINS or tp is UntypedStripeObject or origin is UntypedStripeObject:
        return _Map()
    raise TypeError(f"FakeStripe cannot derive a parameter schema from {tp!r}")


def _fmt_one_of(values: Iterable[str]) -> str:
    vals = sorted(v for v in values if v != "")
    if len(vals) <= 1:
        return "".join(vals)
    return ", ".join(vals[:-1]) + f", or {vals[-1]}"


def _join(path: str, key: str) -> str:
    return f"{path}[{key}]" if path else key


def _as_json_text(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(listify(raw))


def _validate(node: _Node, raw: Any, path: str) -> Any:
    """Check ``raw`` (strings and index-keyed dicts from the form) against ``node``."""
    if isinstance(node, _Object):
        if not isinstance(raw, dict):
            raise StripeHTTPError(
                f"Invalid object: {path} must be a hash, got {raw!r}", param=path
            )
        unknown = sorted(k for k in raw if k not in node.fields)
        if unknown:
            names = [_join(path, k) for k in unknown]
            noun = "parameter" if len(names) == 1 else "parameters"
            raise StripeHTTPError(
                f"Received unknown {noun}: {', '.join(names)}",
                param=names[0],
                code="parameter_unknown",
            )
        for key, (_, req) in node.fields.items():
            if req and key not in raw:
                raise _missing(_join(path, key))
        return {k: _validate(node.fields[k][0], v, _join(path, k)) for k, v in raw.items()}
    if isinstance(node, _ListOf):
        if not isinstance(raw, dict) or not all(k.isdigit() for k in raw):
            raise StripeHTTPError(f"Invalid array: {path}", param=path)
        return [_validate(node.item, raw[k], f"{path}[{k}]") for k in sorted(raw, key=int)]
    if isinstance(node, _Map):
        if raw == "":
            return ""  # "metadata=" unsets all keys
        if not isinstance(raw, dict):
            raise StripeHTTPError(f"Invalid object: {path} must be a hash", param=path)
        for k, v in raw.items():
            if not isinstance(v, str):
                raise StripeHTTPError(
                    f"Invalid string: {_as_json_text(v)}", param=_join(path, k)
                )
        return dict(raw)
    if isinstance(node, _Enum):
        if isinstance(raw, str) and raw in node.values:
            return raw
        name = path.rsplit("[", 1)[-1].rstrip("]")
        raise StripeHTTPError(
            f"Invalid {name}: must be one of {_fmt_one_of(node.values)}", param=path
        )
    if isinstance(node, _Scalar):
        return _validate_scalar(node, raw, path)
    return _validate_union(node, raw, path)


def _validate_scalar(node: _Scalar, raw: Any, path: str) -> Any:
    if node.kind == "any":
        return listify(raw)
    if not isinstance(raw, str):
        raise StripeHTTPError(f"Invalid {node.kind}: {_as_json_text(raw)}", param=path)
    if node.kind == "str":
        return raw
    if node.kind == "int":
        if re.fullmatch(r"-?\d+", raw):
            return int(raw)
        raise StripeHTTPError(
            f"Invalid integer: {raw}", param=path, code="parameter_invalid_integer"
        )
    if node.kind == "bool":
        if raw in ("true", "false"):
            return raw == "true"
        raise StripeHTTPError(f"Invalid boolean: {raw}", param=path)
    try:
        number = decimal.Decimal(raw)
        if not number.is_finite():
            raise decimal.InvalidOperation
    except decimal.InvalidOperation:
        raise StripeHTTPError(f"Invalid {node.kind}: {raw}", param=path) from None
    return number if node.kind == "decimal" else float(number)


def _validate_union(node: _Union, raw: Any, path: str) -> Any:
    enums = frozenset().union(*(o.values for o in node.options if isinstance(o, _Enum)))
    scalars = [o for o in node.options if isinstance(o, _Scalar)]
    if isinstance(raw, dict):
        lists = [o for o in node.options if isinstance(o, _ListOf)]
        objects = [o for o in node.options if isinstance(o, _Object)]
        maps = [o for o in node.options if isinstance(o, _Map)]
        if lists and raw and all(k.isdigit() for k in raw):
            return _validate(lists[0], raw, path)
        for candidate in (objects, maps, lists):
            if candidate:
                return _validate(candidate[0], raw, path)
        if scalars and scalars[0].kind == "any":
            return listify(raw)
        raise StripeHTTPError(f"Invalid value for {path}: a hash is not allowed", param=path)
    if raw in enums:
        return raw
    first_error: StripeHTTPError | None = None
    for scalar in sorted(scalars, key=lambda s: s.kind == "str"):
        if scalar.kind == "str" and enums - {""}:
            continue  # `Literal[...] | str`: the str is forward compatibility only
        try:
            return _validate_scalar(scalar, raw, path)
        except StripeHTTPError as exc:
            first_error = first_error or exc
    if enums - {""}:
        raise _validate_error_enum(enums, path)
    if first_error is not None:
        raise first_error
    raise StripeHTTPError(f"Invalid value for {path}: {raw!r}", param=path)


def _validate_error_enum(values: frozenset[str], path: str) -> StripeHTTPError:
    name = path.rsplit("[", 1)[-1].rstrip("]")
    return StripeHTTPError(f"Invalid {name}: must be one of {_fmt_one_of(values)}", param=path)


def _check_metadata(metadata: Any, path: str) -> None:
    if not isinstance(metadata, dict):
        return
    if len(metadata) > 50:
        raise StripeHTTPError(
            "You can specify up to 50 keys in metadata.", param=path
        )
    for key, value in metadata.items():
        if len(key) > 40:
            raise StripeHTTPError(
                f"Metadata keys can have up to 40 characters, but you passed in a key "
                f"that is {len(key)} characters. Invalid key: {key}",
                param=_join(path, key),
            )
        if len(value) > 500:
            raise StripeHTTPError(
                f"Metadata values can have up to 500 characters, but you passed in a "
                f"value that is {len(value)} characters. Invalid value: {value}",
                param=_join(path, key),
            )
