"""What POST changes: start a conversation, follow up, stop, retry, rename.

Sent by htmx (``HX-Request``), an action answers a partial; a plain form
post gets a 303 back to a page, so every flow works without JavaScript.
A problem (bad input, a busy database, too many replies at once) comes back
beside the form with everything typed kept.
"""

import dataclasses

from .. import about, partials, permissions, titles
from ..config import settings
from ..errors import ShownError
from ..events import ConversationRenamed
from ..forms import (
    BadInput,
    check_attachments,
    check_model,
    check_options,
    check_prompt,
    check_title,
    read_form,
)
from ..generations import generations
from ..ids import new_id
from ..store import conversations, llm_logs, unlogged
from ..store.database import llm_database, read_at_once, write_within
from ..store.records import Message, utcnow
from .common import (
    answer_problem,
    find_message,
    html_response,
    is_htmx,
    load_writable,
    load_writable_and,
    see_other,
)
from .pages import render_title_form

RENAME_WAIT = 5.0  # seconds a rename waits for another process's write lock


async def start(request, datasette):
    await permissions.require_chat(datasette, request)
    form = {}
    try:
        form, files = await read_form(request, datasette)
        model = await check_model(datasette, form.get("model_id", ""), request.actor)
        prompt, system = check_prompt(datasette, form)
        options = check_options(model, form)
        uploads = await check_attachments(datasette, model, files)
        cid = new_id()
        message = new_message(cid, model.model_id, prompt, system, options)
        if form.get("about_kind"):  # chat about a table, a query or a row
            message.fragments = [
                await about.fragment_for(
                    datasette,
                    request.actor,
                    form["about_kind"],
                    form.get("about_page", ""),
                    settings(datasette).about_rows,
                )
            ]
        await generations(datasette).start(
            message,
            actor=request.actor,
            new_conversation=True,
            uploads=uploads,
        )
    except ShownError as error:
        return answer_problem(datasette, request, error, "/-/llm", form)
    return see_other(datasette, cid)


async def follow_up(request, datasette):
    # Not the whole conversation: a follow-up costs the same however long it is
    cid = request.url_vars["cid"]
    conversation, (latest_model, pending) = await load_writable_and(
        datasette, request, lambda conn: conversations.continuation(conn, cid), with_messages=False
    )
    registry = generations(datasette)
    form = {}
    try:
        form, files = await read_form(request, datasette)
        if any(registry.up_to_date(m).in_flight for m in pending):
            raise BadInput(
                "A reply is still being written. Wait for it to finish or stop it, "
                "then send again.",
                409,
            )
        # the model and system prompt can change from here on (the follow-up
        # form's settings); the page sends the system prompt it showed
        chosen = form.get("model_id") or latest_model or conversation.model_id or ""
        try:
            model = await check_model(datasette, chosen, request.actor)
        except BadInput as error:
            if form.get("model_id"):
                raise
            raise BadInput(
                error.message + " This conversation cannot be continued until it is.",
                error.status,
            )
        prompt, system = check_prompt(datasette, form)
        new_system = bool(system) and system != form.get("system_was", "").replace("\r\n", "\n")
        options = check_options(model, form)
        uploads = await check_attachments(datasette, model, files)
        message = new_message(
            conversation.id, model.model_id, prompt, system if new_system else None, options
        )
        await registry.start(
            message,
            actor=request.actor,
            new_conversation=False,
            uploads=uploads,
            new_system=new_system,
        )
    except ShownError as error:
        return answer_problem(datasette, request, error, f"/-/llm/{conversation.id}", form)
    return _started(datasette, request, message)


async def retry(request, datasette):
    conversation = await load_writable(datasette, request)
    failed = find_message(conversation, request.url_vars["mid"])
    try:
        if not failed.retryable:
            raise BadInput("Only a stopped, failed or interrupted reply can be retried.", 409)
        if any(m.in_flight for m in conversation.messages):
            raise BadInput("A reply is still being written. Wait for it to finish.", 409)
        model = await check_model(datasette, failed.model_id, request.actor)
        message = new_message(
            conversation.id, model.model_id, failed.prompt, failed.system, failed.options
        )
        # what the failed prompt carried, sent again; its system prompt is
        # on the page already, above
        message.fragments = failed.fragments
        message.attachments = failed.attachments
        message.show_system = False
        await generations(datasette).start(
            message,
            actor=request.actor,
            new_conversation=False,
            resend=True,
        )
    except ShownError as error:
        return answer_problem(datasette, request, error, f"/-/llm/{conversation.id}")
    return _started(datasette, request, message)


def _started(datasette, request, message):
    """htmx gets the new message, streaming; a plain form post is sent to it."""
    if is_htmx(request):
        # with whatever the model has said already (a fast model's first
        # words come with this answer, not a request later); a copy, as the
        # generation's own message is its to change
        shown = generations(datasette).up_to_date(dataclasses.replace(message))
        html = (
            partials.message(datasette, request, shown, True)
            + partials.chat_status(datasette, request, message.status)
            + partials.CLEAR_FORM_ERROR
        )
        if message.system:  # the system prompt changed: the page knows it now
            html += partials.system_was(datasette, request, message.system)
        return html_response(datasette, html)
    return see_other(datasette, message.conversation_id, message.id)


async def stop(request, datasette):
    conversation = await load_writable(datasette, request)
    message = find_message(conversation, request.url_vars["mid"])
    registry = generations(datasette)
    if message.in_flight and not await registry.stop(message.id):
        # Another process generates it: ask that process to stop it.
        try:
            await write_within(
                llm_database(datasette),
                lambda conn: unlogged.request_stop(conn, message.id),
                RENAME_WAIT,
            )
        except ShownError as error:
            return answer_problem(datasette, request, error, f"/-/llm/{conversation.id}")
    if is_htmx(request):
        stopped = await read_at_once(
            llm_database(datasette),
            lambda conn: conversations.message(conn, conversation.id, message.id),
        )
        shown = registry.up_to_date(stopped or message)
        return html_response(
            datasette,
            partials.message(datasette, request, shown, True)
            + partials.chat_status(datasette, request, shown.status),
        )
    return see_other(datasette, conversation.id, message.id)


async def rename(request, datasette):
    conversation = await load_writable(datasette, request)
    form = {}
    try:
        form, _files = await read_form(request, datasette)
        new_title = check_title(form, titles.MAX_TITLE_CHARS)
        await write_within(
            llm_database(datasette),
            lambda conn: llm_logs.rename(conn, conversation.id, new_title),
            RENAME_WAIT,
        )
    except ShownError as error:
        return await render_title_form(
            datasette, request, conversation, form.get("title", ""), error=error
        )
    await datasette.track_event(ConversationRenamed(request.actor, conversation.id))
    if is_htmx(request):
        return html_response(
            datasette,
            partials.title(datasette, request, conversation.id, new_title, True, focus=True),
        )
    return see_other(datasette, conversation.id)


def new_message(cid, model_id, prompt, system, options) -> Message:
    return Message(
        id=new_id(),
        conversation_id=cid,
        model_id=model_id,
        prompt=prompt,
        system=system,
        text="",
        status="pending",
        datetime_utc=utcnow(),
        options=options,
    )
