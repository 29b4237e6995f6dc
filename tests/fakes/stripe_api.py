"""A Stripe-speaking fake API server for integration tests (no internet needed).

``FakeStripe`` runs an ``aiohttp.web`` server on ``127.0.0.1`` (free port) in a
background thread with its own event loop, so the *real* stripe-python client can
talk to it with its synchronous methods (``requests``) as well as with its async
``*_async`` methods (``httpx``) from any thread or event loop, and tests can drive
it through plain Python methods ("test controls").

Pointing stripe 16.x at the fake
--------------------------------
``StripeClient`` takes ``base_addresses={"api": <url>}``; the URL is used verbatim
as the prefix of every v1 path (``/v1/...``), ``http://`` is fine::

    async with FakeStripe() as fake:           # or: with FakeStripe() as fake:
        client = stripe.StripeClient(
            fake.api_key,                        # "sk_test_..." checked as Bearer token
            base_addresses={"api": fake.base_url},   # "http://127.0.0.1:<port>"
            http_client=stripe.HTTPXClient(timeout=5.0, allow_sync_methods=True),
            max_network_retries=0,
        )
        session = await client.v1.checkout.sessions.create_async(params={...})
        same = client.v1.checkout.sessions.retrieve(session.id)

``fake.make_client(timeout=..., max_network_retries=...)`` builds exactly that and
closes the HTTPX clients when the ``async with`` block ends.

HTTP-client facts of stripe 16.1 (read from ``stripe/_http_client.py``):

* Without ``http_client`` StripeClient uses ``RequestsClient(timeout=80)`` for sync
  calls with an ``HTTPXClient(timeout=80)`` as *async fallback* (httpx and anyio are
  installed), so ``StripeClient(key, base_addresses={"api": fake.base_url})`` alone
  supports sync and async calls, with an 80 s timeout.
* ``stripe.HTTPXClient(timeout=..., allow_sync_methods=True)`` serves both sync and
  async calls from one object; without ``allow_sync_methods`` sync calls raise.
  Its ``httpx.AsyncClient`` binds to the event loop that first uses it: create one
  per test/loop and ``await http_client.close_async()`` afterwards.
* ``stripe.RequestsClient(timeout=..., async_fallback_client=stripe.HTTPXClient(
  timeout=...))`` is the explicit form of the default.
* ``stripe.AIOHTTPClient`` is async-only.
* ``max_network_retries`` defaults to ``None`` on StripeClient, which the HTTP client
  treats as 0 retries. With retries, stripe re-sends POSTs with the *same*
  ``Idempotency-Key`` (stripe generates one for every POST) and retries 409/5xx and
  connection errors; timeouts and dropped connections raise
  ``stripe.APIConnectionError``.
* Timeouts / dropped connections surface as ``stripe.APIConnectionError``; HTTP 500
  as ``stripe.APIError``; 400/404 as ``stripe.InvalidRequestError`` (or
  ``stripe.IdempotencyError`` for ``type=idempotency_error``); 401 as
  ``stripe.AuthenticationError``.

Call style in v16: ``client.v1.checkout.sessions.create(params={...},
options={"idempotency_key": "..."})``, ``.retrieve(id, params={"expand": [...]})``,
``.list(params={"status": "open"})``, ``.expire(id)``; subscriptions:
``client.v1.subscriptions.retrieve/update/cancel``; every method has an ``*_async``
twin. Webhooks: ``stripe.Webhook.construct_event(body, sig_header, secret)`` or
``client.construct_event(...)``.

What the fake checks like Stripe does
-------------------------------------
* ``Authorization: Bearer <key>`` (or Basic with the key as user); a wrong or
  missing key is answered with 401 and Stripe's error JSON. ``Stripe-Version`` is
  recorded (malformed values are refused).
* ``Idempotency-Key`` on POST: same key + same endpoint + same parameters replays
  the stored response (``Idempotent-Replayed: true``); same key with other
  parameters or another endpoint gives 400 ``idempotency_error``. As on Stripe,
  nothing is stored for requests refused by validation or failed by injected faults.
* Parameters are form-decoded from Stripe's bracket notation and validated against
  stripe-python's own ``stripe.params`` TypedDicts (walked recursively: required
  keys, nested TypedDicts, ``List[...]``, ``Dict[str, str]`` metadata, ``Literal``
  enums, int/bool/decimal). Unknown parameters: 400 ``parameter_unknown``; missing
  required ones: 400 ``parameter_missing``; plus Checkout business rules (``mode``
  and ``line_items`` required, ``price_data`` needs an amount, ``quantity``,
  ``product``/``product_data``; one currency; recurring prices only in
  subscription mode; Stripe's minimum/maximum charge amounts for ``mode=payment``;
  ``expires_at`` 30 min .. 24 h; ``payment_intent_data``/``subscription_data``/
  ``customer_creation`` only in their mode; metadata limits).

Not faithful (known gaps)
-------------------------
* Only the endpoints in ``_ROUTES`` exist; objects are built for API version
  ``stripe.api_version`` whatever ``Stripe-Version`` the client sends.
* No Price/Product/PaymentMethod endpoints: ``line_items[][price]`` and
  ``price_data[product]`` are answered with ``resource_missing``. Parameters that
  would change amounts or objects the fake does not model (trials, discounts,
  automatic tax, shipping options, optional items, invoice creation, setup mode)
  are refused with 400 ``code=fake_unsupported`` rather than silently ignored.
* Event ordering: controls record every event Stripe would send (``fake.events``)
  in one plausible order; Stripe does not guarantee any order.
* Error messages for business rules are close to but not always word-for-word
  Stripe's. Idempotency keys never expire and concurrent requests with one key are
  not answered with 409. Currency list and minimum amounts only cover common
  currencies.
* ``expand`` works for IDs of objects the fake stores (sessions, payment intents,
  charges, customers, subscriptions, invoices, refunds, prices) and for the
  includables ``line_items`` (session), ``refunds`` (charge), ``payments``
  (invoice); ``pm_``/``txn_`` IDs cannot be expanded.
* Charges copy the PaymentIntent's metadata; subscription invoices get a
  PaymentIntent/Charge/InvoicePayment each (``GET /v1/invoice_payments`` finds the
  invoice of a refunded subscription charge).
"""

from __future__ import annotations

import asyncio
import base64
import calendar
import contextlib
import copy
import datetime as dt
import decimal
import fnmatch
import json
import re
import secrets
import socket
import string
import threading
import time
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias, cast
from urllib.parse import parse_qsl

import aiohttp
import stripe
import stripe._request_options as _stripe_request_options
import typing_extensions
from aiohttp import web
from stripe import params as stripe_params
from stripe._stripe_context import StripeContext
from stripe._stripe_object import UntypedStripeObject
from stripe.params import checkout as checkout_params

__all__ = [
    "API_VERSION",
    "FakeStripe",
    "RecordedRequest",
    "sign_webhook",
]

JSON: TypeAlias = dict[str, Any]

API_VERSION: str = stripe.api_version
"""The version the fake's objects follow (the one stripe-python pins)."""

_ALNUM = string.ascii_letters + string.digits
_DAY = 86_400

# Minimum charge amounts in the smallest currency unit
# (https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts).
MIN_CHARGE: dict[str, int] = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50,
    "czk": 1500, "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500,
    "inr": 50, "jpy": 50, "mxn": 1000, "myr": 200, "nok": 300, "nzd": 50,
    "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
MAX_CHARGE = 99_999_999
_ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg",
                           "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"})  # fmt: skip
_CURRENCIES = frozenset(MIN_CHARGE) | _ZERO_DECIMAL | frozenset(
    {"ars", "cop", "egp", "idr", "ils", "kzt", "mad", "ngn", "php", "pkr", "rub", "sar",
     "try", "twd", "uah", "zar", "gel", "amd", "azn", "uzs", "kgs", "byn", "mdl", "rsd"}
)  # fmt: skip


def _new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


# --------------------------------------------------------------------------- errors


