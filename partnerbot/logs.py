"""Logging set-up: one line per event, text or JSON, with secrets scrubbed.

Libraries log URLs that contain the bot token (python-telegram-bot and httpx put it in
the path), so every record passes through a filter that replaces each configured secret,
and every invite code, before any handler formats it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

REDACTED = "[secret]"
_CONTEXT = ("partner_id", "user_id", "update_id", "job", "ref")

# Invite codes are secrets too (whoever holds one joins a partner's account), and at
# DEBUG python-telegram-bot logs every update and every call: the `/start CODE` a new
# member sends and the `?start=CODE` links the bot sends. The separators cover how they
# look in a repr or JSON (`\n`), form-encoded (`+`, `%20`) and URL-encoded (`%3D`).
_INVITE_CODES = (
    re.compile(r"(/start(?:@\w+)?(?:\s|\\[nrt]|\+|%20)+)[A-Za-z0-9_-]+"),
    re.compile(r"((?:[?&]|%3[Ff]|%26)start(?:group|app|attach)?(?:=|%3[Dd]))[A-Za-z0-9_-]+"),
)


class RedactingFilter(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        if "start" in text:  # cheap test first: most records mention no invite
            for pattern in _INVITE_CODES:
                text = pattern.sub(rf"\1{REDACTED}", text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.scrub(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.scrub(record.exc_text)
            record.exc_info = None  # formatted (and scrubbed) already
        return True


@dataclass
class _Window:
    started: float
    suppressed: int = 0


class RateLimitFilter(logging.Filter):
    """At most one record of each kind per `interval` seconds; the others are counted and
    the count is added to the next one let through ("... (1234 more like this in 60 s)").

    A kind is the logger, the level and the message template (before its arguments), so
    "connection reset by %s" from many addresses is one kind. Put it on the loggers that a
    hostile client can make talk (asyncio's accept errors, aiohttp's bad requests): one
    attacker must not be able to fill the disk with log lines.
    """

    MAX_KINDS = 1000  # a bound on memory if templates vary (f-strings)

    def __init__(
        self, interval: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        self.interval, self.clock = interval, clock
        self.windows: dict[tuple[str, int, str], _Window] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = self.clock()
        window = self.windows.get(key)
        if window is not None and now - window.started < self.interval:
            window.suppressed += 1
            return False
        if len(self.windows) >= self.MAX_KINDS:
            self.windows.clear()
        self.windows[key] = _Window(now)
        if window is not None and window.suppressed:
            record.msg = (
                f"{record.getMessage()} ({window.suppressed} more like this in "
                f"{now - window.started:.0f} s)"
            )
            record.args = None
        return True


# Loggers that write a line per hostile connection or per failed accept().
RATE_LIMITED_LOGGERS = (
    "asyncio", "aiohttp.server", "aiohttp.web", "partnerbot.http_guard", "bot.webhook",
)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: getattr(record, k) for k in _CONTEXT if hasattr(record, k)})
        if record.exc_text:
            entry["exc"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extra = " ".join(f"{k}={getattr(record, k)}" for k in _CONTEXT if hasattr(record, k))
        # One event, one line: tracebacks are folded onto it.
        return (f"{line} [{extra}]" if extra else line).replace("\n", " | ")


def setup(level: str, fmt: str, secrets: Iterable[str]) -> RedactingFilter:
    handler = logging.StreamHandler(sys.stderr)
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    limiter = RateLimitFilter()
    for name in RATE_LIMITED_LOGGERS:
        logger = logging.getLogger(name)
        logger.filters[:] = [f for f in logger.filters if not isinstance(f, RateLimitFilter)]
        logger.addFilter(limiter)
    # httpx logs every request at INFO; at that volume it is noise, not events.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
    return redactor
