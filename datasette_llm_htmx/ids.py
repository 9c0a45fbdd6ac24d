"""Conversation and message ids: lowercase ULIDs, the same kind llm uses."""

import re

from llm.utils import monotonic_ulid

ID_PATTERN = re.compile(r"^[0-9a-z]{26}$")


def new_id() -> str:
    return str(monotonic_ulid()).lower()


def is_id(value: str) -> bool:
    return bool(ID_PATTERN.match(value or ""))
