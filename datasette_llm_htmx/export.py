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
    """Shaped like `llm logs --cid`; every text a person or a model wrote is
    fenced, so none of it can forge the transcript's structure. The system
    prompt is written where it is set or changes."""
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
            *(fenced(message.prompt) if message.prompt else ["-- none --"]),
            "",
        ]
        if message.fragments:
            lines += ["### Fragments", ""]
            for fragment in message.fragments:
                lines += [f"- {one_line(fragment.source or fragment.hash or 'text')}", "", *fenced(fragment.content), ""]
        if message.attachments:
            lines += ["### Attachments", ""]
            for number, attachment in enumerate(message.attachments, 1):
                name = one_line(attachment.url or attachment.name or attachment.id)
                size = f", {attachment.size:,} bytes" if attachment.size is not None else ""
                lines += [f"{number}. **{one_line(attachment.type or 'file')}**: `{name}`{size}"]
            lines.append("")
        if message.tool_results:
            lines += ["### Tool results", ""]
            for result in message.tool_results:
                lines += [f"- **{one_line(result.name)}**: `{one_line(result.call_id or '')}`", "", *fenced(result.output), ""]
                if result.error:
                    lines += [f"  **Error**: {one_line(result.error)}", ""]
        if message.system and message.show_system:
            lines += ["## System", "", *fenced(message.system), ""]
        if message.reasoning:
            lines += ["## Reasoning", "", *fenced(message.reasoning), ""]
        # the reply is markdown: fenced as such, it still reads as it was
        lines += ["## Response", "", *fenced(message.text, "markdown"), ""]
        if message.tool_calls:
            lines += ["### Tool calls", ""]
            for call in message.tool_calls:
                lines += [f"- **{one_line(call.name)}**: `{one_line(call.call_id or '')}`", "", *fenced(call.arguments, "json"), ""]
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
            "messages": [_message_json(m) for m in conversation.messages],
        },
        indent=2,
    )


def _message_json(m) -> dict:
    return {
        "id": m.id,
        "model": m.model_id,
        "datetime_utc": m.datetime_utc,
        "system": m.system,
        "system_fragments": [_fragment(f) for f in m.system_fragments],
        "prompt": m.prompt,
        "fragments": [_fragment(f) for f in m.fragments],
        "attachments": [_attachment(a) for a in m.attachments],
        "tool_results": [
            {
                "name": r.name,
                "output": r.output,
                "tool_call_id": r.call_id,
                "error": r.error,
                "attachments": [_attachment(a) for a in r.attachments],
            }
            for r in m.tool_results
        ],
        "reasoning": m.reasoning or None,
        "response": m.text,
        "tool_calls": [
            {"name": c.name, "arguments": _arguments(c.arguments), "tool_call_id": c.call_id}
            for c in m.tool_calls
        ],
        "status": m.status,
        "error": m.error,
        "options": m.options,
        "input_tokens": m.input_tokens,
        "output_tokens": m.output_tokens,
        "duration_ms": m.duration_ms,
    }


def _fragment(fragment) -> dict:
    return {"source": fragment.source, "content": fragment.content}


def _attachment(attachment) -> dict:
    return {
        "id": attachment.id,
        "type": attachment.type,
        "size": attachment.size,
        "name": attachment.name,
        "url": attachment.url,
    }


def _arguments(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text
