"""Steering a conversation: regenerate a reply, edit and resend a prompt,
carry the last exchange into a new conversation, delete a conversation.

Regenerate and edit fork the conversation the way llm 0.36 stores forks: a
new thread that points at the message before the turn's own input
(``threads.forked_from``), into which the turn's input (or its edit) is
sent again. The fork's URL names it; the turns that answered the same
history are its alternatives, one link away.
"""

import llm
from datasette import Forbidden, Response

from .. import partials, permissions, rendering
from ..errors import ShownError
from ..forms import BadInput, check_model, check_prompt, read_form
from ..generations import Fork, generations
from ..ids import new_id
from ..store import legacy, llm_logs, threads, unlogged
from ..store.database import llm_database, read_at_once, write_within
from ..store.records import Fragment
from ..events import ConversationDeleted
from .actions import new_message
from .common import (
    answer_problem,
    find_message,
    html_response,
    is_htmx,
    load_readable,
    load_writable,
    render_page,
)

DELETE_WAIT = 10.0


async def regenerate(request, datasette):
    """A new alternative of a reply: its prompt, sent again, in a fork."""
    conversation = await load_writable(datasette, request)
    target = find_message(conversation, request.url_vars["mid"])
    return await _resend(datasette, request, conversation, target, target.prompt)


async def edit(request, datasette):
    """GET: the prompt, in a form to edit (in place with htmx, a page
    without). POST: the edited prompt, sent in a fork."""
    conversation = await load_writable(datasette, request)
    target = find_message(conversation, request.url_vars["mid"])
    if request.method == "GET":
        return await _edit_form(datasette, request, conversation, target, target.prompt)
    form = {}
    try:
        form, _files = await read_form(request, datasette)
        prompt, _system = check_prompt(datasette, form)
    except ShownError as error:
        return await _edit_form(datasette, request, conversation, target, form.get("prompt", ""), error)
    return await _resend(datasette, request, conversation, target, prompt)


async def _edit_form(datasette, request, conversation, target, value, error=None):
    context = {
        "conversation": conversation,
        "message": target,
        "value": value,
        "error": error.message if error else None,
        **partials.message_context(datasette, conversation.id, True),
    }
    if is_htmx(request) and error is None:
        html = partials.render_partial(datasette, "_edit_form.html", request=request, **context)
    else:
        html = await render_page(
            datasette,
            f"{partials.TEMPLATE_DIR}/edit.html", context, request=request
        )
    return html_response(datasette, html, status=error.status if error else 200)


async def _resend(datasette, request, conversation, target, prompt):
    try:
        if target.in_flight or any(m.in_flight for m in conversation.messages):
            raise BadInput("A reply is still being written. Wait for it to finish or stop it.", 409)
        if target.status != "done":
            raise BadInput("This reply did not finish: use Retry to run it again.", 409)
        model = await check_model(datasette, target.model_id, request.actor)
        fork = await read_at_once(
            llm_database(datasette),
            lambda conn: _fork_before(conn, conversation, target),
        )
        message = new_message(new_id(), model.model_id, prompt, target.system, target.options)
        message.fragments = target.fragments
        message.attachments = target.attachments
        message.show_system = target.show_system
        await generations(datasette).start(
            message,
            actor=request.actor,
            new_conversation=False,
            resend=True,
            fork=fork,
        )
    except ShownError as error:
        return answer_problem(datasette, request, error, f"/-/llm/{conversation.id}")
    return _go_to(datasette, request, message.conversation_id, message.id)


def _fork_before(conn, conversation, target) -> Fork:
    """Where a regenerate or an edit of ``target`` forks: just before its
    own input, in the thread shown."""
    name = conversation.name
    root = conversation.root_id or conversation.id
    if target.thread_id is not None:
        _thread, tip = threads.fork_point_of_turn(conn, target.id)
        return Fork(tip=tip, forked_from=conversation.id, root_id=root, name=name)
    # a pre-0.32 conversation: its history before the target, into the new
    # tables, and the fork from there
    history = []
    earlier = [m for m in legacy.legacy_messages(conn, root) if m.id < target.id]
    system = (earlier[0].system if earlier else None) or target.system
    if system:
        history.append(llm.system(system))
    for message in earlier:
        history += [llm.user(message.prompt), llm.assistant(message.text)]
    return Fork(tip=None, forked_from=root, root_id=root, name=name, legacy_history=history)


