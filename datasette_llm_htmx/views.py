"""The plugin's routes. Each view checks permission first, reads or writes
through ``storage`` and ``generation``, and draws with the shared partials.

Requests sent by htmx (``HX-Request``) get partials; plain form posts get a
303 back to a page, so every flow works without JavaScript.
"""

from urllib.parse import parse_qsl

import llm
from datasette import Forbidden, NotFound, Response
from datasette.utils.asgi import PayloadTooLarge
from pydantic import ValidationError

from . import csp, permissions, storage
from .config import settings
from .generation import generations, resolve_model
from .ids import is_id, new_id
from .partials import TEMPLATE_DIR, render_partial
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


def model_choices(datasette):
    """(model_id, label, needs_key) for the models this site offers."""
    allowed = settings(datasette).models
    choices = []
    for entry in llm.get_models_with_aliases():
        model = entry.model or entry.async_model
        if allowed is not None and model.model_id not in allowed:
            continue
        choices.append((model.model_id, str(model.model_id), _missing_key(model)))
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
    everyone = await permissions.can_view_all(datasette, request.actor)
    listed, next_before = await storage.llm_database(datasette).execute_fn(
        lambda conn: storage.list_conversations(
            conn,
            actor_id=permissions.actor_id(request.actor),
            everyone=everyone,
            before=before,
            limit=PAGE_SIZE,
        )
    )
    form = form or {}
    return html_response(
        datasette,
        await datasette.render_template(
            f"{TEMPLATE_DIR}/index.html",
            {
                "can_chat": await permissions.can_chat(datasette, request.actor),
                "models": model_choices(datasette),
                "selected_model": form.get("model_id") or default_model_id(datasette),
                "form": form,
                "error": error,
                "conversations": listed,
                "next_before": next_before,
            },
            request=request,
        ),
        status=status,
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
    return html_response(
        datasette,
        await datasette.render_template(
            f"{TEMPLATE_DIR}/conversation.html",
            {
                "conversation": conversation,
                "streaming": any(m.streaming for m in conversation.messages),
                "can_write": can_write,
                "form": form or {},
                "error": error,
                **message_context(datasette, conversation.id, can_write),
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
    }


async def render_message(datasette, request, message, can_write) -> str:
    return await render_partial(
        datasette,
        "_message.html",
        request=request,
        message=message,
        **message_context(datasette, message.conversation_id, can_write),
    )


async def error_partial(datasette, request, error: BadInput) -> Response:
    html = await render_partial(datasette, "_form_error.html", request=request, error=error.message)
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
    conversation = await load_writable(datasette, request)
    form = {}
    try:
        form = await read_form(request, datasette)
        if any(m.streaming for m in conversation.messages):
            raise BadInput(
                "A reply is still being written. Wait for it to finish or stop it, "
                "then send again.",
                409,
            )
        model_id = conversation.model_id or ""
        if conversation.messages:
            model_id = conversation.messages[-1].model_id
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
        return await render_conversation(
            datasette, request, conversation, error=error.message, form=form, status=error.status
        )
    message = new_message(conversation.id, model.model_id, prompt, None, options)
    await generations(datasette).start(
        message, actor_id=permissions.actor_id(request.actor), new_conversation=False
    )
    if is_htmx(request):
        return html_response(datasette, await render_message(datasette, request, message, True))
    return Response.redirect(conversation_url(datasette, conversation.id, message.id), status=303)


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
        conversation = await load_readable(datasette, request)
        message = find_message(conversation, message.id)
        return html_response(datasette, await render_message(datasette, request, message, True))
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
    await generations(datasette).start(
        message, actor_id=permissions.actor_id(request.actor), new_conversation=False
    )
    if is_htmx(request):
        return html_response(datasette, await render_message(datasette, request, message, True))
    return Response.redirect(conversation_url(datasette, conversation.id, message.id), status=303)


async def stream(request, datasette, send, receive):
    if request.method != "GET":
        return method_not_allowed("GET")
    if request.headers.get("sec-fetch-site") == "cross-site":
        return Response.text("Cross-site streams are refused.", status=403)
    conversation = await load_readable(datasette, request)
    message = find_message(conversation, request.url_vars["mid"])
    can_write = await permissions.can_write(datasette, request.actor, conversation)

    async def render_final(final):
        return await render_message(datasette, request, final, can_write)

    await stream_message(
        datasette, request, send, receive, conversation.id, message.id, render_final
    )
    return None


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


async def load_readable(datasette, request):
    cid = request.url_vars["cid"]
    not_found = NotFound(f"Conversation not found: {cid}")
    if not is_id(cid):
        raise not_found
    await permissions.require_chat_or_view(datasette, request)
    conversation = await storage.llm_database(datasette).execute_fn(
        lambda conn: storage.read_conversation(conn, cid)
    )
    if conversation is None or not await permissions.can_read(
        datasette, request.actor, conversation
    ):
        raise not_found
    generations(datasette).settle(conversation)
    return conversation


async def load_writable(datasette, request):
    conversation = await load_readable(datasette, request)
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
