"""Reading what a form sent, and checking it. What fails a check is a
BadInput: a message for beside the form, and a 4xx status."""

from urllib.parse import parse_qsl

import llm
from datasette.utils.asgi import PayloadTooLarge
from pydantic import ValidationError

from . import catalog
from .config import settings
from .errors import ShownError
from .safe_text import valid_text


class BadInput(ShownError):
    """Input the user can fix."""


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


def check_model(datasette, model_id: str):
    """The model, or BadInput saying why it cannot be used."""
    if not model_id:
        raise BadInput("Choose a model.")
    if not catalog.is_offered(datasette, model_id):
        raise BadInput(f"The model '{model_id}' is not available here.")
    try:
        model, _is_async = catalog.resolve_model(model_id)
    except llm.UnknownModelError:
        raise BadInput(
            f"Unknown model: '{model_id}'. Is the llm plugin that provides it installed?"
        )
    if catalog.missing_key(model):
        raise BadInput(
            f"The model '{model_id}' needs an API key. " + catalog.how_to_set_key(model)
        )
    return model


def check_prompt(datasette, form) -> tuple[str, str | None]:
    # Browsers send a textarea's line breaks as CR LF; llm's CLI logs LF.
    prompt = valid_text(form.get("prompt", "").replace("\r\n", "\n"))
    system = valid_text(form.get("system", "").replace("\r\n", "\n")) or None
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


def check_title(form, max_chars: int) -> str:
    title = " ".join(form.get("title", "").split())
    if not title:
        raise BadInput("Type a title, or pick a suggestion.")
    if len(title) > max_chars:
        raise BadInput(f"A title can have at most {max_chars} characters.")
    return title
