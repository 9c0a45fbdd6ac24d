"""What GET draws: the index with its list, a conversation, a whole prompt,
the rename form, the exports, a model's option fields."""

import asyncio
import hashlib
import re

from datasette import NotFound, Response
from markupsafe import Markup

from .. import about as about_data
from .. import catalog, drafts, partials, permissions, titles
from ..config import settings
from ..errors import ShownError
from .. import export as exports
from ..generations import generations
from ..ids import is_id
from ..partials import TEMPLATE_DIR
from ..rendering import render_ahead
from ..store import attachments, listing
from ..store.database import llm_database, read_at_once
from .common import (
    find_message,
    html_response,
    is_htmx,
    load_readable,
    load_writable,
    render_page,
)

PAGE_SIZE = 50
TITLE_WAIT = titles.TITLE_TIMEOUT + 5  # a title long-poll outlasts the title call


async def index(request, datasette):
    await permissions.require_chat_or_view(datasette, request)
    return await render_index(datasette, request, **_draft(request))


def _draft(request) -> dict:
    """A form that came back with a problem, without JavaScript: what was
    typed, the problem and its status."""
    token = request.args.get("draft")
    if not token:
        return {}
    draft = drafts.take(token, permissions.actor_id(request.actor))
    if draft is None:
        return {"error": "This form was already shown once, or has expired: type it again."}
    return {"form": draft.fields, "error": draft.error, "status": draft.status}


async def about(request, datasette):
    """The start form, for a conversation about a table, a query or a row:
    its first prompt will carry what the actor sees of it."""
    await permissions.require_chat(datasette, request)
    kind, page = request.args.get("kind", ""), request.args.get("page", "")
    try:
        fragment = await about_data.fragment_for(
            datasette, request.actor, kind, page, settings(datasette).about_rows
        )
    except ShownError as error:
        return await render_index(datasette, request, error=error.message, status=error.status)
    return await render_index(
        datasette, request, about={"kind": kind, "page": page, "fragment": fragment}
    )


async def render_index(datasette, request, *, error=None, form=None, status=200, about=None):
    before = request.args.get("before")
    if before and not is_id(before):
        before = None
    q = (request.args.get("q") or "").strip()
    everyone = await permissions.can_view_all(datasette, request.actor)
    listed, next_before = await read_at_once(
        llm_database(datasette),
        lambda conn: listing.list_conversations(
            conn,
            actor_id=permissions.actor_id(request.actor),
            everyone=everyone,
            before=before,
            limit=PAGE_SIZE,
            query=q,
        )
    )
    conversation_list = partials.render_partial(
        datasette,
        "_conversation_list.html",
        request=request,
        conversations=listed,
        next_before=next_before,
        q=q,
    )
    if (
        is_htmx(request)
        and request.headers.get("hx-target") == "conversation-list"
        and not request.headers.get("hx-history-restore-request")
    ):
        return html_response(datasette, conversation_list)
    form = form or {}
    selected = form.get("model_id") or await catalog.default_for(datasette, request.actor)
    return html_response(
        datasette,
        await render_page(
            datasette,
            f"{TEMPLATE_DIR}/index.html",
            {
                "can_chat": await permissions.can_chat(datasette, request.actor),
                "deleted": request.args.get("deleted") == "1",
                "models": await catalog.offered(datasette, request.actor),
                "selected_model": selected,
                # pre-rendered partials: _options.html, _conversation_list.html
                "options": partials.options(datasette, request, selected, form),
                "form": form,
                "error": error,
                "q": q,
                "conversation_list": conversation_list,
                "about": about,
            },
            request=request,
        ),
        status=status,
    )


async def model_options(request, datasette):
    """The options fields of one model, for htmx to swap in when the model
    select changes."""
    await permissions.require_chat(datasette, request)
    model_id = request.args.get("model_id", "")
    return html_response(datasette, partials.options(datasette, request, model_id, {}))


async def conversation_page(request, datasette):
    conversation = await load_readable(datasette, request)
    return await render_conversation(datasette, request, conversation, **_draft(request))


async def render_conversation(datasette, request, conversation, *, error=None, form=None, status=200):
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    can_delete = await permissions.can_delete(datasette, request.actor, conversation)
    context = partials.message_context(datasette, conversation.id, can_write)
    await render_ahead(
        [p.text for m in conversation.messages for p in m.reply_parts if p.kind == "text"],
        conversation.id,
    )
    latest = conversation.messages[-1] if conversation.messages else None
    latest_model = (form or {}).get("model_id") or (latest.model_id if latest else None)
    # the settings of the last reply carry over to the next prompt
    values = {f"option_{k}": _as_field(v) for k, v in (latest.options if latest else {}).items()}
    values.update(form or {})
    # pre-rendered partials: one _message.html each
    messages = Markup("\n").join(
        partials.message(datasette, request, message, can_write, context)
        for message in conversation.messages
    )
    return html_response(
        datasette,
        await render_page(
            datasette,
            f"{TEMPLATE_DIR}/conversation.html",
            {
                "conversation": conversation,
                "messages": messages,
                "streaming": any(m.in_flight for m in conversation.messages),
                "can_delete": can_delete,
                "form": form or {},
                "error": error,
                "models": await catalog.offered(datasette, request.actor),
                "selected_model": latest_model,
                "latest_model": latest_model,
                "single_turn": not catalog.supports_conversation(datasette, latest_model),
                "current_system": (form or {}).get("system", _current_system(conversation)),
                "settings_open": bool(form and ("system" in form or "model_id" in form)),
                # pre-rendered partial: _options.html
                "options": partials.options(datasette, request, latest_model, values),
                **context,
            },
            request=request,
        ),
        status=status,
    )


