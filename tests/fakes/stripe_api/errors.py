"""Stripe's error answers: the ``{"error": {...}}`` body and the common invalid-request shapes."""

from __future__ import annotations

from .records import JSON


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
        f"FakeStripe does not model `{what or param}`; extend tests/fakes/stripe_api/ "
        "if the code under test needs it.",
        param=param,
        code="fake_unsupported",
    )
