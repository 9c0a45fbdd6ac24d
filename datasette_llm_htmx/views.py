"""The plugin's routes. Each view checks permission first, reads or writes
through ``storage`` and ``generation``, and draws with the shared partials.

Requests sent by htmx (``HX-Request``) get partials; plain form posts get a
303 back to a page, so every flow works without JavaScript.
"""

import functools
import time
from urllib.parse import parse_qsl

import llm
from datasette import Forbidden, NotFound, Response
from datasette.utils.asgi import PayloadTooLarge
from markupsafe import Markup
from pydantic import ValidationError

from . import csp, permissions, storage, titles
from . import export as export_formats
from .config import settings
from .generation import generations, resolve_model
from .ids import is_id, new_id
from .options import option_fields
from .partials import TEMPLATE_DIR, render_partial
from .rendering import render_ahead
from .sse import stream_message
from .storage import Message, utcnow

PAGE_SIZE = 50


class BadInput(Exception):
    """Input the user can fix: shown beside the form, with a 4xx status."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


def is_htmx(request) -> bool:
    return request.headers.get("hx-request") == "true"


def html_response(datasette, body: str, status=200, headers=None) -> Response:
    headers = {**(headers or {}), "Content-Security-Policy": csp.policy(datasette)}
    return Response.html(body, status=status, headers=headers)


def method_not_allowed(*allowed: str) -> Response:
    return Response.text(
        f"Method not allowed: use {' or '.join(allowed)}.",
        status=405,
        headers={"Allow": ", ".join(allowed)},
    )


def conversation_url(datasette, cid: str, mid: str | None = None) -> str:
    url = datasette.urls.path(f"/-/llm/{cid}")
    return f"{url}#m-{mid}" if mid else url


# Reading forms


async def read_form(request, datasette) -> dict:
    max_chars = settings(datasette).max_prompt_chars
    # Room for the longest allowed prompt, percent-encoded, and a system prompt
    limit = max(2 * 1024 * 1024, max_chars * 12 * 2)
    try:
        body = await request.post_body(max_bytes=limit)
    except PayloadTooLarge:
        raise BadInput(
            f"The prompt is too long: the limit is {max_chars:,} characters.", 413
        )
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise BadInput("The form was not sent as UTF-8 text.")


_choices_cache: dict = {}
CHOICES_TTL = 10.0  # seconds: `llm keys set` while the server runs shows soon


def model_choices(datasette):
    """(model_id, label, needs_key) for the models this site offers.

    Asking every plugin for its models and reading keys.json for each costs
    milliseconds, so the answer is kept for a few seconds."""
    allowed = settings(datasette).models
    cached = _choices_cache.get(allowed)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    choices = []
    for entry in llm.get_models_with_aliases():
        model = entry.model or entry.async_model
        if allowed is not None and model.model_id not in allowed:
            continue
        choices.append((model.model_id, str(model.model_id), _missing_key(model)))
    _choices_cache[allowed] = (time.monotonic() + CHOICES_TTL, choices)
    return choices


def _missing_key(model) -> bool:
    if not getattr(model, "needs_key", None):
        return False
    try:
        return not model.get_key()
    except llm.NeedsKeyException:
        return True


def default_model_id(datasette) -> str | None:
    configured = settings(datasette).default_model
    if configured:
        return configured
    try:
        return llm.get_default_model()
    except Exception:
        return None


def check_model(datasette, model_id: str):
    """The model, or BadInput saying why it cannot be used."""
    if not model_id:
        raise BadInput("Choose a model.")
    allowed = settings(datasette).models
    if allowed is not None and model_id not in allowed:
        raise BadInput(f"The model '{model_id}' is not available here.")
    try:
        model, _is_async = resolve_model(model_id)
    except llm.UnknownModelError:
        raise BadInput(
            f"Unknown model: '{model_id}'. Is the llm plugin that provides it installed?"
        )
    if getattr(model, "needs_key", None):
        try:
            if not model.get_key():
                raise llm.NeedsKeyException("No key found")
        except llm.NeedsKeyException:
            env = f" or set the environment variable {model.key_env_var}" if model.key_env_var else ""
            raise BadInput(
                f"The model '{model_id}' needs an API key. Set one with "
                f"'llm keys set {model.needs_key}'{env}, then send again."
            )
    return model


def check_prompt(datasette, form) -> tuple[str, str | None]:
    # Browsers send a textarea's line breaks as CR LF; llm's CLI logs LF.
    prompt = form.get("prompt", "").replace("\r\n", "\n")
    system = form.get("system", "").replace("\r\n", "\n") or None
    if not prompt.strip():
        raise BadInput("Type a prompt before sending.")
    limit = settings(datasette).max_prompt_chars
    for label, text in (("prompt", prompt), ("system prompt", system or "")):
        if len(text) > limit:
            raise BadInput(
                f"The {label} is {len(text):,} characters long: the limit is {limit:,}.",
                413,
            )
    return prompt, (system if system and system.strip() else None)


def check_options(model, form) -> dict:
    values = {
        key[len("option_") :]: value
        for key, value in form.items()
        if key.startswith("option_") and value.strip() != ""
    }
    if not values:
        return {}
    try:
        options = model.Options(**values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'options'}: {e['msg']}"
            for e in error.errors()
        )
        raise BadInput(f"Invalid option: {problems}.")
    return {k: v for k, v in options.model_dump().items() if k in values}


# Pages


async def index(request, datasette):
    if request.method != "GET":
        return method_not_allowed("GET")
    await permissions.require_chat_or_view(datasette, request)
    return await render_index(datasette, request)


async def render_index(datasette, request, *, error=None, form=None, status=200):
    before = request.args.get("before")
    if before and not is_id(before):
        before = None
    q = (request.args.get("q") or "").strip()
    everyone = await permissions.can_view_all(datasette, request.actor)
    listed, next_before = await storage.llm_database(datasette).execute_fn(
        lambda conn: storage.list_conversations(
            conn,
            actor_id=permissions.actor_id(request.actor),
            everyone=everyone,
            before=before,
            limit=PAGE_SIZE,
            query=q,
        )
    )
    conversation_list = render_partial(
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
    selected = form.get("model_id") or default_model_id(datasette)
    return html_response(
        datasette,
        await datasette.render_template(
            f"{TEMPLATE_DIR}/index.html",
            {
                "can_chat": await permissions.can_chat(datasette, request.actor),
                "models": model_choices(datasette),
                "selected_model": selected,
                "options": render_options(datasette, request, selected, form),
                "form": form,
                "error": error,
                "q": q,
                "conversation_list": conversation_list,
            },
            request=request,
        ),
        status=status,
    )


def fields_for(datasette, model_id):
    allowed = settings(datasette).models
    if not model_id or (allowed is not None and model_id not in allowed):
        return []
    return _fields_of_model(model_id)


@functools.lru_cache(maxsize=256)
def _fields_of_model(model_id):
    # a model's options schema is fixed for the life of the process
    try:
        model, _ = resolve_model(model_id)
    except llm.UnknownModelError:
        return []
    return option_fields(model)


async def model_options(request, datasette):
    """The options fields of one model, for htmx to swap in when the model
    select changes."""
    if request.method != "GET":
        return method_not_allowed("GET")
    await permissions.require_chat(datasette, request)
    model_id = request.args.get("model_id", "")
    return html_response(
        datasette,
        render_options(datasette, request, model_id, {}),
    )


def render_options(datasette, request, model_id, form) -> Markup:
    """A model's option fields, filled in from the form; open when any is."""
    return render_partial(
        datasette,
        "_options.html",
        request=request,
        fields=fields_for(datasette, model_id),
        values=form,
        model_id=model_id,
        open=any(k.startswith("option_") and v for k, v in form.items()),
    )


