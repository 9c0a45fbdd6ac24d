"""Reading what a form sent, and checking it. What fails a check is a
BadInput: a message for beside the form, and a 4xx status."""

import llm
from datasette.utils.asgi import BadRequest, PayloadTooLarge
from pydantic import ValidationError

from . import catalog, llm_layer
from .config import settings
from .errors import ShownError
from .safe_text import valid_text


class BadInput(ShownError):
    """Input the user can fix."""


async def read_form(request, datasette) -> tuple[dict, list]:
    """The text fields of a form (urlencoded or multipart) and the files it
    carried, within Datasette's max_post_body_bytes and the plugin's limits."""
    config = settings(datasette)
    max_chars = config.max_prompt_chars
    try:
        form = await request.form(
            files=True,
            max_request_size=request.max_post_body_bytes,
            # files are checked against max_attachment_bytes once the text
            # fields are read: a refusal then keeps what was typed
            max_file_size=request.max_post_body_bytes,
            # a prompt of max_prompt_chars characters, four bytes each at most
            max_field_size=max_chars * 4 + 1024,
            max_files=MAX_FILES,
        )
    except (BadRequest, PayloadTooLarge) as error:
        raise _too_large(str(error), request, config)
    fields = {}
    files = []
    for key, value in form.items():
        if isinstance(value, str):
            fields[key] = value  # the last of a repeated field, as before
        elif key == "attachment" and value.filename:
            files.append(value)
    return fields, files


MAX_FILES = 10


def _too_large(problem: str, request, config) -> BadInput:
    megabytes = lambda n: f"{n / 1024 / 1024:,.1f} MB"  # noqa: E731
    if "too large" in problem.lower():
        return BadInput(
            f"What you sent is larger than {megabytes(request.max_post_body_bytes)}, the most "
            f"this site accepts (a prompt can have {config.max_prompt_chars:,} characters).",
            413,
        )
    if "Too many files" in problem:
        return BadInput(f"Attach at most {MAX_FILES} files at a time.", 413)
    return BadInput(f"The form could not be read: {problem}.")


async def check_attachments(datasette, model, files) -> list[tuple]:
    """(llm.Attachment, file name) for each file, if the model reads its
    type and it is not too large: the type is found from the file's bytes,
    not from what the browser says."""
    if not files:
        return []
    limit = settings(datasette).max_attachment_bytes
    for upload in files:
        if upload.size > limit:
            raise BadInput(
                f"{upload.filename!r} is larger than {limit / 1024 / 1024:,.1f} MB, the most "
                "this site accepts. Attach a smaller file.",
                413,
            )
    accepted = sorted(getattr(model, "attachment_types", None) or [])
    if not accepted:
        raise BadInput(f"The model '{model.model_id}' cannot read attached files.")
    uploads = []
    for upload in files:
        content = await upload.read()
        await upload.close()
        attachment = llm.Attachment(content=content)
        try:
            kind = attachment.resolve_type()
        except Exception:
            kind = None
        kind = kind or upload.content_type
        if kind not in accepted:
            raise BadInput(
                f"The model '{model.model_id}' cannot read {upload.filename!r}"
                f" ({kind or 'unknown type'}): it reads {', '.join(accepted)}."
            )
        attachment.type = kind
        uploads.append((attachment, valid_text(upload.filename)[:200]))
    return uploads


async def check_model(datasette, model_id: str, actor):
    """The model, or BadInput saying why ``actor`` cannot use it."""
    if not model_id:
        raise BadInput("Choose a model.")
    if llm_layer.installed(datasette):
        choice = {c[0]: c for c in await catalog.offered(datasette, actor)}.get(model_id)
        if choice is None:
            raise BadInput(f"The model '{model_id}' is not available to you here.")
        needs_key = choice[2]
    elif not catalog.is_offered(datasette, model_id):
        raise BadInput(f"The model '{model_id}' is not available here.")
    try:
        model, is_async = catalog.resolve_model(model_id)
    except llm.UnknownModelError:
        raise BadInput(
            f"Unknown model: '{model_id}'. Is the llm plugin that provides it installed?"
        )
    if not llm_layer.installed(datasette):
        needs_key = catalog.missing_key(model)
    if needs_key:
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
        problems = "; ".join(_in_words(e) for e in error.errors())
        raise BadInput(f"Check the options: {problems}.")
    return {k: v for k, v in options.model_dump().items() if k in values}


def _in_words(error: dict) -> str:
    """A pydantic error as a person would say it."""
    name = ".".join(str(p) for p in error.get("loc", ())) or "an option"
    context = error.get("ctx") or {}
    kind = error.get("type", "")
    said = {
        "greater_than_equal": f"must be at least {context.get('ge')}",
        "greater_than": f"must be more than {context.get('gt')}",
        "less_than_equal": f"must be at most {context.get('le')}",
        "less_than": f"must be less than {context.get('lt')}",
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "bool_parsing": "must be yes or no",
        "extra_forbidden": "is not an option of this model",
        "string_too_long": f"can have at most {context.get('max_length')} characters",
        "string_too_short": f"needs at least {context.get('min_length')} characters",
        "literal_error": f"must be {context.get('expected')}",
        "enum": f"must be {context.get('expected')}",
    }.get(kind)
    return f"{name} {said}" if said else f"{name}: {error.get('msg', 'is not valid')}"


def check_title(form, max_chars: int) -> str:
    title = " ".join(form.get("title", "").split())
    if not title:
        raise BadInput("Type a title, or pick a suggestion.")
    if len(title) > max_chars:
        raise BadInput(f"A title can have at most {max_chars} characters.")
    return title