def _go_to(datasette, request, cid, mid=None):
    """To another page: htmx follows the redirect as a full page load."""
    url = partials.chat_url(datasette, cid) + (f"#m-{mid}" if mid else "")
    if is_htmx(request):
        return Response.text("", status=200, headers={"HX-Redirect": url})
    return Response.redirect(url, status=303)


async def carry(request, datasette):
    """A conversation that outgrew its model's context window goes on in a
    new one: the last exchange comes with it, as a fragment, and the prompt
    that did not fit is sent again there."""
    conversation = await load_writable(datasette, request)
    failed = find_message(conversation, request.url_vars["mid"])
    done = [m for m in conversation.messages if m.status == "done" and m.id < failed.id]
    try:
        model = await check_model(datasette, failed.model_id, request.actor)
        carried = []
        if done:
            last = done[-1]
            carried.append(
                Fragment(
                    source=f"{conversation.title} ({conversation.id}), its last exchange",
                    content=f"Earlier, I asked:\n{last.prompt}\n\nYou answered:\n{last.text}",
                )
            )
        cid = new_id()
        message = new_message(cid, model.model_id, failed.prompt, failed.system, failed.options)
        message.fragments = carried
        message.attachments = failed.attachments
        await generations(datasette).start(
            message,
            actor=request.actor,
            new_conversation=True,
            resend=True,
        )
    except ShownError as error:
        return answer_problem(datasette, request, error, f"/-/llm/{conversation.id}")
    return _go_to(datasette, request, cid)


async def delete(request, datasette):
    """GET: a confirmation (a page, or a fragment for htmx). POST: delete
    the conversation, every fork of it included."""
    conversation = await load_readable(datasette, request, with_messages=False)
    if not await permissions.can_delete(datasette, request.actor, conversation):
        raise Forbidden("Only the actor who started this conversation can delete it.")
    context = {"conversation": conversation, **partials.message_context(datasette, conversation.id, True)}
    if request.method == "GET":
        template = "_delete_form.html" if is_htmx(request) else "delete.html"
        if is_htmx(request):
            html = partials.render_partial(datasette, template, request=request, **context)
        else:
            html = await render_page(
            datasette,
                f"{partials.TEMPLATE_DIR}/{template}", context, request=request
            )
        return html_response(datasette, html)
    root = conversation.root_id or conversation.id
    registry = generations(datasette)
    try:
        family = await read_at_once(llm_database(datasette), lambda conn: threads.family_ids(conn, root))
        if any(g.message.conversation_id in family for g in registry.in_flight()):
            raise BadInput("A reply is still being written here. Stop it, then delete.", 409)
        await write_within(
            llm_database(datasette),
            lambda conn: _delete(conn, family),
            DELETE_WAIT,
        )
    except ShownError as error:
        context["error"] = error.message
        html = await render_page(
            datasette,
            f"{partials.TEMPLATE_DIR}/delete.html", context, request=request
        )
        return html_response(datasette, html, status=error.status)
    for cid in family:
        registry.conversations.pop(cid, None)
    await rendering.forget(family)  # its rendered replies, on disk
    await datasette.track_event(ConversationDeleted(request.actor, root))
    if is_htmx(request):
        return Response.text("", headers={"HX-Redirect": datasette.urls.path("/-/llm")})
    return Response.redirect(datasette.urls.path("/-/llm?deleted=1"), status=303)


def _delete(conn, family: list[str]) -> None:
    llm_logs.delete_threads(conn, family)
    unlogged.forget(conn, family)

