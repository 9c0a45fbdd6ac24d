"""Drawing the plugin's partials: one template file for each thing drawn,
used alike by the pages (which insert them rendered ahead), the htmx swaps
and the SSE events."""

import weakref

from markupsafe import Markup

from . import catalog
from .config import settings

TEMPLATE_DIR = "llm_htmx"

_sync_environments: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _sync_environment(env):
    # Datasette's environment is async because its base template awaits.
    # The partials await nothing; rendered synchronously they skip an
    # awaitable check on every expression, and draw twice as fast.
    sync = _sync_environments.get(env)
    if sync is None:
        sync = _sync_environments[env] = env.overlay(enable_async=False)
    return sync


def render_partial(datasette, name: str, request=None, **context) -> Markup:
    env = _sync_environment(datasette.get_jinja_environment(request))
    template = env.get_template(f"{TEMPLATE_DIR}/{name}")
    context.setdefault("urls", datasette.urls)
    return Markup(template.render(context))


def chat_url(datasette, cid: str) -> str:
    return datasette.urls.path(f"/-/llm/{cid}")


def message_context(datasette, cid: str, can_write: bool) -> dict:
    """What ``_message.html`` (and the partials it includes) need besides
    the message itself."""
    return {
        "cid": cid,
        "chat_url": chat_url(datasette, cid),
        "can_write": can_write,
        "truncate_chars": settings(datasette).truncate_prompt_chars,
    }


def message(datasette, request, message, can_write: bool, context=None, kept=()) -> Markup:
    """One message. ``kept``: the ids of reply texts the browser shows
    already, drawn as empty elements htmx keeps (for a "done" event)."""
    context = context or message_context(datasette, message.conversation_id, can_write)
    live = live_text(datasette, message) if message.in_flight else None
    return render_partial(
        datasette, "_message.html", request=request, message=message, live=live, kept=kept, **context
    )


def part_id(mid: str, index: int) -> str:
    """The id of a reply's part in the page (as _message.html makes it)."""
    return f"m-{mid}-part-{index}"


def live_text(datasette, message) -> dict | None:
    """How a page draws the text a reply generated here is writing: the
    blocks its streams have finished (rendered already), then the rest as
    the tail. None otherwise: the stream's first snapshot will draw it."""
    from .generations import generations  # which imports the views' helpers

    generation = generations(datasette).replies.get(message.id)
    parts = message.reply_parts
    if generation is None or not parts or parts[-1].kind != "text" or not generation.parts:
        return None
    live = getattr(generation.parts[-1], "live", None)
    text = parts[-1].text
    if live is None or generation.parts[-1].kind != "text" or len(text) < live.length:
        return None
    return {
        "blocks": Markup("".join(live.blocks)),
        "tail": None if live.complete else text[live.shown_from :],
        "code": live.code,
    }


def title(datasette, request, cid: str, text: str, can_write: bool, focus=False) -> Markup:
    return render_partial(
        datasette,
        "_title.html",
        request=request,
        title=text,
        focus=focus,
        **message_context(datasette, cid, can_write),
    )


def title_update(datasette, request, cid: str) -> Markup:
    """Out of band, with a first reply's done event: fetches the new title
    when the title model has given it."""
    return render_partial(
        datasette, "_title_update.html", request=request, chat_url=chat_url(datasette, cid)
    )


def options(datasette, request, model_id, form) -> Markup:
    """A model's option fields, filled in from the form (open when any is),
    and its file input, if it reads files."""
    return render_partial(
        datasette,
        "_options.html",
        request=request,
        fields=catalog.fields_for(datasette, model_id),
        values=form,
        model_id=model_id,
        open=any(k.startswith("option_") and v for k, v in form.items()),
        **attachment_field(datasette, model_id),
    )


def attachment_field(datasette, model_id) -> dict:
    """What ``_attachment_field.html`` needs: the types the model reads."""
    return {
        "accept": catalog.attachment_types(datasette, model_id),
        "max_bytes": settings(datasette).max_attachment_bytes,
    }


