"""What every handler needs: loading a conversation it may read or write,
answering htmx or a plain browser, and showing a problem beside a form."""

import asyncio

from datasette import Forbidden, NotFound, Response

from .. import csp, drafts, partials, permissions
from ..generations import generations
from ..ids import is_id
from ..store import conversations
from ..store.database import llm_database, read_at_once
from ..store.records import Message


def is_htmx(request) -> bool:
    return request.headers.get("hx-request") == "true"


class Page(str):
    """A rendered page, with the hashes of the inline scripts other plugins
    put on it."""

    script_hashes: list[str] = []


def cached_static(datasette):
    """Datasette's ``static()``, remembered, for the pages' templates (a
    context variable overrides Jinja's global of the same name). Each call
    walks every plugin to find the file (for ``plugin=``) and resolves its
    path (``realpath``, a syscall per directory): for the plugin's four
    files and the four of Datasette's base.html, about 1.4 ms a page. Not
    remembered when Datasette is told not to cache (files may change)."""
    if not datasette.cache_headers:
        return datasette.static
    found = getattr(datasette, "_llm_htmx_static", None)
    if found is None:
        urls = {}

        def found(path, plugin=None, mount=None):
            key = (path, plugin, mount)
            if key not in urls:
                urls[key] = datasette.static(path, plugin=plugin, mount=mount)
            return urls[key]

        datasette._llm_htmx_static = found
    return found


async def render_page(datasette, template: str, context: dict, request) -> Page:
    context = {**context, "static": cached_static(datasette)}
    page = Page(await datasette.render_template(template, context, request=request))
    page.script_hashes = await csp.body_script_hashes(datasette, request, template)
    return page


def html_response(datasette, body: str, status=200, headers=None) -> Response:
    policy = csp.policy(datasette, getattr(body, "script_hashes", ()))
    headers = {**(headers or {}), "Content-Security-Policy": policy}
    return Response.html(str(body), status=status, headers=headers)


def see_other(datasette, cid: str, mid: str | None = None) -> Response:
    """303 to a conversation (at a message): the answer to a plain form post."""
    url = partials.chat_url(datasette, cid)
    return Response.redirect(f"{url}#m-{mid}" if mid else url, status=303)


def problem_beside_form(datasette, request, error) -> Response:
    """htmx: the problem alone, swapped in beside the form; what was typed
    stays where it is."""
    return html_response(
        datasette,
        partials.form_error(datasette, request, error.message),
        status=error.status,
        headers={"HX-Retarget": "#form-error", "HX-Reswap": "innerHTML"},
    )


async def load_readable(datasette, request, with_messages=True):
    """The conversation of the URL, if this actor may read it; 404 if not
    (a 403 would confirm that it exists)."""
    conversation, _ = await _load(datasette, request, with_messages)
    return conversation


async def load_writable(datasette, request, with_messages=True):
    conversation, _ = await _load(datasette, request, with_messages, writable=True)
    return conversation


async def load_writable_and(datasette, request, also, with_messages=True):
    """load_writable, and ``also(conn)``, read in the same read transaction
    as the conversation."""
    return await _load(datasette, request, with_messages, also, writable=True)


class _Failed:
    """What ``also`` raised: raised in its turn only to whom may write."""

    def __init__(self, error: Exception):
        self.error = error


async def _load(datasette, request, with_messages, also=None, writable=False):
    cid = request.url_vars["cid"]
    not_found = NotFound(f"Conversation not found: {cid}")
    if not is_id(cid):
        raise not_found

    def read(conn):
        conversation = conversations.read(conn, cid, with_messages)
        if conversation is None or also is None:
            return conversation, None
        try:
            return conversation, also(conn)
        except Exception as error:
            return conversation, _Failed(error)

    db = llm_database(datasette)
    reading = None
    if not with_messages:
        # One row, however long the conversation: read while Datasette
        # checks the permission. A refusal does not wait for it, so its
        # time says nothing of what exists.
        reading = asyncio.ensure_future(read_at_once(db, read))
        reading.add_done_callback(_retrieve)
    await permissions.require_chat_or_view(datasette, request)
    conversation, extra = await (reading if reading is not None else read_at_once(db, read))
    if conversation is None or not await permissions.can_read(
        datasette, request.actor, conversation
    ):
        raise not_found
    if writable and not await permissions.can_write(datasette, request.actor, conversation):
        raise Forbidden(
            "Only the actor who started this conversation can continue it. "
            + permissions.HOW_TO_GRANT
        )
    if isinstance(extra, _Failed):
        raise extra.error
    registry = generations(datasette)
    for message in conversation.messages:
        registry.up_to_date(message)
    return conversation, extra


def _retrieve(task) -> None:
    # a read nobody waited for (the permission was refused): its error too
    if not task.cancelled():
        task.exception()


def find_message(conversation, mid: str) -> Message:
    if is_id(mid):
        for message in conversation.messages:
            if message.id == mid:
                return message
    raise NotFound(f"Message not found: {mid}")


def answer_problem(datasette, request, error, page: str, form: dict | None = None) -> Response:
    """A form that cannot be done as sent: with htmx, the problem beside
    the form (what was typed stays where it is); without, back to the
    form's ``page``, drawn from a draft of what was typed, with the problem
    (a redirect, so a reload does not post again)."""
    if is_htmx(request):
        return problem_beside_form(datasette, request, error)
    token = drafts.keep(permissions.actor_id(request.actor), form or {}, error.message, error.status)
    return Response.redirect(datasette.urls.path(f"{page}?draft={token}"), status=303)
