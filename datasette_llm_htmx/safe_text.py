"""Text that SQLite, the socket and the HTML can all take.

A model can emit a lone surrogate (half of a UTF-16 pair): Python holds it,
but it has no UTF-8 form, so writing it to logs.db or to a response fails.
It is replaced with U+FFFD where text enters: chunks, errors, titles."""

import re

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    if text.isascii():
        return text
    return LONE_SURROGATE.sub("\ufffd", text)


def search_terms(text: str) -> str:
    """What a search box may send to SQLite: no NUL (it ends a C string,
    and FTS5 then reads an unterminated string) and no other control
    characters."""
    return re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", " ", valid_text(text))