async def start(request, datasette):
    if request.method != "POST":
        return method_not_allowed("POST")
    await permissions.require_chat(datasette, request)
    form = {}
    try:
        form = await read_form(request, datasette)
        model = check_model(datasette, form.get("model_id", ""))
        prompt, system = check_prompt(datasette, form)
        options = check_options(model, form)
    except BadInput as error:
        if is_htmx(request):
            return await error_partial(datasette, request, error)
        return await render_index(
            datasette, request, error=error.message, form=form, status=error.status
        )
    cid = new_id()
    message = new_message(cid, model.model_id, prompt, system, options)
    await generations(datasette).start(
        message,
        actor_id=permissions.actor_id(request.actor),
        new_conversation=True,
    )
    return Response.redirect(conversation_url(datasette, cid), status=303)


async def conversation_page(request, datasette):
    if request.method != "GET":
        return method_not_allowed("GET")
    conversation = await load_readable(datasette, request)
    return await render_conversation(datasette, request, conversation)


async def render_conversation(
    datasette, request, conversation, *, error=None, form=None, status=200
):
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    context = message_context(datasette, conversation.id, can_write)
    await render_ahead([m.text for m in conversation.messages if not m.streaming])
    messages = Markup("\n").join(
        render_partial(datasette, "_message.html", request=request, message=message, **context)
        for message in conversation.messages
    )
    return html_response(
        datasette,
        await datasette.render_template(
            f"{TEMPLATE_DIR}/conversation.html",
            {
                "conversation": conversation,
                "messages": messages,
                "streaming": any(m.streaming for m in conversation.messages),
                "form": form or {},
                "error": error,
                **context,
            },
            request=request,
        ),
        status=status,
    )