def _as_field(value) -> str:
    """An option's value as its form field holds it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _current_system(conversation) -> str | None:
    """The system prompt in force at the end of the conversation."""
    return next((m.system for m in reversed(conversation.messages) if m.system), None)


async def whole_prompt(request, datasette):
    """The whole prompt of a truncated message: a fragment for htmx, a page
    without."""
    conversation = await load_readable(datasette, request)
    message = find_message(conversation, request.url_vars["mid"])
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    cut = bool(request.args.get("cut"))  # back to the cut prompt (after Cancel)
    context = {
        "conversation": conversation,
        "message": message,
        "limit": None if not cut else settings(datasette).truncate_prompt_chars,
        "focus": True,
        **partials.message_context(datasette, conversation.id, can_write),
    }
    if is_htmx(request):
        html = partials.render_partial(datasette, "_prompt.html", request=request, **context)
    else:
        html = await render_page(
            datasette,
            f"{TEMPLATE_DIR}/prompt.html", context, request=request
        )
    return html_response(datasette, html)


async def export(request, datasette):
    conversation = await load_readable(datasette, request)
    if request.url_vars["format"] == "md":
        body, content_type = exports.to_markdown(conversation), "text/markdown"
    else:
        body, content_type = exports.to_json(conversation), "application/json"
    return Response(
        body, headers=exports.EXPORT_HEADERS, content_type=f"{content_type}; charset=utf-8"
    )


ATTACHMENT_ID = re.compile(r"^[0-9a-f]{64}$")
# An attachment is data, never a page: images the plugin shows inline keep
# their type, anything else is a download; nothing runs, nothing is sniffed.
ATTACHMENT_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "private, max-age=31536000, immutable",  # content-addressed
}


async def attachment(request, datasette):
    """A file sent with a prompt of this conversation, from logs.db."""
    conversation = await load_readable(datasette, request)
    attachment_id = request.url_vars["aid"]
    known = {
        a.id: a
        for m in conversation.messages
        for a in [*m.attachments, *(a for r in m.tool_results for a in r.attachments)]
    }
    if not ATTACHMENT_ID.match(attachment_id) or attachment_id not in known:
        raise NotFound(f"Attachment not found: {attachment_id}")
    row = await read_at_once(
        llm_database(datasette),
        lambda conn: attachments.attachment_content(conn, attachment_id),
    )
    content = row[1] if row else None
    if content is None and row and row[2]:
        content = await asyncio.to_thread(_file_if_unchanged, row[2], attachment_id)
    if content is None:
        raise NotFound("The file of this attachment is not kept in logs.db.")
    shown = known[attachment_id]
    headers = dict(ATTACHMENT_HEADERS)
    if shown.is_image:
        content_type = shown.type
    else:
        content_type = "application/octet-stream"
        name = re.sub(r'[^\w. -]', "_", shown.name or f"attachment-{attachment_id[:12]}")
        headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return Response(content, headers=headers, content_type=content_type)


def _file_if_unchanged(path: str, attachment_id: str) -> bytes | None:
    """The file `llm -a` recorded by its path, if it still holds what was
    sent (llm's attachment id is the SHA-256 of the bytes)."""
    try:
        with open(path, "rb") as fp:
            content = fp.read()
    except OSError:
        return None
    return content if hashlib.sha256(content).hexdigest() == attachment_id else None


async def title(request, datasette):
    """The rename form; or, with ``?show=title``, the title itself (after
    Cancel, and the long-poll that brings a new conversation its name)."""
    conversation = await load_writable(datasette, request, with_messages=False)
    if request.args.get("show") == "title":
        name = conversation.title
        if request.args.get("wait"):
            name = await _title_when_ready(datasette, conversation.id) or name
        focus = bool(request.args.get("focus"))  # Cancel: back to Rename
        return html_response(
            datasette, partials.title(datasette, request, conversation.id, name, True, focus)
        )
    conversation = await load_writable(datasette, request)
    return await render_title_form(datasette, request, conversation, conversation.title)


async def _title_when_ready(datasette, cid: str) -> str | None:
    for generation in list(generations(datasette).replies.values()):
        if generation.message.conversation_id == cid and generation.title is not None:
            try:
                return await asyncio.wait_for(asyncio.shield(generation.title), TITLE_WAIT)
            except Exception:
                return None
    return None


async def render_title_form(datasette, request, conversation, value, error=None):
    context = {
        "conversation": conversation,
        "value": value,
        "error": error.message if error else None,
        "suggestions": titles.suggestions(conversation),
        "max_chars": titles.MAX_TITLE_CHARS,
        **partials.message_context(datasette, conversation.id, True),
    }
    status = error.status if error else 200
    if is_htmx(request):
        html = partials.render_partial(datasette, "_title_form.html", request=request, **context)
    else:
        html = await render_page(
            datasette,
            f"{TEMPLATE_DIR}/title.html", context, request=request
        )
    return html_response(datasette, html, status=status)
