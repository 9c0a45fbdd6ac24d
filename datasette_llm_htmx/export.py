"""A conversation as Markdown (shaped like `llm logs --cid` output) and as
JSON. Both are served as data, never as HTML: nosniff and a sandboxing CSP."""

import json
import re

from .rendering import format_time

EXPORT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def fenced(text: str, info: str = "") -> list[str]:
    """Text in a code fence longer than any run of backticks inside it: a
    prompt or reply cannot close the fence and forge headings of its own
    ("## Response") in the transcript."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return [fence + info, text, fence]


def one_line(text) -> str:
    """Headings hold one line: a title or a model id with a line break
    could otherwise start a heading of its own."""
    return " ".join(str(text or "").split())


def to_markdown(conversation) -> str:
    lines = [f"# {one_line(conversation.title)}", ""]
    for message in conversation.messages:
        when = (message.datetime_utc or "")[:19]
        lines += [
            f"# {when}    conversation: {conversation.id} id: {message.id}",
            "",
            f"Model: **{one_line(message.model_id)}**",
            "",
            "## Prompt",
            "",
            *fenced(message.prompt),
            "",
        ]
        if message.system:
            lines += ["## System", "", *fenced(message.system), ""]
        # the reply is markdown: fenced as such, it still reads as it was
        lines += ["## Response", "", *fenced(message.text, "markdown"), ""]
        if message.status != "done":
            note = message.error if message.status == "failed" and message.error else ""
            lines += [f"*({message.status}{': ' + one_line(note) if note else ''})*", ""]
    return "\n".join(lines)


def to_json(conversation) -> str:
    return json.dumps(
        {
            "id": conversation.id,
            "name": conversation.title,
            "model": conversation.model_id,
            "started": format_time(conversation.datetime_utc),
            "datetime_utc": conversation.datetime_utc,
            "messages": [
                {
                    "id": m.id,
                    "model": m.model_id,
                    "datetime_utc": m.datetime_utc,
                    "system": m.system,
                    "prompt": m.prompt,
                    "response": m.text,
                    "status": m.status,
                    "error": m.error,
                    "options": m.options,
                    "input_tokens": m.input_tokens,
                    "output_tokens": m.output_tokens,
                    "duration_ms": m.duration_ms,
                }
                for m in conversation.messages
            ],
        },
        indent=2,
    )