def message_context(datasette, cid: str, can_write: bool) -> dict:
    """What ``_message.html`` needs besides the message itself."""
    return {
        "cid": cid,
        "chat_url": datasette.urls.path(f"/-/llm/{cid}"),
        "can_write": can_write,
        "truncate_chars": settings(datasette).truncate_prompt_chars,
    }


def render_message(datasette, request, message, can_write) -> Markup:
    return render_partial(
        datasette,
        "_message.html",
        request=request,
        message=message,
        **message_context(datasette, message.conversation_id, can_write),
    )


async def error_partial(datasette, request, error: BadInput) -> Response:
    html = render_partial(datasette, "_form_error.html", request=request, error=error.message)
    return html_response(
        datasette,
        html,
        status=error.status,
        headers={"HX-Retarget": "#form-error", "HX-Reswap": "innerHTML"},
    )


# Follow-ups, stop and retry


async def follow_up(request, datasette):
    if request.method != "POST":
        return method_not_allowed("POST")
    # Not the whole conversation: a follow-up costs the same however long it is
    conversation = await load_writable(datasette, request, with_messages=False)
    registry = generations(datasette)
    latest_model, unlogged = await storage.llm_database(datasette).execute_fn(
        lambda conn: storage.continuation(conn, conversation.id)
    )
    form = {}
    try:
        form = await read_form(request, datasette)
        if any(registry.settle(m).streaming for m in unlogged):
            raise BadInput(
                "A reply is still being written. Wait for it to finish or stop it, "
                "then send again.",
                409,
            )
        model_id = latest_model or conversation.model_id or ""
        try:
            model = check_model(datasette, model_id)
        except BadInput as error:
            raise BadInput(
                error.message + " This conversation cannot be continued until it is.",
                error.status,
            )
        prompt, _system = check_prompt(datasette, form)
        options = check_options(model, form)
    except BadInput as error:
        if is_htmx(request):
            return await error_partial(datasette, request, error)
        conversation = await load_readable(datasette, request)
        return await render_conversation(
            datasette, request, conversation, error=error.message, form=form, status=error.status
        )
    message = new_message(conversation.id, model.model_id, prompt, None, options)
    return await start_in_conversation(datasette, request, message)


async def start_in_conversation(datasette, request, message) -> Response:
    """Start a follow-up or a retry: htmx gets the new message, a plain form
    post is sent to it."""
    await generations(datasette).start(
        message, actor_id=permissions.actor_id(request.actor), new_conversation=False
    )
    if is_htmx(request):
        return html_response(datasette, render_message(datasette, request, message, True))
    url = conversation_url(datasette, message.conversation_id, message.id)
    return Response.redirect(url, status=303)


async def stop(request, datasette):
    if request.method != "POST":
        return method_not_allowed("POST")
    conversation = await load_writable(datasette, request)
    message = find_message(conversation, request.url_vars["mid"])
    registry = generations(datasette)
    if message.streaming and not await registry.stop(message.id):
        # Another process generates it: ask that process to stop it.
        await storage.llm_database(datasette).execute_write_fn(
            lambda conn: conn.execute(
                "update unlogged_messages set stop_requested = 1 where id = ?", [message.id]
            )
        )
    if is_htmx(request):
        stopped = await storage.llm_database(datasette).execute_fn(
            lambda conn: storage.read_message(conn, conversation.id, message.id)
        ) or message
        return html_response(
            datasette, render_message(datasette, request, registry.settle(stopped), True)
        )
    return Response.redirect(conversation_url(datasette, conversation.id, message.id), status=303)


async def retry(request, datasette):
    if request.method != "POST":
        return method_not_allowed("POST")
    conversation = await load_writable(datasette, request)
    failed = find_message(conversation, request.url_vars["mid"])
    try:
        if not failed.retryable:
            raise BadInput("Only a stopped, failed or interrupted reply can be retried.", 409)
        if any(m.streaming for m in conversation.messages):
            raise BadInput("A reply is still being written. Wait for it to finish.", 409)
        model = check_model(datasette, failed.model_id)
    except BadInput as error:
        if is_htmx(request):
            return await error_partial(datasette, request, error)
        return await render_conversation(
            datasette, request, conversation, error=error.message, status=error.status
        )
    message = new_message(
        conversation.id, model.model_id, failed.prompt, failed.system, failed.options
    )
    return await start_in_conversation(datasette, request, message)


async def stream(request, datasette, send, receive):
    if request.method != "GET":
        return method_not_allowed("GET")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return Response.text("Cross-site streams are refused.", status=403)
    mid = request.url_vars["mid"]
    local = generations(datasette).running.get(mid)
    if local is not None and local.message.conversation_id == request.url_vars["cid"]:
        # generated here: only who may read the conversation is needed
        conversation = await load_readable(datasette, request, with_messages=False)
        message = local.message
    else:
        conversation = await load_readable(datasette, request)
        message = find_message(conversation, mid)
    can_write = await permissions.can_write(datasette, request.actor, conversation)

    async def render_final(final, new_title=None):
        await render_ahead([final.text])
        html = render_message(datasette, request, final, can_write)
        if new_title:  # the first reply named the conversation: show it
            html += "\n" + render_partial(
                datasette, "_title.html", request=request, title=new_title, oob=True,
                **message_context(datasette, conversation.id, can_write),
            )
        return html

    await stream_message(
        datasette, request, send, receive, conversation.id, message.id, render_final
    )
    return None


