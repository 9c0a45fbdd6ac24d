"""Conversation names: one written by a model after the first reply, and
suggestions to pick from when renaming."""

import asyncio
import re

from .safe_text import valid_text

TITLE_SYSTEM = (
    "You name conversations. Reply with a title of at most six words for the "
    "conversation below. Reply with the title only: no quotes, no full stop."
)
TITLE_TIMEOUT = 20.0  # seconds; a slower title model leaves llm's default name
MAX_TITLE_CHARS = 200
MAX_TITLE_WORDS = 8  # a model that rambles (llm-markov) still gives a title
SUGGESTION_CHARS = 60


def clean_title(text: str | None, limit: int = 80) -> str | None:
    """The first line of a model's answer, without markdown or quotes."""
    for line in valid_text(text or "").splitlines():
        line = re.sub(r"\s+", " ", line).strip().strip("#*_`\"'“”‘’ ").strip()
        line = re.sub(r"^(title|name)\s*:\s*", "", line, flags=re.I).strip()
        if line:
            words = line.rstrip(".").split(" ")
            title = " ".join(words[:MAX_TITLE_WORDS]) + ("…" if len(words) > MAX_TITLE_WORDS else "")
            return shorten(title, limit)
    return None


def shorten(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:-") + "…"


async def generate_title(model_id: str, prompt: str, reply: str) -> str | None:
    from .generation import resolve_model

    model, is_async = resolve_model(model_id)
    request = f"{prompt[:2000]}\n\n---\n\n{reply[:2000]}"
    if is_async:
        text = await model.prompt(request, system=TITLE_SYSTEM).text()
    else:
        text = await asyncio.to_thread(lambda: model.prompt(request, system=TITLE_SYSTEM).text())
    return clean_title(text)


def suggestions(conversation, limit: int = 4) -> list[str]:
    """A few titles to pick from, drawn from the conversation itself."""
    candidates = []
    messages = conversation.messages
    if messages:
        first = messages[0]
        candidates.append(shorten(first.prompt.splitlines()[0] if first.prompt.strip() else "", SUGGESTION_CHARS))
        heading = re.search(r"^#{1,6}\s+(.+)$", first.text, re.M)
        if heading:
            candidates.append(clean_title(heading.group(1), SUGGESTION_CHARS))
        sentence = re.match(r"\s*(.+?[.!?])(\s|$)", first.text.replace("\n", " "))
        if sentence:
            candidates.append(clean_title(sentence.group(1), SUGGESTION_CHARS))
        if first.system:
            candidates.append(shorten(first.system.splitlines()[0], SUGGESTION_CHARS))
        candidates.append(f"{first.model_id} chat, {first.datetime_utc[:10]}")
    seen = {conversation.title}
    out = []
    for candidate in candidates:
        if candidate and candidate not in seen:
            seen.add(candidate)
            out.append(candidate)
    return out[:limit]
