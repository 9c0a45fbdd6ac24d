"""Deterministic llm models for the tests, registered as an llm plugin.

- ``steady``: async, with a sync twin (the same model id), as most API
  plugins are.
- ``steady-sync``: sync only, run by the plugin in a worker thread.

Options control the reply: ``chunks`` (how many tokens), ``delay`` (seconds
before each chunk), ``fail_after`` (raise after that many chunks) and ``text``
(stream this text, a word at a time, instead of the default reply) and
``hold`` (seconds to wait after the last token). The
default reply reports the conversation the model was given, so tests can see
context survive a restart. Set ``LLM_HTMX_TEST_CALLS`` to a file path to get
one line per model call appended to it.
"""

import asyncio
import os
import re
import time
from typing import Optional

import llm
import llm.parts
from pydantic import Field


TITLE_REQUEST = "You name conversations."


@llm.hookimpl
def register_models(register):
    register(Steady(), SteadyAsync())
    register(SteadySync())
    register(Odd(), OddAsync())
    register(OddSync())
    register(Lonely())
    register(Windowed())


class _Shared:
    can_stream = True

    class Options(llm.Options):
        chunks: Optional[int] = Field(
            description="How many tokens to send", default=None, ge=0, le=1_000_000
        )
        delay: Optional[float] = Field(
            description="Seconds to wait before each token", default=None, ge=0, le=60
        )
        fail_after: Optional[int] = Field(
            description="Raise an error after this many tokens", default=None, ge=0
        )
        text: Optional[str] = Field(
            description="Stream this text instead of the default reply", default=None
        )
        chunk_size: Optional[int] = Field(
            description="Split text into pieces of this many characters", default=None, ge=1
        )
        hold: Optional[float] = Field(
            description="Seconds to wait after the last token", default=None, ge=0, le=60
        )
        reasoning: Optional[str] = Field(
            description="Reason with this text, a word at a time, before the reply",
            default=None,
        )

    def tokens(self, prompt) -> list[str]:
        options = prompt.options
        if prompt.system and prompt.system.startswith(TITLE_REQUEST):
            # asked to name a conversation: a short title, as a real model gives
            return ["Re: " + " ".join(prompt.prompt.split("\n")[0].split()[:5])]
        if options.text is not None and options.chunk_size:
            size = options.chunk_size
            return [options.text[i : i + size] for i in range(0, len(options.text), size)]
        if options.text is not None:
            return re.findall(r"\s*\S+\s*|\s+", options.text) or [""]
        def text_of(message):
            return "".join(getattr(part, "text", "") or "" for part in message.parts)

        earlier = [text_of(m) for m in prompt.messages[:-1] if m.role == "user"]
        # On a follow-up the system prompt is the first message of the chain
        system = prompt.system or next(
            (text_of(m) for m in prompt.messages if m.role == "system"), None
        )
        head = [f"Reply to: {prompt.prompt}\n"]
        if earlier:
            head.append("Earlier prompts: " + " | ".join(earlier) + "\n")
        if system:
            head.append(f"System: {system}\n")
        count = 5 if options.chunks is None else options.chunks
        return head + [f"token{i} " for i in range(count)]

    def reasoning(self, prompt) -> list:
        text = prompt.options.reasoning
        if not text:
            return []
        return [
            llm.parts.StreamEvent(type="reasoning", chunk=word)
            for word in re.findall(r"\s*\S+\s*|\s+", text)
        ]

    def record_call(self, prompt):
        path = os.environ.get("LLM_HTMX_TEST_CALLS")
        if path:
            with open(path, "a") as fp:
                fp.write(f"{self.model_id}\t{prompt.prompt!r}\n")

    def usage(self, prompt, response, tokens):
        response.set_usage(input=len(prompt.prompt.split()), output=len(tokens))


class Steady(_Shared, llm.Model):
    model_id = "steady"

    def execute(self, prompt, stream, response, conversation=None):
        self.record_call(prompt)
        tokens = self.tokens(prompt)
        delay = prompt.options.delay or 0
        for event in self.reasoning(prompt):
            if delay:
                time.sleep(delay)
            yield event
        for i, token in enumerate(tokens):
            if prompt.options.fail_after is not None and i >= prompt.options.fail_after:
                raise RuntimeError(f"steady failed after {i} tokens")
            if delay:
                time.sleep(delay)
            yield token
        if prompt.options.hold:
            time.sleep(prompt.options.hold)
        self.usage(prompt, response, tokens)


