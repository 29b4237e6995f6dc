"""Parsing command arguments. Anything wrong raises Usage with a one-line reason."""

from __future__ import annotations

import re

from bot.render import esc

_INT = re.compile(r"^[+-]?[0-9]{1,9}$")


class Usage(Exception):
    """The arguments do not fit the command; the text (if any) says why."""

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def require(text: str, what: str) -> str:
    if not text:
        raise Usage(f"Missing {what}.")
    return text


def split_last(text: str, what: str) -> tuple[str, str]:
    """'my shop 30' -> ('my shop', '30'): names may contain spaces, the last word not."""
    head, _, last = text.rpartition(" ")
    if not head.strip() or not last:
        raise Usage(f"Missing {what}.")
    return head.strip(), last


def parse_days(token: str, *, signed: bool = False) -> int:
    if not _INT.match(token) or (not signed and token[0] in "+-"):
        shown = esc(token if len(token) <= 20 else token[:19] + "…")  # the reply is HTML
        raise Usage(f"“{shown}” is not a whole number of days.")
    return int(token)


def split_partner_days(text: str) -> tuple[str, int, str]:
    """'Acme Corp -30 mistaken grant' -> ('Acme Corp', -30, 'mistaken grant')."""
    words = text.split()
    for i, word in enumerate(words[1:], start=1):
        if _INT.match(word):
            return " ".join(words[:i]), int(word), " ".join(words[i + 1 :])
    raise Usage("PARTNER and DAYS are required.")
