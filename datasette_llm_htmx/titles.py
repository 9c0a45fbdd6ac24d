"""Conversation names: one asked of a model after the first reply, judged,
with the first prompt as the fallback; and suggestions to pick from when
renaming.

Title calls have a budget of their own (two threads for sync models, a
time limit for all): a model that hangs costs a missing title, never a
page or a stream.
"""

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

from .catalog import resolve_model
from .safe_text import valid_text

TITLE_SYSTEM = (
    "You name conversations. Reply with a title of at most six words for the "
    "conversation below. Reply with the title only: no quotes, no full stop."
)
TITLE_TIMEOUT = 20.0  # seconds; a slower title model leaves the fallback
MAX_TITLE_CHARS = 200
MAX_TITLE_WORDS = 8
FALLBACK_CHARS = 50
SUGGESTION_CHARS = 60
# How a chatty model starts an answer that is not a title.
# the first item of a list the model began ("1. NOT", SmolLM2 once), not a name
LIST_ITEM = re.compile(r"^(\d+[.)]|[-*+•])(\s|$)")
CHATTER = re.compile(
    r"^(sure|certainly|of course|here('s| is| are)|okay|ok\b|i (can|will|would|'d|am)|"
    r"as an ai|the title|a title|title suggestion)",
    re.I,
)

_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llm-htmx-title")
_sync_calls = 0


def clean_line(text: str | None) -> str | None:
    """The first line of a model's answer, without markdown or quotes."""
    for line in valid_text(text or "").splitlines():
        line = re.sub(r"\s+", " ", line).strip().strip("#*_`\"'“”‘’ ").strip()
        line = re.sub(r"^(title|name)\s*:\s*", "", line, flags=re.I).strip()
        line = line.strip("\"'“”‘’ ").rstrip(".")
        if line:
            return line
    return None


def judge(answer: str | None, prompt: str, system: str | None) -> str | None:
    """A model's answer as a title, or None if it is not one: more than one
    short line, chatter, or an echo of the system prompt."""
    lines = [line for line in valid_text(answer or "").splitlines() if line.strip()]
    title = clean_line(answer)
    if not title or len(lines) > 2:
        return None
    words = title.split(" ")
    if not 2 <= len(words) <= MAX_TITLE_WORDS or len(title) > 80:
        return None
    if CHATTER.match(title) or LIST_ITEM.match(title):
        return None
    if system and title.lower() in system.lower():
        return None
    return title


def fallback(prompt: str) -> str:
    """The first prompt, cut at a word boundary."""
    return shorten(prompt, FALLBACK_CHARS) or "Untitled"


def shorten(text: str, limit: int) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:-") + "…"


async def ask_model(model_id: str, prompt: str, reply: str, through=None) -> str | None:
    """The model's answer to "name this conversation", or None if it does
    not come within TITLE_TIMEOUT (or the title threads are all busy)."""
    global _sync_calls
    model, is_async = resolve_model(model_id)
    request = f"{prompt[:2000]}\n\n---\n\n{reply[:2000]}"
    if is_async and through is not None:  # datasette-llm's hooks (budgets) see it
        call = asyncio.ensure_future(through(model_id, request, TITLE_SYSTEM))
    elif is_async:
        call = asyncio.ensure_future(model.prompt(request, system=TITLE_SYSTEM).text())
    else:
        if _sync_calls >= _executor._max_workers:
            return None  # earlier title calls still hang: skip this one
        _sync_calls += 1

        def run():
            return model.prompt(request, system=TITLE_SYSTEM).text()

        call = asyncio.get_running_loop().run_in_executor(_executor, run)

        def release(_):
            global _sync_calls
            _sync_calls -= 1

        call.add_done_callback(release)
    done, _ = await asyncio.wait({call}, timeout=TITLE_TIMEOUT)
    if not done:
        call.cancel()  # a model that ignores this is simply not waited for
        call.add_done_callback(_swallow)
        return None
    return call.result()


def _swallow(future) -> None:
    if not future.cancelled():
        future.exception()


async def title_for(model_id: str, prompt: str, reply: str, system: str | None, through=None) -> str:
    try:
        answer = await ask_model(model_id, prompt, reply, through)
    except Exception:
        answer = None
    return judge(answer, prompt, system) or fallback(prompt)


def suggestions(conversation, limit: int = 4) -> list[str]:
    """A few titles to pick from, drawn from the conversation itself (never
    from its system prompt, which is instructions, not a subject)."""
    candidates = []
    messages = conversation.messages
    if messages:
        first = messages[0]
        first_line = first.prompt.splitlines()[0] if first.prompt.strip() else ""
        candidates.append(shorten(first_line, SUGGESTION_CHARS))
        heading = re.search(r"^#{1,6}\s+(.+)$", first.text, re.M)
        if heading:
            candidates.append(shorten(clean_line(heading.group(1)) or "", SUGGESTION_CHARS))
        sentence = re.match(r"\s*(.+?[.!?])(\s|$)", first.text.replace("\n", " "))
        if sentence:
            candidates.append(shorten(clean_line(sentence.group(1)) or "", SUGGESTION_CHARS))
        candidates.append(f"{first.model_id} chat, {first.datetime_utc[:10]}")
    seen = {conversation.title}
    system = (messages[0].system or "").strip() if messages else ""
    out = []
    for candidate in candidates:
        if candidate and candidate not in seen and not (system and candidate in system):
            seen.add(candidate)
            out.append(candidate)
    return out[:limit]