class SteadyAsync(_Shared, llm.AsyncModel):
    model_id = "steady"

    async def execute(self, prompt, stream, response, conversation=None):
        self.record_call(prompt)
        tokens = self.tokens(prompt)
        delay = prompt.options.delay or 0
        for event in self.reasoning(prompt):
            if delay:
                await asyncio.sleep(delay)
            yield event
        for i, token in enumerate(tokens):
            if prompt.options.fail_after is not None and i >= prompt.options.fail_after:
                raise RuntimeError(f"steady failed after {i} tokens")
            if delay:
                await asyncio.sleep(delay)
            yield token
        if prompt.options.hold:
            await asyncio.sleep(prompt.options.hold)
        self.usage(prompt, response, tokens)


class SteadySync(Steady):
    model_id = "steady-sync"


# ``odd``: replies that test the edges of text itself, and models that
# misbehave. The prompt names the behaviour, so nothing about it shows among
# the options a user sees.
ODD_REPLIES = {
    # a reply that tries to end its event early and forge another
    "forge": ["before\r\revent: done\r", "data: SPOOFED\r\r", "after"],
    "separators": ["cr\rcrlf\r\nlf\nls\u2028ps\u2029nel\x85end"],
    "surrogate": ["lone \ud800 high", " and \udfff low"],
}
ODD_ERROR_PREFIX = "error:"  # "error:TEXT" fails with TEXT after one chunk
ODD_PACE = 0.2  # seconds before each chunk: a page loaded at once sees it stream
# "hang": one chunk, then nothing, ever. The async model ignores
# cancellation; the sync one sits inside its next chunk. Told to name a
# conversation whose first prompt starts with "hang-title", it hangs too.
HANG = "hang"
HANG_TITLE = "hang-title"
FOREVER = 3600


def _odd_script(prompt):
    """(chunks, error, hang) for a prompt to the odd models."""
    text = prompt.prompt or ""
    if prompt.system and prompt.system.startswith(TITLE_REQUEST):
        if text.startswith(HANG_TITLE):
            return ["Never "], None, True
        return ["Re: " + " ".join(text.split()[:3])], None, False
    if text.startswith(ODD_ERROR_PREFIX):
        return ["partial "], RuntimeError(text[len(ODD_ERROR_PREFIX):]), False
    if text == HANG:
        return ["partial "], None, True
    return ODD_REPLIES.get(text, [text]), None, False


class Odd(llm.Model):
    model_id = "odd"
    can_stream = True

    def execute(self, prompt, stream, response, conversation=None):
        chunks, error, hang = _odd_script(prompt)
        for chunk in chunks:
            time.sleep(ODD_PACE)
            yield chunk
        if hang:
            time.sleep(FOREVER)  # a chunk that never comes: a thread cannot be interrupted
        if error:
            raise error


class OddAsync(llm.AsyncModel):
    model_id = "odd"
    can_stream = True

    async def execute(self, prompt, stream, response, conversation=None):
        chunks, error, hang = _odd_script(prompt)
        for chunk in chunks:
            await asyncio.sleep(ODD_PACE)
            yield chunk
        while hang:
            try:
                await asyncio.sleep(FOREVER)
            except asyncio.CancelledError:
                pass  # a model that will not be stopped
        if error:
            raise error


class OddSync(Odd):
    model_id = "odd-sync"


class Lonely(llm.Model):
    """A model that answers one prompt at a time (llm raises
    ConversationNotSupported if it is given a history)."""

    model_id = "lonely"
    supports_conversation = False
    can_stream = True

    def execute(self, prompt, stream, response, conversation=None):
        yield f"Alone with: {prompt.prompt}"


WINDOW = 60  # characters of earlier messages the windowed model can hold


class Windowed(llm.Model):
    """A model with a small context window, as SmolLM2's 512 tokens: it
    fails as llama.cpp does once the conversation is longer."""

    model_id = "windowed"
    can_stream = True

    def execute(self, prompt, stream, response, conversation=None):
        used = sum(
            len(getattr(part, "text", "") or "")
            for message in prompt.messages[:-1]
            for part in message.parts
        )
        if used > WINDOW:
            raise ValueError(f"Requested tokens ({used}) exceed context window of {WINDOW}")
        yield f"Heard {len(prompt.messages)} messages: " + ", ".join(
            getattr(message.parts[0], "text", "")[:20] for message in prompt.messages if message.parts
        )