def form_error(datasette, request, text: str) -> Markup:
    return render_partial(datasette, "_form_error.html", request=request, error=text)


# What the live region says as a reply starts and ends (never each token).
ANNOUNCEMENTS = {
    "pending": "Generating…",
    "running": "Generating…",
    "done": "Reply complete",
    "stopped": "Reply stopped",
    "failed": "Reply failed",
    "interrupted": "Reply interrupted",
}


def chat_status(datasette, request, status: str) -> Markup:
    """The live region, out of band, for a reply that starts or ends."""
    return render_partial(
        datasette, "_chat_status.html", request=request, oob=True,
        status_text=ANNOUNCEMENTS.get(status, ""),
    )


def system_was(datasette, request, system: str | None) -> Markup:
    """The system prompt the follow-up form shows, out of band once it has
    changed, so the next follow-up does not change it again."""
    return render_partial(datasette, "_system_was.html", request=request, system=system, oob=True)


# A sent form's last error goes once something new is accepted.
CLEAR_FORM_ERROR = Markup('<div id="form-error" hx-swap-oob="innerHTML"></div>')


# Where a partial's long content goes when it is sent in pieces: the partial
# is drawn around this marker (and BLOCKS_MARKER), and split at it.
MARKER = Markup("\x00llm-htmx-content\x00")
BLOCKS_MARKER = Markup("\x00llm-htmx-blocks\x00")


def around(html: str) -> tuple[str, str]:
    """(before, after) the marker in a partial drawn with it."""
    before, _, after = html.partition(MARKER)
    return before, after


def split_at(html: str, *markers) -> list[str]:
    """The pieces of a partial between the markers it was drawn with."""
    pieces = []
    for marker in markers:
        before, found, html = html.partition(marker)
        assert found, "a partial lost its marker"
        pieces.append(before)
    return pieces + [html]


def streaming_parts_around(datasette, mid: str, parts) -> tuple[str, str]:
    """A reply being written, drawn around the reasoning of its last part."""
    return around(
        render_partial(datasette, "_streaming_parts.html", parts=parts, mid=mid, current=MARKER)
    )


def finished_parts(datasette, mid: str, parts, body=None) -> Markup:
    """A finished reply's parts, for a stream that began after its end
    (``body``: a marker in place of its one text's HTML)."""
    extra = {} if body is None else {"body": body}
    return render_partial(
        datasette, "_streaming_parts.html", parts=parts, mid=mid, complete=True, **extra
    )


def streaming_parts_pieces(datasette, mid: str, parts, writing: bool, code: bool) -> list[str]:
    """A reply being written whose last part is text: the pieces around its
    blocks and its tail (around its blocks only once it is complete)."""
    live = {"blocks": BLOCKS_MARKER, "tail": MARKER if writing else None, "code": code}
    html = render_partial(datasette, "_streaming_parts.html", parts=parts, mid=mid, live=live)
    return split_at(html, BLOCKS_MARKER, MARKER) if writing else split_at(html, BLOCKS_MARKER)


def streaming_blocks_pieces(datasette, writing: bool, code: bool) -> list[str]:
    """A "block" event: the pieces around the blocks and the tail after
    them (the blocks only once the text is complete)."""
    html = render_partial(
        datasette, "_streaming_blocks.html",
        blocks=BLOCKS_MARKER, tail=MARKER if writing else None, code=code,
    )
    return split_at(html, BLOCKS_MARKER, MARKER) if writing else split_at(html, BLOCKS_MARKER)


def message_around(datasette, request, message, can_write: bool) -> tuple[str, str] | None:
    """A finished message drawn around its reply's HTML, if that is one
    text part (the long case); None otherwise."""
    if [part.kind for part in message.reply_parts].count("text") != 1:
        return None
    return around(
        render_partial(
            datasette,
            "_message.html",
            request=request,
            message=message,
            body=MARKER,
            **message_context(datasette, message.conversation_id, can_write),
        )
    )