class StripeHTTPError(Exception):
    """An error answered to the client in Stripe's ``{"error": {...}}`` shape."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        type_: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.status = status
        self.type = type_

    def body(self) -> JSON:
        err: JSON = {"message": self.message, "type": self.type}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        return {"error": err}


def _missing(param: str) -> StripeHTTPError:
    return StripeHTTPError(
        f"Missing required param: {param}.", param=param, code="parameter_missing"
    )


def _exclusive(base: str, *names: str) -> StripeHTTPError:
    return StripeHTTPError(
        f"You may only specify one of these parameters: {', '.join(names)}.",
        param=f"{base}[{names[0]}]" if base else names[0],
        code="parameters_exclusive",
    )


def _no_such(kind: str, obj_id: str, param: str, status: int = 404) -> StripeHTTPError:
    return StripeHTTPError(
        f"No such {kind}: '{obj_id}'", param=param, code="resource_missing", status=status
    )


def _unsupported(param: str, what: str | None = None) -> StripeHTTPError:
    return StripeHTTPError(
        f"FakeStripe does not model `{what or param}`; extend tests/fakes/stripe_api.py "
        "if the code under test needs it.",
        param=param,
        code="fake_unsupported",
    )


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


# ------------------------------------------------------------------- webhooks


def sign_webhook(
    event: Mapping[str, Any] | str | bytes, secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """Body and headers of a webhook delivery signed the way Stripe signs them.

    Uses ``stripe.WebhookSignature.generate_signature_header`` (HMAC-SHA256 over
    ``f"{t}.{payload}"`` with the endpoint secret, header ``t=...,v1=...``).
    """
    if isinstance(event, bytes):
        payload = event.decode("utf-8")
    elif isinstance(event, str):
        payload = event
    else:
        payload = json.dumps(event, indent=2)  # Stripe sends pretty-printed JSON
    header = stripe.WebhookSignature.generate_signature_header(
        payload, secret, timestamp=int(time.time()) if timestamp is None else timestamp
    )
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": header,
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "Cache-Control": "no-cache",
    }
    return payload.encode("utf-8"), headers


# ----------------------------------------------------------- request records


@dataclass
class RecordedRequest:
    """One request as the fake saw it (params decoded, index dicts turned to lists)."""

    method: str
    path: str
    params: JSON
    headers: dict[str, str]
    idempotency_key: str | None
    stripe_version: str | None
    fault: str | None = None
    status: int | None = None
    request_id: str = ""


@dataclass
class _Fault:
    kind: Literal["error", "hang", "drop"]
    remaining: int
    path: str | None
    method: str | None
    status: int = 500
    seconds: float = 0.0
    process: Literal["never", "before", "after"] = "never"

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method:
            return False
        return self.path is None or fnmatch.fnmatchcase(path, self.path)


@dataclass
class _Ctx:
    request_id: str
    idempotency_key: str | None


@dataclass
class _SubState:
    interval: str
    interval_count: int
    anchor: int
    periods: int = 1  # number of periods started so far
    invoice_seq: int = 0


_Response: TypeAlias = tuple[int, JSON, dict[str, str]]
_Handler: TypeAlias = "Callable[[FakeStripe, JSON, dict[str, str], _Ctx], JSON]"


def _add_months(ts: int, months: int) -> int:
    d = dt.datetime.fromtimestamp(ts, dt.UTC)
    month0 = d.month - 1 + months
    year, month = d.year + month0 // 12, month0 % 12 + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())


def _period_boundary(anchor: int, interval: str, count: int, k: int) -> int:
    """Start of period ``k`` (0-based) of a subscription anchored at ``anchor``."""
    if interval == "month":
        return _add_months(anchor, count * k)
    if interval == "year":
        return _add_months(anchor, 12 * count * k)
    if interval == "week":
        return anchor + 7 * _DAY * count * k
    return anchor + _DAY * count * k


def _fmt_amount(amount: int, currency: str) -> str:
    if currency in _ZERO_DECIMAL:
        return f"{amount} {currency}"
    major = f"{amount / 100:.2f}"
    return f"${major} {currency}" if currency == "usd" else f"{major} {currency}"


# ======================================================================= server


class FakeStripe:
    """Fake Stripe API on 127.0.0.1 plus controls that play the customer's part.

    Use as ``async with FakeStripe() as fake`` or ``with FakeStripe() as fake``.
    All controls are thread-safe and return the main Stripe event dict they cause;
    every event is also appended to :attr:`events`.
    """

    def __init__(
        self,
        api_key: str = "sk_test_fake_partnerbot_0123456789",
        *,
        account_id: str = "acct_1FakePartnerbot00",
        account_name: str = "Partnerbot Test",
    ) -> None:
        self.api_key = api_key
        self.account_id = account_id
        self.account_name = account_name
        self._lock = threading.RLock()
        self._objects: dict[str, JSON] = {}
        self._seq: dict[str, int] = {}
        self._next_seq = 0
        self._session_items: dict[str, list[JSON]] = {}
        self._charge_refunds: dict[str, list[str]] = {}
        self._invoice_payments: dict[str, list[str]] = {}
        self._subs: dict[str, _SubState] = {}
        self._pending_data: dict[str, JSON] = {}  # per session: what completion needs
        self._events: list[JSON] = []
        self._idempotency: dict[tuple[str, str], tuple[str, str, str, _Response]] = {}
        self._requests: list[RecordedRequest] = []
        self._faults: list[_Fault] = []
        self._clock_offset = 0
        self._invoice_prefix = "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shutdown: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._port: int | None = None
        self._http_clients: list[stripe.HTTPXClient] = []
        self.internal_errors: list[Exception] = []
        """Exceptions raised inside the fake's handlers (answered as 500 api_error)."""

    # ----------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeStripe is not running")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` for ``base_addresses={"api": ...}``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeStripe already started")
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="fake-stripe", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeStripe did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("FakeStripe failed to start") from self._startup_error

    def stop(self) -> None:
        for client in self._http_clients:
            cast(Any, client).close()  # untyped in stripe
        if self._thread is None:
            return
        loop, shutdown = self._loop, self._shutdown
        if loop is not None and shutdown is not None and not loop.is_closed():
            loop.call_soon_threadsafe(shutdown.set)
        self._thread.join(10)
        self._thread = None
        self._port = None

    def __enter__(self) -> FakeStripe:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> FakeStripe:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for client in self._http_clients:
            await cast(Any, client).close_async()  # untyped in stripe
        await asyncio.to_thread(self.stop)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:  # surfaced by start()
            self._startup_error = exc
            ready.set()
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._shutdown = asyncio.Event()
        app = web.Application(client_max_size=2**20)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await runner.setup()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind(("127.0.0.1", 0))
                site = web.SockSite(runner, sock)
                await site.start()
            except BaseException:
                sock.close()
                raise
            self._port = int(sock.getsockname()[1])
            ready.set()
            await self._shutdown.wait()
        finally:
            await runner.cleanup()

    def make_client(
        self,
        *,
        timeout: float = 5.0,
        max_network_retries: int = 0,
        api_key: str | None = None,
    ) -> stripe.StripeClient:
        """A real ``StripeClient`` aimed at this fake (sync and async methods work).

        The HTTPX client is closed when the fake's ``with``/``async with`` ends; with
        ``async with`` its async half is closed in the caller's loop.
        """
        http_client = stripe.HTTPXClient(timeout=timeout, allow_sync_methods=True)
        self._http_clients.append(http_client)
        return stripe.StripeClient(
            api_key or self.api_key,
            base_addresses={"api": self.base_url},
            http_client=http_client,
            max_network_retries=max_network_retries,
        )

    # ----------------------------------------------------------- inspection

    def now(self) -> int:
        """The fake's clock (real time plus :meth:`advance_time` offsets)."""
        return int(time.time()) + self._clock_offset

    def advance_time(self, seconds: int) -> int:
        """Move the fake clock forward (like a test clock); returns the new time."""
        with self._lock:
            self._clock_offset += seconds
            return self.now()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str, method: str | None = None) -> list[RecordedRequest]:
        """Recorded requests whose path matches ``path`` (fnmatch pattern)."""
        with self._lock:
            return [
                r
                for r in self._requests
                if fnmatch.fnmatchcase(r.path, path)
                and (method is None or r.method == method.upper())
            ]

    def request_count(self, path: str = "*", method: str | None = None) -> int:
        return len(self.requests_to(path, method))

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    @property
    def api_versions_seen(self) -> set[str | None]:
        with self._lock:
            return {r.stripe_version for r in self._requests}

    @property
    def events(self) -> list[JSON]:
        """Every event "sent" so far, oldest first (deep copies)."""
        with self._lock:
            return copy.deepcopy(self._events)

    def events_of_type(self, event_type: str) -> list[JSON]:
        return [e for e in self.events if e["type"] == event_type]

    def get(self, object_id: str) -> JSON:
        """A deep copy of any stored object (session, pi, ch, sub, in, cus, ...)."""
        with self._lock:
            if object_id not in self._objects:
                raise KeyError(object_id)
            return copy.deepcopy(self._objects[object_id])

    # ------------------------------------------------------------- faults

    def fail_next(
        self, count: int = 1, *, path: str | None = None, method: str | None = None,
        status: int = 500,
    ) -> None:  # fmt: skip
        """The next ``count`` matching requests get ``status`` with a Stripe error body
        (``api_error``; ``rate_limit`` for 429) and are not executed. ``path`` is an
        fnmatch pattern such as ``"/v1/checkout/sessions*"``."""
        with self._lock:
            self._faults.append(_Fault("error", count, path, method, status=status))

    def hang_next(
        self, seconds: float, count: int = 1, *, path: str | None = None,
        method: str | None = None, process: Literal["never", "before", "after"] = "never",
    ) -> None:  # fmt: skip
        """Delay the next ``count`` matching responses by ``seconds``.

        ``process``: ``"never"`` -> the request is not executed and the connection is
        dropped after the delay; ``"before"`` -> executed first, response delayed (a
        lost response: retry with the same Idempotency-Key replays it); ``"after"``
        -> a slow request, executed after the delay even if the client gave up.
        """
        with self._lock:
            self._faults.append(
                _Fault("hang", count, path, method, seconds=seconds, process=process)
            )

    def drop_next(
        self, count: int = 1, *, path: str | None = None, method: str | None = None,
        process: bool = False,
    ) -> None:  # fmt: skip
        """Close the connection without a response (``process=True``: after executing)."""
        with self._lock:
            self._faults.append(
                _Fault("drop", count, path, method, process="before" if process else "never")
            )

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, method: str, path: str) -> _Fault | None:
        for fault in self._faults:
            if fault.matches(method, path):
                fault.remaining -= 1
                return fault
        return None

    # --------------------------------------------------------- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        method = request.method.upper()
        pairs = parse_qsl(request.query_string, keep_blank_values=True)
        if body:
            pairs += parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)
        tree = decode_form(pairs)
        headers = {k: v for k, v in request.headers.items()}
        record = RecordedRequest(
            method=method,
            path=request.path,
            params=listify(tree),
            headers=headers,
            idempotency_key=request.headers.get("Idempotency-Key"),
            stripe_version=request.headers.get("Stripe-Version"),
            request_id=_new_id("req_", 14),
        )
        with self._lock:
            self._requests.append(record)
            fault = self._take_fault(method, request.path)
        if fault is not None:
            record.fault = fault.kind

        if fault is None:
            response = self._dispatch(method, request.path, headers, tree, record)
        elif fault.kind == "error":
            response = self._fault_response(fault.status)
        else:
            response = None
            if fault.process == "before":
                response = self._dispatch(method, request.path, headers, tree, record)
            if fault.kind == "hang":
                await self._sleep(fault.seconds)
                if fault.process == "after":
                    response = self._dispatch(method, request.path, headers, tree, record)
            if fault.kind == "drop" or fault.process == "never":
                transport = request.transport
                if transport is not None:
                    transport.abort()
                raise asyncio.CancelledError  # nothing to send: the socket is gone
        assert response is not None
        status, payload, extra = response
        record.status = status
        out_headers = {
            "Request-Id": record.request_id,
            "Stripe-Version": record.stripe_version or API_VERSION,
            "Cache-Control": "no-cache, no-store",
            **extra,
        }
        return web.Response(
            status=status,
            body=json.dumps(payload, indent=2).encode(),
            content_type="application/json",
            headers=out_headers,
        )

    async def _sleep(self, seconds: float) -> None:
        assert self._shutdown is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._shutdown.wait(), timeout=seconds)

    @staticmethod
    def _fault_response(status: int) -> _Response:
        if status == 429:
            err = StripeHTTPError(
                "Request rate limit exceeded. You can learn more about rate limits here "
                "https://stripe.com/docs/rate-limits.",
                code="rate_limit",
                status=429,
            )
        else:
            err = StripeHTTPError(
                "An unknown error occurred", status=status, type_="api_error"
            )
        return status, err.body(), {}

    def _dispatch(
        self, method: str, path: str, headers: Mapping[str, str], tree: JSON,
        record: RecordedRequest,
    ) -> _Response:  # fmt: skip
        try:
            return self._dispatch_inner(method, path, headers, tree, record)
        except StripeHTTPError as exc:
            return exc.status, exc.body(), {}
        except Exception as exc:  # a bug in the fake: answer like Stripe, keep it visible
            with self._lock:
                self.internal_errors.append(exc)
            err = StripeHTTPError(
                f"FakeStripe internal error: {exc!r}", status=500, type_="api_error"
            )
            return 500, err.body(), {}

    def _authenticate(self, headers: Mapping[str, str]) -> str:
        auth = headers.get("Authorization", "")
        key: str | None = None
        if auth.startswith("Bearer "):
            key = auth[len("Bearer ") :].strip()
        elif auth.startswith("Basic "):
            try:
                key = base64.b64decode(auth[6:]).decode().split(":", 1)[0]
            except ValueError:
                key = None
        if not key:
            raise StripeHTTPError(
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
                "YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for "
                "details, or we can help at https://support.stripe.com/.",
                status=401,
            )
        if key != self.api_key:
            raise StripeHTTPError(
                f"Invalid API Key provided: {key[:8]}{'*' * 12}{key[-4:]}", status=401
            )
        return key

    def _dispatch_inner(
        self, method: str, path: str, headers: Mapping[str, str], tree: JSON,
        record: RecordedRequest,
    ) -> _Response:  # fmt: skip
        version = headers.get("Stripe-Version")
        if version is not None and not re.fullmatch(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?", version):
            raise StripeHTTPError(f"Invalid Stripe API version: {version}")
        key = self._authenticate(headers)
        handler, path_args, params_type = self._route(method, path)
        ctx = _Ctx(record.request_id, record.idempotency_key if method == "POST" else None)
        canonical = json.dumps(tree, sort_keys=True)
        with self._lock:
            if ctx.idempotency_key is not None:
                stored = self._idempotency.get((key, ctx.idempotency_key))
                if stored is not None:
                    s_method, s_path, s_params, s_response = stored
                    if (s_method, s_path) != (method, path):
                        raise StripeHTTPError(
                            "Keys for idempotent requests can only be used for the same "
                            "endpoint they were first used for "
                            f"('{s_method} {s_path}' vs '{method} {path}'). Try using a "
                            "key other than "
                            f"'{ctx.idempotency_key}' if you meant to execute a different "
                            "request.",
                            type_="idempotency_error",
                        )
                    if s_params != canonical:
                        raise StripeHTTPError(
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with. Try using a key other "
                            f"than '{ctx.idempotency_key}' if you meant to execute a "
                            "different request.",
                            type_="idempotency_error",
                        )
                    status, payload, extra = s_response
                    return status, copy.deepcopy(payload), {
                        **extra,
                        "Idempotent-Replayed": "true",
                    }
            params = _validate(schema_for(params_type), tree, "")
            expand = params.pop("expand", None) or []
            result = handler(self, params, path_args, ctx)
            result = self._expand(result, expand)
            extra = {"Original-Request": ctx.request_id}
            if ctx.idempotency_key is not None:
                extra["Idempotency-Key"] = ctx.idempotency_key
                self._idempotency[(key, ctx.idempotency_key)] = (
                    method, path, canonical, (200, copy.deepcopy(result), dict(extra)),
                )  # fmt: skip
            return 200, result, extra

    def _route(self, method: str, path: str) -> tuple[_Handler, dict[str, str], type]:
        for r_method, pattern, handler, params_type in _ROUTES:
            m = pattern.fullmatch(path)
            if m is not None and r_method == method:
                return handler, m.groupdict(), params_type
        raise StripeHTTPError(
            f"Unrecognized request URL ({method}: {path}). Please see https://stripe.com/docs "
            "or we can help at https://support.stripe.com/.",
            status=404,
        )

    # ------------------------------------------------------------ storage

    def _store(self, obj: JSON) -> JSON:
        self._objects[obj["id"]] = obj
        self._seq[obj["id"]] = self._next_seq
        self._next_seq += 1
        return obj

    def _find(self, obj_id: str, object_name: str, param: str, status: int = 404) -> JSON:
        obj = self._objects.get(obj_id)
        if obj is None or obj.get("object") != object_name:
            raise _no_such(object_name, obj_id, param, status)
        return obj

    def _event(
        self, event_type: str, obj: JSON, *, previous: JSON | None = None,
        ctx: _Ctx | None = None,
    ) -> JSON:  # fmt: skip
        data: JSON = {"object": copy.deepcopy(obj)}
        if previous is not None:
            data["previous_attributes"] = copy.deepcopy(previous)
        event: JSON = {
            "id": _new_id("evt_"),
            "object": "event",
            "api_version": API_VERSION,
            "created": self.now(),
            "data": data,
            "livemode": False,
            "pending_webhooks": 1,
            "request": {
                "id": ctx.request_id if ctx else None,
                "idempotency_key": ctx.idempotency_key if ctx else None,
            },
            "type": event_type,
        }
        self._events.append(event)
        self._seq[event["id"]] = self._next_seq
        self._next_seq += 1
        return copy.deepcopy(event)

    def _list(self, url: str, items: list[JSON], params: JSON) -> JSON:
        limit = params.get("limit", 10)
        if not 1 <= limit <= 100:
            raise StripeHTTPError(
                f"Invalid limit: must be between 1 and 100 (got {limit})", param="limit",
                code="parameter_invalid_integer",
            )  # fmt: skip
        after, before = params.get("starting_after"), params.get("ending_before")
        if after and before:
            raise _exclusive("", "starting_after", "ending_before")

        def key(o: JSON) -> tuple[int, int]:
            return (int(o.get("created", 0)), self._seq.get(o["id"], 0))

        ordered = sorted(items, key=key, reverse=True)
        cursor_id = after or before
        if cursor_id:
            cursor = self._objects.get(cursor_id) or next(
                (e for e in self._events if e["id"] == cursor_id), None
            )
            if cursor is None:
                raise _no_such(
                    items[0]["object"] if items else "object", cursor_id,
                    "starting_after" if after else "ending_before", status=400,
                )  # fmt: skip
            ckey = key(cursor)
            if after:
                ordered = [o for o in ordered if key(o) < ckey]
            else:
                newer = [o for o in ordered if key(o) > ckey]
                page = newer[-limit:]
                return {
                    "object": "list", "data": [copy.deepcopy(o) for o in page],
                    "has_more": len(newer) > limit, "url": url,
                }  # fmt: skip
        page = ordered[:limit]
        return {
            "object": "list",
            "data": [copy.deepcopy(o) for o in page],
            "has_more": len(ordered) > limit,
            "url": url,
        }

    @staticmethod
    def _created_ok(created: int, flt: Any) -> bool:
        if flt is None:
            return True
        if isinstance(flt, int):
            return created == flt
        ops: dict[str, Callable[[int, int], bool]] = {
            "gt": lambda a, b: a > b, "gte": lambda a, b: a >= b,
            "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
        }  # fmt: skip
        return all(ops[k](created, int(v)) for k, v in flt.items())

    # ------------------------------------------------------------- expand

    def _includable(self, obj: JSON, name: str) -> JSON | None:
        kind, oid = obj.get("object"), obj.get("id", "")
        if kind == "checkout.session" and name == "line_items":
            items = self._session_items.get(oid, [])
            return {
                "object": "list", "data": copy.deepcopy(items), "has_more": False,
                "url": f"/v1/checkout/sessions/{oid}/line_items",
            }  # fmt: skip
        if kind == "charge" and name == "refunds":
            refunds = [self._objects[r] for r in self._charge_refunds.get(oid, [])]
            return {
                "object": "list", "data": copy.deepcopy(refunds[::-1]), "has_more": False,
                "url": f"/v1/charges/{oid}/refunds",
            }  # fmt: skip
        if kind == "invoice" and name == "payments":
            pays = [self._objects[p] for p in self._invoice_payments.get(oid, [])]
            return {
                "object": "list", "data": copy.deepcopy(pays), "has_more": False,
                "url": f"/v1/invoices/{oid}/payments",
            }  # fmt: skip
        return None

    def _expand(self, result: JSON, paths: list[str]) -> JSON:
        result = copy.deepcopy(result)
        for path in paths:
            if len(path.split(".")) > 4:
                raise StripeHTTPError(
                    f"You cannot expand more than 4 levels of a property. Property: {path}",
                    param="expand",
                )
            self._expand_at(result, path.split("."), path)
        return result

    def _expand_at(self, obj: Any, segs: list[str], full: str) -> None:
        if not isinstance(obj, dict):
            raise StripeHTTPError(f"This property cannot be expanded ({full}).", param="expand")
        if obj.get("object") == "list" and segs[0] == "data":
            for item in obj["data"]:
                if len(segs) > 1:
                    self._expand_at(item, segs[1:], full)
            return
        name = segs[0]
        included = self._includable(obj, name)
        if included is not None:
            obj[name] = included
        elif name not in obj:
            raise StripeHTTPError(f"This property cannot be expanded ({full}).", param="expand")
        else:
            value = obj[name]
            if isinstance(value, str) and value in self._objects:
                obj[name] = copy.deepcopy(self._objects[value])
            elif value is None or (isinstance(value, dict) and ("id" in value or len(segs) > 1)):
                pass  # null expandable field, already-expanded object, or a path through a hash
            else:
                raise StripeHTTPError(
                    f"This property cannot be expanded ({full}).", param="expand"
                )
        if len(segs) > 1 and obj[name] is not None:
            self._expand_at(obj[name], segs[1:], full)

    # ================================================== object construction

    def _customer(self, email: str | None, name: str | None) -> JSON:
        now = self.now()
        prefix = "".join(secrets.choice(string.ascii_uppercase) for _ in range(8))
        return self._store({
            "id": _new_id("cus_", 14), "object": "customer", "address": None, "balance": 0,
            "business_name": None, "created": now, "currency": None,
            "customer_account": None, "default_source": None, "delinquent": False,
            "description": None, "discount": None, "email": email, "individual_name": None,
            "invoice_prefix": prefix,
            "invoice_settings": {"custom_fields": None, "default_payment_method": None,
                                 "footer": None, "rendering_options": None},
            "livemode": False, "metadata": {}, "name": name, "next_invoice_sequence": 1,
            "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none",
            "test_clock": None,
        })  # fmt: skip

    def _price_from(self, pd: JSON) -> JSON:
        now = self.now()
        pdata = pd["product_data"]
        product = self._store({
            "id": _new_id("prod_", 14), "object": "product", "active": False,
            "created": now, "default_price": None, "description": pdata.get("description"),
            "images": list(pdata.get("images", [])), "livemode": False,
            "marketing_features": [], "metadata": dict(pdata.get("metadata") or {}),
            "name": pdata["name"], "package_dimensions": None, "shippable": None,
            "statement_descriptor": None, "tax_code": pdata.get("tax_code"),
            "type": "service", "unit_label": pdata.get("unit_label"), "updated": now,
            "url": None,
        })  # fmt: skip
        unit: int = pd["unit_amount"] if "unit_amount" in pd else int(pd["unit_amount_decimal"])
        unit_decimal = pd.get("unit_amount_decimal", unit)
        rec = pd.get("recurring")
        return self._store({
            "id": _new_id("price_"), "object": "price", "active": False,
            "billing_scheme": "per_unit", "created": now, "currency": pd["currency"].lower(),
            "custom_unit_amount": None, "livemode": False, "lookup_key": None,
            "metadata": {}, "nickname": None, "product": product["id"],
            "recurring": None if rec is None else {
                "interval": rec["interval"], "interval_count": rec.get("interval_count", 1),
                "meter": None, "trial_period_days": None, "usage_type": "licensed",
            },
            "tax_behavior": pd.get("tax_behavior", "unspecified"), "tiers_mode": None,
            "transform_quantity": None, "type": "one_time" if rec is None else "recurring",
            "unit_amount": unit, "unit_amount_decimal": str(unit_decimal),
        })  # fmt: skip

    def _payment_intent(
        self, *, amount: int, currency: str, customer: str | None, metadata: JSON,
        description: str | None, status: str, receipt_email: str | None = None,
    ) -> JSON:  # fmt: skip
        pid = _new_id("pi_")
        return self._store({
            "id": pid, "object": "payment_intent", "allowed_payment_method_types": None,
            "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
            "amount_received": amount if status == "succeeded" else 0,
            "application": None, "application_fee_amount": None,
            "automatic_payment_methods": None, "canceled_at": None,
            "cancellation_reason": None, "capture_method": "automatic_async",
            "client_secret": f"{pid}_secret_{_new_id('', 25)}",
            "confirmation_method": "automatic", "created": self.now(), "currency": currency,
            "customer": customer, "customer_account": None, "description": description,
            "excluded_payment_method_types": None, "last_payment_error": None,
            "latest_charge": None, "livemode": False, "managed_payments": None,
            "metadata": dict(metadata), "next_action": None, "on_behalf_of": None,
            "payment_details": None, "payment_method": _new_id("pm_"),
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"installments": None, "mandate_options": None,
                                                "network": None,
                                                "request_three_d_secure": "automatic"}},
            "payment_method_types": ["card"], "presentment_details": None,
            "processing": None, "receipt_email": receipt_email, "review": None,
            "setup_future_usage": None, "shipping": None, "source": None,
            "statement_descriptor": None, "statement_descriptor_suffix": None,
            "status": status, "transfer_data": None, "transfer_group": None,
        })  # fmt: skip

    def _charge(self, pi: JSON, status: str, email: str | None, name: str | None) -> JSON:
        charge = self._store({
            "id": _new_id("ch_"), "object": "charge", "amount": pi["amount"],
            "amount_captured": pi["amount"] if status == "succeeded" else 0,
            "amount_refunded": 0, "application": None, "application_fee": None,
            "application_fee_amount": None, "balance_transaction": _new_id("txn_"),
            "billing_details": {
                "address": {"city": None, "country": "US", "line1": None, "line2": None,
                            "postal_code": "94107", "state": None},
                "email": email, "name": name, "phone": None, "tax_id": None,
            },
            "calculated_statement_descriptor": self.account_name.upper()[:22],
            "captured": status == "succeeded", "created": self.now(),
            "currency": pi["currency"], "customer": pi["customer"],
            "description": pi["description"], "disputed": False,
            "failure_balance_transaction": None,
            "failure_code": "card_declined" if status == "failed" else None,
            "failure_message": "Your card was declined." if status == "failed" else None,
            "fraud_details": {}, "livemode": False, "metadata": dict(pi["metadata"]),
            "on_behalf_of": None,
            "outcome": {
                "advice_code": None, "network_advice_code": None,
                "network_decline_code": None, "network_status": "approved_by_network"
                if status != "failed" else "declined_by_network",
                "reason": None, "risk_level": "normal", "risk_score": 20,
                "seller_message": "Payment complete." if status != "failed"
                else "The bank did not return any further details with this decline.",
                "type": "authorized" if status != "failed" else "issuer_declined",
            },
            "paid": status == "succeeded", "payment_intent": pi["id"],
            "payment_method": pi["payment_method"],
            "payment_method_details": {"type": "card", "card": {
                "brand": "visa", "country": "US", "exp_month": 12, "exp_year": 2034,
                "funding": "credit", "last4": "4242", "network": "visa",
            }},
            "presentment_details": None, "radar_options": {},
            "receipt_email": pi["receipt_email"], "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/payment/{_new_id('', 40)}",
            "refunded": False, "review": None, "shipping": None, "source": None,
            "source_transfer": None, "statement_descriptor": None,
            "statement_descriptor_suffix": None, "status": status, "transfer_data": None,
            "transfer_group": None,
        })  # fmt: skip
        pi["latest_charge"] = charge["id"]
        return charge

    # ===================================================== endpoint handlers

    def _h_create_session(self, p: JSON, _: dict[str, str], ctx: _Ctx) -> JSON:
        mode = p.get("mode")
        if mode is None:
            raise _missing("mode")
        if mode == "setup":
            raise _unsupported("mode", "mode=setup")
        unmodelled = ("discounts", "optional_items", "shipping_options",
                      "shipping_address_collection")  # fmt: skip
        for name in unmodelled:
            if name in p:
                raise _unsupported(name)
        if p.get("automatic_tax", {}).get("enabled"):
            raise _unsupported("automatic_tax[enabled]")
        if p.get("invoice_creation", {}).get("enabled"):
            raise _unsupported("invoice_creation[enabled]")
        for name in ("trial_period_days", "trial_end", "billing_cycle_anchor", "trial_settings"):
            if name in p.get("subscription_data", {}):
                raise _unsupported(f"subscription_data[{name}]")
        if mode != "payment" and "payment_intent_data" in p:
            raise StripeHTTPError(
                f"You can not pass `payment_intent_data` in `{mode}` mode.",
                param="payment_intent_data",
            )
        if mode != "subscription" and "subscription_data" in p:
            raise StripeHTTPError(
                "You can only pass `subscription_data` in `subscription` mode.",
                param="subscription_data",
            )
        if mode != "payment" and "customer_creation" in p:
            raise StripeHTTPError(
                "`customer_creation` can only be used in `payment` mode.",
                param="customer_creation",
            )
        if "customer" in p and "customer_email" in p:
            raise _exclusive("", "customer", "customer_email")
        if "customer" in p:
            self._find(p["customer"], "customer", "customer", status=400)
        for path, meta in (
            ("metadata", p.get("metadata")),
            ("payment_intent_data[metadata]", p.get("payment_intent_data", {}).get("metadata")),
            ("subscription_data[metadata]", p.get("subscription_data", {}).get("metadata")),
        ):
            _check_metadata(meta, path)
        if len(p.get("client_reference_id", "")) > 200:
            raise StripeHTTPError(
                "client_reference_id must be at most 200 characters.",
                param="client_reference_id",
            )

        line_items: list[JSON] = p.get("line_items") or []
        if not line_items:
            raise _missing("line_items")
        currency: str | None = None
        total = 0
        intervals: set[tuple[str, int]] = set()
        prepared: list[tuple[JSON, int, int]] = []
        for i, li in enumerate(line_items):
            base = f"line_items[{i}]"
            if "price" in li and "price_data" in li:
                raise _exclusive(base, "price", "price_data")
            if "price" in li:
                raise _no_such("price", li["price"], f"{base}[price]", status=400)
            pd = li.get("price_data")
            if pd is None:
                raise _missing(f"{base}[price_data]")
            pbase = f"{base}[price_data]"
            if "unit_amount" in pd and "unit_amount_decimal" in pd:
                raise _exclusive(pbase, "unit_amount", "unit_amount_decimal")
            if "unit_amount" not in pd and "unit_amount_decimal" not in pd:
                raise _missing(f"{pbase}[unit_amount]")
            if "product" in pd and "product_data" in pd:
                raise _exclusive(pbase, "product", "product_data")
            if "product" in pd:
                raise _no_such("product", pd["product"], f"{pbase}[product]", status=400)
            if "product_data" not in pd:
                raise _missing(f"{pbase}[product_data]")
            unit = pd.get("unit_amount", pd.get("unit_amount_decimal"))
            if unit < 0:
                unit_name = "unit_amount" if "unit_amount" in pd else "unit_amount_decimal"
                raise StripeHTTPError(
                    "This value must be greater than or equal to 0.",
                    param=f"{pbase}[{unit_name}]",
                    code="parameter_invalid_integer",
                )
            if "quantity" not in li:
                raise _missing(f"{base}[quantity]")
            quantity = li["quantity"]
            if quantity < 1:
                raise StripeHTTPError(
                    "This value must be greater than or equal to 1.",
                    param=f"{base}[quantity]", code="parameter_invalid_integer",
                )  # fmt: skip
            cur = pd["currency"].lower()
            if not re.fullmatch(r"[a-z]{3}", cur) or cur not in _CURRENCIES:
                raise StripeHTTPError(
                    f"Invalid currency: {pd['currency']}. Stripe currently supports these "
                    f"currencies: {', '.join(sorted(_CURRENCIES))}",
                    param=f"{pbase}[currency]",
                )
            if currency is not None and cur != currency:
                raise StripeHTTPError(
                    "Checkout does not support multiple currencies on one Checkout Session; "
                    f"line items use both {currency} and {cur}.",
                    param=f"{pbase}[currency]",
                )
            currency = cur
            rec = pd.get("recurring")
            if rec is not None:
                if mode == "payment":
                    raise StripeHTTPError(
                        "You specified `payment` mode but passed a recurring price. Either "
                        "switch to `subscription` mode or use only one-time prices.",
                        param=f"{pbase}[recurring]",
                    )
                intervals.add((rec["interval"], rec.get("interval_count", 1)))
            amount = int(
                (decimal.Decimal(unit) * quantity).to_integral_value(decimal.ROUND_HALF_EVEN)
            )
            total += amount
            prepared.append((li, amount, quantity))
        assert currency is not None
        if mode == "subscription" and not intervals:
            raise StripeHTTPError(
                "You must provide at least one recurring price in `subscription` mode when "
                "using prices.",
                param="line_items",
            )
        if len(intervals) > 1:
            raise StripeHTTPError(
                "Checkout does not support multiple prices with different billing intervals.",
                param="line_items",
            )
        if mode == "payment":
            minimum = MIN_CHARGE.get(currency, 0)
            if total < minimum:
                raise StripeHTTPError(
                    "The Checkout Session's total amount due must add up to at least "
                    f"{_fmt_amount(minimum, currency)}",
                    code="amount_too_small",
                )
            if total > MAX_CHARGE:
                raise StripeHTTPError(
                    "The Checkout Session's total amount due must be no more than "
                    f"{_fmt_amount(MAX_CHARGE, currency)}",
                    code="amount_too_large",
                )
        now = self.now()
        expires_at = p.get("expires_at", now + _DAY)
        if expires_at < now + 1800:
            raise StripeHTTPError(
                "The `expires_at` timestamp must be at least 30 minutes from Checkout "
                "Session creation.",
                param="expires_at",
            )
        if expires_at > now + _DAY:
            raise StripeHTTPError(
                "The `expires_at` timestamp must be less than 24 hours from Checkout "
                "Session creation.",
                param="expires_at",
            )

        sid = _new_id("cs_test_", 58)
        items: list[JSON] = []
        for li, amount, quantity in prepared:
            price = self._price_from(li["price_data"])
            product = self._objects[price["product"]]
            items.append({
                "id": _new_id("li_"), "object": "item", "adjustable_quantity": None,
                "amount_discount": 0, "amount_subtotal": amount, "amount_tax": 0,
                "amount_total": amount, "currency": currency,
                "description": product["name"], "metadata": dict(li.get("metadata") or {}),
                "price": copy.deepcopy(price), "quantity": quantity,
            })  # fmt: skip
        self._session_items[sid] = items
        ui_mode = p.get("ui_mode", "hosted_page")
        hosted = ui_mode in ("hosted_page", "hosted")
        session: JSON = {
            "id": sid, "object": "checkout.session",
            "adaptive_pricing": {"enabled": bool(p.get("adaptive_pricing", {}).get("enabled"))},
            "after_expiration": None,
            "allow_promotion_codes": p.get("allow_promotion_codes"),
            "allowed_payment_method_types": p.get("allowed_payment_method_types"),
            "amount_subtotal": total, "amount_total": total,
            "automatic_tax": {"enabled": False, "liability": None, "provider": None,
                              "status": None},
            "billing_address_collection": p.get("billing_address_collection"),
            "branding_settings": None,
            "cancel_url": p.get("cancel_url"),
            "client_reference_id": p.get("client_reference_id"),
            "client_secret": None if hosted else f"{sid}_secret_{_new_id('', 30)}",
            "collected_information": None, "consent": None,
            "consent_collection": None, "created": now, "currency": currency,
            "currency_conversion": None, "custom_fields": [],
            "custom_text": {"after_submit": None, "shipping_address": None, "submit": None,
                            "terms_of_service_acceptance": None},
            "customer": p.get("customer"), "customer_account": None,
            "customer_creation": (p.get("customer_creation", "if_required")
                                  if mode == "payment" else None),
            "customer_details": None, "customer_email": p.get("customer_email"),
            "discounts": [], "excluded_payment_method_types": p.get(
                "excluded_payment_method_types"),
            "expires_at": expires_at,
            "integration_identifier": p.get("integration_identifier"),
            "invoice": None,
            "invoice_creation": ({"enabled": False, "invoice_data": {
                "account_tax_ids": None, "custom_fields": None, "description": None,
                "footer": None, "issuer": None, "metadata": {}, "rendering_options": None,
            }} if mode == "payment" else None),
            "livemode": False, "locale": p.get("locale"), "managed_payments": None,
            "metadata": dict(p.get("metadata") or {}), "mode": mode,
            "name_collection": None, "optional_items": None,
            "origin_context": p.get("origin_context"), "payment_intent": None,
            "payment_link": None,
            "payment_method_collection": p.get(
                "payment_method_collection", "always" if mode == "subscription"
                else "if_required"),
            "payment_method_configuration_details": None,
            "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
            "payment_method_types": list(p.get("allowed_payment_method_types", ["card"])),
            "payment_status": "unpaid", "permissions": None,
            "phone_number_collection": {"enabled": bool(
                p.get("phone_number_collection", {}).get("enabled"))},
            "presentment_details": None, "recovered_from": None,
            "redirect_on_completion": None if hosted else p.get(
                "redirect_on_completion", "always"),
            "return_url": p.get("return_url"), "saved_payment_method_options": None,
            "setup_intent": None, "shipping_address_collection": None,
            "shipping_cost": None, "shipping_options": [], "status": "open",
            "submit_type": p.get("submit_type"), "subscription": None,
            "success_url": p.get("success_url"),
            "tax_id_collection": {"enabled": bool(
                p.get("tax_id_collection", {}).get("enabled")), "required": "never"},
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": ui_mode,
            "url": (f"https://checkout.stripe.com/c/pay/{sid}#fid{_new_id('', 40)}"
                    if hosted else None),
            "wallet_options": None,
        }  # fmt: skip
        self._store(session)
        self._pending_data[sid] = {
            "payment_intent_data": p.get("payment_intent_data", {}),
            "subscription_data": p.get("subscription_data", {}),
        }
        return session

    def _h_retrieve_session(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        return self._find(a["id"], "checkout.session", "session")

    def _h_session_line_items(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        self._find(a["id"], "checkout.session", "session")
        items = self._session_items.get(a["id"], [])
        limit = p.get("limit", 10)
        start = 0
        if "starting_after" in p:
            ids = [i["id"] for i in items]
            if p["starting_after"] not in ids:
                raise _no_such("line_item", p["starting_after"], "starting_after", status=400)
            start = ids.index(p["starting_after"]) + 1
        page = items[start : start + limit]
        return {
            "object": "list", "data": copy.deepcopy(page),
            "has_more": start + limit < len(items),
            "url": f"/v1/checkout/sessions/{a['id']}/line_items",
        }  # fmt: skip

    def _h_list_sessions(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sessions = [o for o in self._objects.values() if o["object"] == "checkout.session"]
        for name in ("status", "customer", "payment_intent", "subscription", "payment_link"):
            if name in p:
                sessions = [s for s in sessions if s.get(name) == p[name]]
        if "customer_details" in p:
            email = p["customer_details"]["email"]
            sessions = [
                s for s in sessions if (s.get("customer_details") or {}).get("email") == email
            ]
        sessions = [s for s in sessions if self._created_ok(s["created"], p.get("created"))]
        return self._list("/v1/checkout/sessions", sessions, p)

    def _h_expire_session(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        session = self._find(a["id"], "checkout.session", "session")
        if session["status"] != "open":
            raise StripeHTTPError(
                f"Only Checkout Sessions with a status in [\"open\"] can be expired. This "
                f"Checkout Session has a status of \"{session['status']}\".",
                param="session",
            )
        self._do_expire(session, ctx)
        return session

    def _h_list_events(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        events = list(self._events)
        if "type" in p:
            pattern = p["type"]
            events = [e for e in events if fnmatch.fnmatchcase(e["type"], pattern)]
        if "types" in p:
            events = [e for e in events if e["type"] in p["types"]]
        events = [e for e in events if self._created_ok(e["created"], p.get("created"))]
        return self._list("/v1/events", events, p)

    def _h_retrieve_event(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        for event in self._events:
            if event["id"] == a["id"]:
                return event
        raise _no_such("event", a["id"], "id")

    def _h_list_invoice_payments(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        pays = [o for o in self._objects.values() if o["object"] == "invoice_payment"]
        if "invoice" in p:
            pays = [x for x in pays if x["invoice"] == p["invoice"]]
        if "status" in p:
            pays = [x for x in pays if x["status"] == p["status"]]
        if "payment" in p:
            want = p["payment"]
            pays = [
                x for x in pays
                if x["payment"]["type"] == want["type"]
                and ("payment_intent" not in want
                     or x["payment"].get("payment_intent") == want["payment_intent"])
            ]  # fmt: skip
        pays = [x for x in pays if self._created_ok(x["created"], p.get("created"))]
        return self._list("/v1/invoice_payments", pays, p)

    def _h_cancel_subscription(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sub = self._find(a["id"], "subscription", "subscription_exposed_id")
        if sub["status"] == "canceled":
            raise StripeHTTPError(
                "A canceled subscription can only update its cancellation_details and "
                "metadata.", param="subscription_exposed_id",
            )  # fmt: skip
        if p.get("invoice_now") or p.get("prorate"):
            raise _unsupported("invoice_now" if p.get("invoice_now") else "prorate")
        details = p.get("cancellation_details", {})
        self._end_subscription(
            sub, reason="cancellation_requested", comment=details.get("comment") or None,
            feedback=details.get("feedback") or None, ctx=ctx,
        )  # fmt: skip
        return sub

    def _h_update_subscription(self, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        sub = self._find(a["id"], "subscription", "subscription_exposed_id")
        supported = {"metadata", "cancel_at_period_end", "cancel_at", "cancellation_details",
                     "description", "proration_behavior"}  # fmt: skip
        for name in p:
            if name not in supported:
                raise _unsupported(name)
        if sub["status"] == "canceled" and set(p) - {"metadata", "cancellation_details"}:
            raise StripeHTTPError(
                "A canceled subscription can only update its cancellation_details and "
                "metadata.",
            )
        if "cancel_at_period_end" in p and "cancel_at" in p:
            raise _exclusive("", "cancel_at", "cancel_at_period_end")
        _check_metadata(p.get("metadata"), "metadata")
        before = copy.deepcopy(sub)
        if "metadata" in p:
            if p["metadata"] == "":
                sub["metadata"] = {}
            else:
                for k, v in p["metadata"].items():
                    if v == "":
                        sub["metadata"].pop(k, None)
                    else:
                        sub["metadata"][k] = v
        if "description" in p:
            sub["description"] = p["description"] or None
        period_end = sub["items"]["data"][0]["current_period_end"]
        if "cancel_at_period_end" in p:
            sub["cancel_at_period_end"] = p["cancel_at_period_end"]
            sub["cancel_at"] = period_end if p["cancel_at_period_end"] else None
        if "cancel_at" in p:
            value = p["cancel_at"]
            if value in ("max_period_end", "min_period_end"):
                value = period_end
            sub["cancel_at"] = value or None
            sub["cancel_at_period_end"] = False
        if "cancellation_details" in p:
            cd = p["cancellation_details"]
            for k in ("comment", "feedback"):
                if k in cd:
                    sub["cancellation_details"][k] = cd[k] or None
        if sub["cancel_at"] is not None and before["cancel_at"] is None:
            sub["cancellation_details"]["reason"] = "cancellation_requested"
            sub["canceled_at"] = self.now()
        elif sub["cancel_at"] is None and sub["status"] != "canceled":
            sub["cancellation_details"]["reason"] = None
            sub["canceled_at"] = None
        previous = {k: before[k] for k in sub if sub[k] != before[k]}
        if previous:
            self._event("customer.subscription.updated", sub, previous=previous, ctx=ctx)
        return sub

    # ======================================================== test controls

    def complete_session(
        self, session_id: str, paid: bool = True, *,
        customer_email: str = "partner@example.com", customer_name: str | None = "Test Partner",
    ) -> JSON:  # fmt: skip
        """The customer finishes Checkout. Returns ``checkout.session.completed``.

        ``mode=payment``: creates the PaymentIntent and Charge (metadata from
        ``payment_intent_data[metadata]`` only; session metadata does not reach them);
        ``paid=False`` leaves ``payment_status="unpaid"`` with the PaymentIntent
        ``processing`` (delayed notification method) until :meth:`async_payment_result`.
        ``mode=subscription``: creates customer, subscription (items with
        ``current_period_start/end``), its first paid invoice, PaymentIntent and Charge.
        """
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}, not open")
            if session["mode"] == "subscription" and not paid:
                raise NotImplementedError("async payment methods for subscriptions")
            pending = self._pending_data[session_id]
            email = session["customer_email"] or customer_email
            customer: str | None = session["customer"]
            if customer is None and (
                session["mode"] == "subscription" or session["customer_creation"] == "always"
            ):
                cus = self._customer(email, customer_name)
                self._event("customer.created", cus)
                customer = cus["id"]
            session.update({
                "status": "complete", "url": None, "customer": customer,
                "customer_details": {
                    "address": {"city": None, "country": "US", "line1": None, "line2": None,
                                "postal_code": "94107", "state": None},
                    "business_name": None, "email": email, "individual_name": None,
                    "name": customer_name, "phone": None, "tax_exempt": "none", "tax_ids": [],
                },
                "collected_information": {"business_name": None, "individual_name": None,
                                          "shipping_details": None},
            })  # fmt: skip
            if session["mode"] == "payment":
                pid_data = pending["payment_intent_data"]
                pi = self._payment_intent(
                    amount=session["amount_total"], currency=session["currency"],
                    customer=customer, metadata=pid_data.get("metadata") or {},
                    description=pid_data.get("description"),
                    status="succeeded" if paid else "processing",
                    receipt_email=pid_data.get("receipt_email"),
                )  # fmt: skip
                self._event("payment_intent.created", pi)
                charge = self._charge(pi, "succeeded" if paid else "pending", email,
                                      customer_name)  # fmt: skip
                session["payment_intent"] = pi["id"]
                session["payment_status"] = "paid" if paid else "unpaid"
                if paid:
                    self._event("charge.succeeded", charge)
                    self._event("payment_intent.succeeded", pi)
                else:
                    self._event("charge.pending", charge)
                    self._event("payment_intent.processing", pi)
            else:
                self._start_subscription(session, customer, email, customer_name)
            return self._event("checkout.session.completed", session)

    def async_payment_result(self, session_id: str, succeeded: bool) -> JSON:
        """Settle a ``complete_session(paid=False)`` payment. Returns
        ``checkout.session.async_payment_succeeded`` or ``..._failed``."""
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            pi_id = session.get("payment_intent")
            if session["status"] != "complete" or pi_id is None:
                raise ValueError(f"{session_id} has no pending async payment")
            pi = self._objects[pi_id]
            if pi["status"] != "processing":
                raise ValueError(f"{pi_id} is {pi['status']}, not processing")
            charge = self._objects[pi["latest_charge"]]
            if succeeded:
                pi.update({"status": "succeeded", "amount_received": pi["amount"]})
                charge.update({"status": "succeeded", "paid": True, "captured": True,
                               "amount_captured": charge["amount"]})  # fmt: skip
                session["payment_status"] = "paid"
                self._event("charge.succeeded", charge)
                self._event("payment_intent.succeeded", pi)
                return self._event("checkout.session.async_payment_succeeded", session)
            err = {"code": "payment_intent_payment_attempt_failed", "decline_code": None,
                   "message": "The payment failed.", "type": "invalid_request_error",
                   "payment_method": {"id": pi["payment_method"]}}  # fmt: skip
            pi.update({"status": "requires_payment_method", "last_payment_error": err})
            charge.update({"status": "failed", "failure_code": "payment_failed",
                           "failure_message": "The payment failed."})  # fmt: skip
            self._event("charge.failed", charge)
            self._event("payment_intent.payment_failed", pi)
            return self._event("checkout.session.async_payment_failed", session)

    def expire_session(self, session_id: str) -> JSON:
        """Let an open session time out. Returns ``checkout.session.expired``."""
        with self._lock:
            session = self._find(session_id, "checkout.session", "session")
            if session["status"] != "open":
                raise ValueError(f"{session_id} is {session['status']}, not open")
            return self._do_expire(session, None)

    def expire_due_sessions(self) -> list[JSON]:
        """Expire every open session whose ``expires_at`` passed on the fake clock."""
        with self._lock:
            now = self.now()
            due = [
                o for o in self._objects.values()
                if o["object"] == "checkout.session" and o["status"] == "open"
                and o["expires_at"] <= now
            ]  # fmt: skip
            return [self._do_expire(s, None) for s in due]

    def _do_expire(self, session: JSON, ctx: _Ctx | None) -> JSON:
        session.update({"status": "expired", "url": None})
        return self._event("checkout.session.expired", session, ctx=ctx)

    def renew_subscription(self, subscription_id: str, *, paid: bool = True) -> JSON:
        """Bill the next period (advancing the fake clock to the period boundary, like
        a test clock). Returns ``invoice.paid`` (``invoice.payment_failed`` when
        ``paid=False``; ``customer.subscription.deleted`` if it was set to cancel)."""
        with self._lock:
            sub = self._find(subscription_id, "subscription", "subscription")
            if sub["status"] == "canceled":
                raise ValueError(f"{subscription_id} is canceled")
            state = self._subs[subscription_id]
            start = _period_boundary(state.anchor, state.interval, state.interval_count,
                                     state.periods)  # fmt: skip
            end = _period_boundary(state.anchor, state.interval, state.interval_count,
                                   state.periods + 1)  # fmt: skip
            if self.now() < start:
                self._clock_offset += start - self.now()
            if sub["cancel_at"] is not None and sub["cancel_at"] <= start:
                return self._end_subscription(sub, reason="cancellation_requested")
            prev_start = sub["items"]["data"][0]["current_period_start"]
            before = copy.deepcopy(sub)
            state.periods += 1
            for item in sub["items"]["data"]:
                item["current_period_start"], item["current_period_end"] = start, end
            invoice = self._invoice(
                sub, billing_reason="subscription_cycle", period_start=prev_start,
                period_end=start, lines=[
                    (item, item["price"]["unit_amount"] * item["quantity"], start, end)
                    for item in sub["items"]["data"]
                ], paid=paid,
            )  # fmt: skip
            sub["latest_invoice"] = invoice["id"]
            if not paid:
                sub["status"] = "past_due"
            self._event(
                "customer.subscription.updated", sub,
                previous={k: before[k] for k in sub if sub[k] != before[k]},
            )  # fmt: skip
            return self._invoice_events(invoice, paid)

    def cancel_subscription(
        self, subscription_id: str, *, at_period_end: bool = False,
        feedback: str | None = None, comment: str | None = None,
    ) -> JSON:  # fmt: skip
        """Cancel (e.g. from the customer portal or the Dashboard). Returns
        ``customer.subscription.deleted``, or ``customer.subscription.updated`` with
        ``at_period_end=True`` (the deletion then happens at :meth:`renew_subscription`)."""
        with self._lock:
            sub = self._find(subscription_id, "subscription", "subscription")
            if sub["status"] == "canceled":
                raise ValueError(f"{subscription_id} is already canceled")
            if not at_period_end:
                return self._end_subscription(
                    sub, reason="cancellation_requested", comment=comment, feedback=feedback
                )
            before = copy.deepcopy(sub)
            sub["cancel_at_period_end"] = True
            sub["cancel_at"] = sub["items"]["data"][0]["current_period_end"]
            sub["canceled_at"] = self.now()
            sub["cancellation_details"].update(
                {"reason": "cancellation_requested", "comment": comment, "feedback": feedback}
            )
            return self._event(
                "customer.subscription.updated", sub,
                previous={k: before[k] for k in sub if sub[k] != before[k]},
            )  # fmt: skip

    def refund(
        self, payment_intent_or_charge: str, amount: int | None = None, *,
        reason: str | None = None,
    ) -> JSON:  # fmt: skip
        """Refund a charge (full by default). Returns ``charge.refunded`` whose
        ``data.object`` is the Charge (with ``payment_intent``, ``amount_refunded``)."""
        with self._lock:
            obj = self._objects.get(payment_intent_or_charge)
            if obj is not None and obj["object"] == "payment_intent":
                obj = self._objects.get(obj["latest_charge"] or "")
            if obj is None or obj["object"] != "charge":
                raise KeyError(payment_intent_or_charge)
            charge = obj
            if charge["status"] != "succeeded":
                raise ValueError(f"{charge['id']} is {charge['status']}; cannot refund")
            remaining = charge["amount"] - charge["amount_refunded"]
            amount = remaining if amount is None else amount
            if not 0 < amount <= remaining:
                raise ValueError(
                    f"Refund amount ({amount}) is greater than unrefunded amount ({remaining})"
                )
            refund = self._store({
                "id": _new_id("re_"), "object": "refund", "amount": amount,
                "balance_transaction": _new_id("txn_"), "charge": charge["id"],
                "created": self.now(), "currency": charge["currency"],
                "destination_details": {"card": {"reference": None,
                                                 "reference_status": "pending",
                                                 "reference_type": "acquirer_reference_number",
                                                 "type": "refund"}, "type": "card"},
                "metadata": {}, "payment_intent": charge["payment_intent"],
                "reason": reason, "receipt_number": None, "source_transfer_reversal": None,
                "status": "succeeded", "transfer_reversal": None,
            })  # fmt: skip
            self._charge_refunds.setdefault(charge["id"], []).append(refund["id"])
            previous = {"amount_refunded": charge["amount_refunded"], "refunded": False}
            charge["amount_refunded"] += amount
            charge["refunded"] = charge["amount_refunded"] == charge["amount"]
            if not charge["refunded"]:
                del previous["refunded"]
            self._event("refund.created", refund)
            return self._event("charge.refunded", charge, previous=previous)

    # ---------------------------------------------------------- subscriptions

    def _start_subscription(
        self, session: JSON, customer: str | None, email: str, name: str | None
    ) -> None:
        sdata = self._pending_data[session["id"]]["subscription_data"]
        now = self.now()
        sub_id = _new_id("sub_")
        recurring = [li for li in self._session_items[session["id"]] if li["price"]["recurring"]]
        one_time = [li for li in self._session_items[session["id"]]
                    if not li["price"]["recurring"]]  # fmt: skip
        rec = recurring[0]["price"]["recurring"]
        state = _SubState(rec["interval"], rec["interval_count"], now)
        end = _period_boundary(now, state.interval, state.interval_count, 1)
        items = []
        for li in recurring:
            price = li["price"]
            items.append({
                "id": _new_id("si_", 14), "object": "subscription_item",
                "billing_thresholds": None, "created": now, "current_period_end": end,
                "current_period_start": now, "discounts": [], "metadata": {},
                "plan": {
                    "id": price["id"], "object": "plan", "active": False,
                    "amount": price["unit_amount"], "amount_decimal": price["unit_amount_decimal"],
                    "billing_scheme": "per_unit", "created": price["created"],
                    "currency": price["currency"], "interval": rec["interval"],
                    "interval_count": rec["interval_count"], "livemode": False, "metadata": {},
                    "meter": None, "nickname": None, "product": price["product"],
                    "tiers_mode": None, "transform_usage": None, "trial_period_days": None,
                    "usage_type": "licensed",
                },
                "price": copy.deepcopy(price), "quantity": li["quantity"],
                "subscription": sub_id, "tax_rates": [],
            })  # fmt: skip
        sub = self._store({
            "id": sub_id, "object": "subscription", "application": None,
            "application_fee_percent": None,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None},
            "billing_cycle_anchor": now, "billing_cycle_anchor_config": None,
            "billing_mode": {"flexible": {"proration_discounts": "included"},
                             "type": "flexible", "updated_at": now},
            "billing_thresholds": None, "cancel_at": None, "cancel_at_period_end": False,
            "canceled_at": None,
            "cancellation_details": {"comment": None, "feedback": None, "reason": None},
            "collection_method": "charge_automatically", "created": now,
            "currency": session["currency"], "customer": customer, "customer_account": None,
            "days_until_due": None, "default_payment_method": _new_id("pm_"),
            "default_source": None, "default_tax_rates": [],
            "description": sdata.get("description"), "discounts": [], "ended_at": None,
            "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
            "items": {"object": "list", "data": items, "has_more": False,
                      "total_count": len(items),
                      "url": f"/v1/subscription_items?subscription={sub_id}"},
            "latest_invoice": None, "livemode": False, "managed_payments": None,
            "metadata": dict(sdata.get("metadata") or {}),
            "next_pending_invoice_item_invoice": None, "on_behalf_of": None,
            "pause_collection": None,
            "payment_settings": {"payment_method_options": None, "payment_method_types": None,
                                 "save_default_payment_method": "off"},
            "pending_invoice_item_interval": None, "pending_setup_intent": None,
            "pending_update": None, "presentment_details": None, "schedule": None,
            "start_date": now, "status": "active", "test_clock": None, "transfer_data": None,
            "trial_end": None,
            "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
            "trial_start": None,
        })  # fmt: skip
        self._subs[sub_id] = state
        lines = [(item, item["price"]["unit_amount"] * item["quantity"], now, end)
                 for item in items]  # fmt: skip
        lines += [(li, li["amount_total"], now, now) for li in one_time]
        invoice = self._invoice(
            sub, billing_reason="subscription_create", period_start=now, period_end=now,
            lines=lines, paid=True, email=email, name=name,
        )  # fmt: skip
        sub["latest_invoice"] = invoice["id"]
        session.update({"subscription": sub_id, "invoice": invoice["id"],
                        "payment_status": "paid"})  # fmt: skip
        self._event("customer.subscription.created", sub)
        self._invoice_events(invoice, True)

    def _invoice(
        self, sub: JSON, *, billing_reason: str, period_start: int, period_end: int,
        lines: list[tuple[JSON, int, int, int]], paid: bool, email: str | None = None,
        name: str | None = None,
    ) -> JSON:  # fmt: skip
        now = self.now()
        inv_id = _new_id("in_")
        state = self._subs[sub["id"]]
        state.invoice_seq += 1
        customer = self._objects.get(sub["customer"] or "", {})
        email = email or customer.get("email")
        name = name or customer.get("name")
        total = sum(amount for _, amount, _, _ in lines)
        line_objs = []
        for src, amount, start, end in lines:
            is_sub_item = src.get("object") == "subscription_item"
            price = src["price"]
            product = self._objects[price["product"]]
            line_objs.append({
                "id": _new_id("il_"), "object": "line_item", "amount": amount,
                "currency": sub["currency"],
                "description": f"{src['quantity']} × {product['name']}"
                + (f" (at {_fmt_amount(price['unit_amount'], price['currency'])} / "
                   f"{price['recurring']['interval']})" if is_sub_item else ""),
                "discount_amounts": [], "discountable": True, "discounts": [],
                "invoice": inv_id, "livemode": False,
                "metadata": dict(sub["metadata"]) if is_sub_item else {},
                "parent": {
                    "invoice_item_details": None if is_sub_item else {
                        "invoice_item": _new_id("ii_"), "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub["id"],
                    },
                    "subscription_item_details": {
                        "invoice_item": None, "proration": False,
                        "proration_details": {"credited_items": None},
                        "subscription": sub["id"], "subscription_item": src["id"],
                    } if is_sub_item else None,
                    "type": "subscription_item_details" if is_sub_item
                    else "invoice_item_details",
                },
                "period": {"end": end, "start": start},
                "pretax_credit_amounts": [],
                "pricing": {"price_details": {"price": price["id"], "product": product["id"]},
                            "type": "price_details",
                            "unit_amount_decimal": price["unit_amount_decimal"]},
                "quantity": src["quantity"], "quantity_decimal": str(src["quantity"]),
                "subscription": sub["id"], "subtotal": amount, "taxes": [],
            })  # fmt: skip
        invoice = self._store({
            "id": inv_id, "object": "invoice", "account_country": "US",
            "account_name": self.account_name, "account_tax_ids": None,
            "amount_due": total, "amount_overpaid": 0,
            "amount_paid": total if paid else 0, "amount_paid_off_stripe": 0,
            "amount_remaining": 0 if paid else total, "amount_shipping": 0,
            "application": None, "attempt_count": 1 if total else 0, "attempted": True,
            "auto_advance": not paid,
            "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None,
                              "provider": None, "status": None},
            "automatically_finalizes_at": None, "billing_reason": billing_reason,
            "collection_method": "charge_automatically", "confirmation_secret": None,
            "created": now, "currency": sub["currency"], "custom_fields": None,
            "customer": sub["customer"], "customer_account": None, "customer_address": None,
            "customer_email": email, "customer_name": name, "customer_phone": None,
            "customer_shipping": None, "customer_tax_exempt": "none", "customer_tax_ids": [],
            "default_payment_method": None, "default_source": None, "default_tax_rates": [],
            "description": None, "discounts": [], "due_date": None, "effective_at": now,
            "ending_balance": 0, "footer": None, "from_invoice": None,
            "hosted_invoice_url":
                f"https://invoice.stripe.com/i/{self.account_id}/test_{_new_id('', 40)}",
            "invoice_pdf":
                f"https://pay.stripe.com/invoice/{self.account_id}/test_{_new_id('', 40)}/pdf",
            "issuer": {"type": "self"}, "last_finalization_error": None,
            "latest_revision": None,
            "lines": {"object": "list", "data": line_objs, "has_more": False,
                      "total_count": len(line_objs), "url": f"/v1/invoices/{inv_id}/lines"},
            "livemode": False, "metadata": {},
            "next_payment_attempt": None if paid else now + 3 * _DAY,
            "number": f"{self._invoice_prefix}-{state.invoice_seq:04d}",
            "on_behalf_of": None,
            "parent": {
                "quote_details": None,
                "subscription_details": {
                    "metadata": dict(sub["metadata"]), "subscription": sub["id"],
                    "subscription_proration_date": None,
                },
                "type": "subscription_details",
            },
            "payment_settings": {"default_mandate": None, "payment_method_options": None,
                                 "payment_method_types": None},
            "period_end": period_end, "period_start": period_start,
            "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
            "receipt_number": None, "rendering": None, "shipping_cost": None,
            "shipping_details": None, "starting_balance": 0, "statement_descriptor": None,
            "status": "paid" if paid else "open",
            "status_transitions": {"finalized_at": now, "marked_uncollectible_at": None,
                                   "paid_at": now if paid else None, "voided_at": None},
            "subtotal": total, "subtotal_excluding_tax": total, "test_clock": None,
            "threshold_reason": None, "total": total, "total_discount_amounts": [],
            "total_excluding_tax": total, "total_pretax_credit_amounts": [],
            "total_taxes": [], "webhooks_delivered_at": now,
        })  # fmt: skip
        if total > 0:
            pi = self._payment_intent(
                amount=total, currency=sub["currency"], customer=sub["customer"],
                metadata={}, description="Subscription creation"
                if billing_reason == "subscription_create" else "Subscription update",
                status="succeeded" if paid else "requires_payment_method",
            )  # fmt: skip
            charge = self._charge(pi, "succeeded" if paid else "failed", email, name)
            if not paid:
                pi["last_payment_error"] = {
                    "charge": charge["id"], "code": "card_declined",
                    "decline_code": "generic_decline", "message": "Your card was declined.",
                    "type": "card_error",
                }  # fmt: skip
            payment = self._store({
                "id": _new_id("inpay_"), "object": "invoice_payment",
                "amount_paid": total if paid else None, "amount_requested": total,
                "created": now, "currency": sub["currency"], "invoice": inv_id,
                "is_default": True, "livemode": False,
                "payment": {"type": "payment_intent", "payment_intent": pi["id"]},
                "status": "paid" if paid else "open",
                "status_transitions": {"canceled_at": None, "paid_at": now if paid else None},
            })  # fmt: skip
            self._invoice_payments[inv_id] = [payment["id"]]
            self._event("payment_intent.created", pi)
            if paid:
                self._event("charge.succeeded", charge)
                self._event("payment_intent.succeeded", pi)
            else:
                self._event("charge.failed", charge)
                self._event("payment_intent.payment_failed", pi)
        return invoice

    def _invoice_events(self, invoice: JSON, paid: bool) -> JSON:
        self._event("invoice.created", invoice)
        self._event("invoice.finalized", invoice)
        if not paid:
            return self._event("invoice.payment_failed", invoice)
        paid_event = self._event("invoice.paid", invoice)
        self._event("invoice.payment_succeeded", invoice)
        return paid_event

    def _end_subscription(
        self, sub: JSON, *, reason: str, comment: str | None = None,
        feedback: str | None = None, ctx: _Ctx | None = None,
    ) -> JSON:  # fmt: skip
        now = self.now()
        sub.update({"status": "canceled", "ended_at": now,
                    "canceled_at": sub["canceled_at"] or now})  # fmt: skip
        details = sub["cancellation_details"]
        details["reason"] = reason
        if comment is not None:
            details["comment"] = comment
        if feedback is not None:
            details["feedback"] = feedback
        return self._event("customer.subscription.deleted", sub, ctx=ctx)

    # ---------------------------------------------------------------- webhooks

    @staticmethod
    def signed_webhook(
        event: Mapping[str, Any] | str | bytes, secret: str, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        """``(body, headers)`` of the delivery, ``Stripe-Signature: t=...,v1=...``."""
        return sign_webhook(event, secret, timestamp)

    @staticmethod
    async def deliver_webhook(
        event: Mapping[str, Any], url: str, secret: str, *, timestamp: int | None = None,
        total_seconds: float = 10.0,
    ) -> tuple[int, str]:  # fmt: skip
        """POST the signed event to ``url`` like Stripe does; returns (status, body)."""
        body, headers = sign_webhook(event, secret, timestamp)
        async with aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=total_seconds)
        ) as session, session.post(url, data=body, headers=headers) as resp:
            return resp.status, await resp.text()


def _bind(method: Callable[..., JSON]) -> _Handler:
    return cast(_Handler, method)


def _retriever(kind: str, param: str) -> _Handler:
    def handler(fake: FakeStripe, p: JSON, a: dict[str, str], ctx: _Ctx) -> JSON:
        return fake._find(a["id"], kind, param)

    return handler


_ID = r"(?P<id>[A-Za-z0-9_]+)"
_ROUTES: list[tuple[str, re.Pattern[str], _Handler, type]] = [
    ("POST", re.compile(r"/v1/checkout/sessions"), _bind(FakeStripe._h_create_session),
     checkout_params.SessionCreateParams),
    ("GET", re.compile(r"/v1/checkout/sessions"), _bind(FakeStripe._h_list_sessions),
     checkout_params.SessionListParams),
    ("GET", re.compile(rf"/v1/checkout/sessions/{_ID}"),
     _bind(FakeStripe._h_retrieve_session), checkout_params.SessionRetrieveParams),
    ("GET", re.compile(rf"/v1/checkout/sessions/{_ID}/line_items"),
     _bind(FakeStripe._h_session_line_items), checkout_params.SessionListLineItemsParams),
    ("POST", re.compile(rf"/v1/checkout/sessions/{_ID}/expire"),
     _bind(FakeStripe._h_expire_session), checkout_params.SessionExpireParams),
    ("GET", re.compile(rf"/v1/payment_intents/{_ID}"),
     _retriever("payment_intent", "intent"),
     stripe_params.PaymentIntentRetrieveParams),
    ("GET", re.compile(rf"/v1/subscriptions/{_ID}"),
     _retriever("subscription", "subscription_exposed_id"),
     stripe_params.SubscriptionRetrieveParams),
    ("DELETE", re.compile(rf"/v1/subscriptions/{_ID}"),
     _bind(FakeStripe._h_cancel_subscription), stripe_params.SubscriptionCancelParams),
    ("POST", re.compile(rf"/v1/subscriptions/{_ID}"),
     _bind(FakeStripe._h_update_subscription), stripe_params.SubscriptionUpdateParams),
    ("GET", re.compile(rf"/v1/invoices/{_ID}"),
     _retriever("invoice", "invoice"),
     stripe_params.InvoiceRetrieveParams),
    ("GET", re.compile(r"/v1/invoice_payments"), _bind(FakeStripe._h_list_invoice_payments),
     stripe_params.InvoicePaymentListParams),
    ("GET", re.compile(rf"/v1/charges/{_ID}"),
     _retriever("charge", "charge"),
     stripe_params.ChargeRetrieveParams),
    ("GET", re.compile(rf"/v1/customers/{_ID}"),
     _retriever("customer", "customer"),
     stripe_params.CustomerRetrieveParams),
    ("GET", re.compile(rf"/v1/refunds/{_ID}"),
     _retriever("refund", "refund"),
     stripe_params.RefundRetrieveParams),
    ("GET", re.compile(r"/v1/events"), _bind(FakeStripe._h_list_events),
     stripe_params.EventListParams),
    ("GET", re.compile(rf"/v1/events/{_ID}"), _bind(FakeStripe._h_retrieve_event),
     stripe_params.EventRetrieveParams),
]  # fmt: skip