async def whole_prompt(request, datasette):
    """The whole prompt of a truncated message: a fragment for htmx, a page
    without."""
    if request.method != "GET":
        return method_not_allowed("GET")
    conversation = await load_readable(datasette, request)
    message = find_message(conversation, request.url_vars["mid"])
    can_write = await permissions.can_write(datasette, request.actor, conversation)
    context = {
        "conversation": conversation,
        "message": message,
        "limit": None,
        **message_context(datasette, conversation.id, can_write),
    }
    if is_htmx(request):
        html = render_partial(datasette, "_prompt.html", request=request, **context)
    else:
        html = await datasette.render_template(
            f"{TEMPLATE_DIR}/prompt.html", context, request=request
        )
    return html_response(datasette, html)


async def export(request, datasette):
    if request.method != "GET":
        return method_not_allowed("GET")
    conversation = await load_readable(datasette, request)
    if request.url_vars["format"] == "md":
        body, content_type = export_formats.to_markdown(conversation), "text/markdown"
    else:
        body, content_type = export_formats.to_json(conversation), "application/json"
    return Response(
        body,
        headers=export_formats.EXPORT_HEADERS,
        content_type=f"{content_type}; charset=utf-8",
    )


# Titles


async def title(request, datasette):
    if request.method not in ("GET", "POST"):
        return method_not_allowed("GET", "POST")
    conversation = await load_writable(datasette, request)
    context = message_context(datasette, conversation.id, True)
    if request.method == "GET":
        if request.args.get("show") == "title":
            return html_response(
                datasette,
                render_partial(
                    datasette, "_title.html", request=request, title=conversation.title, **context
                ),
            )
        return await render_title_form(datasette, request, conversation, conversation.title)
    form = {}
    try:
        form = await read_form(request, datasette)
        new_title = " ".join(form.get("title", "").split())
        if not new_title:
            raise BadInput("Type a title, or pick a suggestion.")
        if len(new_title) > titles.MAX_TITLE_CHARS:
            raise BadInput(f"A title can have at most {titles.MAX_TITLE_CHARS} characters.")
    except BadInput as error:
        return await render_title_form(
            datasette, request, conversation, form.get("title", ""), error=error
        )
    await storage.llm_database(datasette).execute_write_fn(
        lambda conn: storage.rename(conn, conversation.id, new_title)
    )
    if is_htmx(request):
        return html_response(
            datasette,
            render_partial(datasette, "_title.html", request=request, title=new_title, **context),
        )
    return Response.redirect(conversation_url(datasette, conversation.id), status=303)


async def render_title_form(datasette, request, conversation, value, error=None):
    context = {
        "conversation": conversation,
        "value": value,
        "error": error.message if error else None,
        "suggestions": titles.suggestions(conversation),
        "max_chars": titles.MAX_TITLE_CHARS,
        **message_context(datasette, conversation.id, True),
    }
    status = error.status if error else 200
    if is_htmx(request):
        html = render_partial(datasette, "_title_form.html", request=request, **context)
    else:
        html = await datasette.render_template(
            f"{TEMPLATE_DIR}/title.html", context, request=request
        )
    return html_response(datasette, html, status=status)


# Helpers


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


async def load_readable(datasette, request, with_messages=True):
    cid = request.url_vars["cid"]
    not_found = NotFound(f"Conversation not found: {cid}")
    if not is_id(cid):
        raise not_found
    await permissions.require_chat_or_view(datasette, request)
    conversation = await storage.llm_database(datasette).execute_fn(
        lambda conn: storage.read_conversation(conn, cid, with_messages)
    )
    if conversation is None or not await permissions.can_read(
        datasette, request.actor, conversation
    ):
        raise not_found
    registry = generations(datasette)
    for message in conversation.messages:
        registry.settle(message)
    return conversation


async def load_writable(datasette, request, with_messages=True):
    conversation = await load_readable(datasette, request, with_messages)
    if not await permissions.can_write(datasette, request.actor, conversation):
        raise Forbidden(
            "Only the actor who started this conversation can continue it. "
            + permissions.HOW_TO_GRANT
        )
    return conversation


def find_message(conversation, mid: str) -> Message:
    if is_id(mid):
        for message in conversation.messages:
            if message.id == mid:
                return message
    raise NotFound(f"Message not found: {mid}")
