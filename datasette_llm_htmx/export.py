"""A conversation as Markdown (shaped like `llm logs --cid` output) and as
JSON. Both are served as data, never as HTML: nosniff and a sandboxing CSP."""

import json

from .rendering import format_time

EXPORT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def to_markdown(conversation) -> str:
    lines = [f"# {conversation.title}", ""]
    for message in conversation.messages:
        when = (message.datetime_utc or "")[:19]
        lines += [
            f"# {when}    conversation: {conversation.id} id: {message.id}",
            "",
            f"Model: **{message.model_id}**",
            "",
            "## Prompt",
            "",
            message.prompt,
            "",
        ]
        if message.system:
            lines += ["## System", "", message.system, ""]
        lines += ["## Response", "", message.text, ""]
        if message.status != "done":
            note = message.error if message.status == "failed" and message.error else ""
            lines += [f"*({message.status}{': ' + note if note else ''})*", ""]
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
