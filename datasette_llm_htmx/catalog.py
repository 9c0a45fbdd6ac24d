"""Which models this site offers an actor: with datasette-llm, those it
allows for the purpose ``chat`` (see ``llm_layer``); without it, those llm's
plugins register, narrowed by the ``models`` setting. Which of them need a
key nobody set; the default; and each model's option fields."""

import functools
import time

import llm

from . import llm_layer, openai_reuse
from .config import settings
from .options import OptionField, option_fields

CHOICES_TTL = 10.0  # seconds: `llm keys set` while the server runs shows soon
_choices_cache: dict = {}


@functools.lru_cache(maxsize=256)
def resolve_model(model_id: str):
    """(model, is_async): the async variant where the model has one.

    Plugins register their models once, at startup: asking them all again
    on every request costs a millisecond."""
    try:
        # llm's OpenAI models build a client (and an SSL context: ~18 ms)
        # per prompt; these reuse one per loop, endpoint and key
        return openai_reuse.reuse_clients(llm.get_async_model(model_id)), True
    except llm.UnknownModelError:
        return llm.get_model(model_id), False


def model_choices(datasette) -> list[tuple[str, str, bool]]:
    """(model_id, label, needs_key) for the models this site offers.

    Asking every plugin for its models and reading keys.json for each costs
    milliseconds, so the answer is kept for a few seconds."""
    allowed = settings(datasette).models
    key = (allowed, settings(datasette).hide_models_without_keys)
    cached = _choices_cache.get(key)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    hide_keyless = settings(datasette).hide_models_without_keys
    choices = []
    for entry in llm.get_models_with_aliases():
        model = entry.model or entry.async_model
        if allowed is not None and model.model_id not in allowed:
            continue
        needs_key = missing_key(model)
        if needs_key and hide_keyless:
            continue
        choices.append((model.model_id, str(model.model_id), needs_key))
    _choices_cache[key] = (time.monotonic() + CHOICES_TTL, choices)
    return choices


async def offered(datasette, actor) -> list[tuple[str, str, bool]]:
    """(model_id, label, needs_key) for the models ``actor`` may chat with:
    those that can run now first."""
    if not llm_layer.installed(datasette):
        choices = model_choices(datasette)
    else:
        choices = [(model_id, model_id, False) for model_id in await llm_layer.async_model_ids(datasette, actor)]
        listed = {choice[0] for choice in choices}
        for entry in llm.get_models_with_aliases():
            model = entry.model
            if entry.async_model is not None or model is None or model.model_id in listed:
                continue
            if llm_layer.sync_only_allowed(datasette, model.model_id):
                choices.append((model.model_id, str(model.model_id), missing_key(model)))
    return [c for c in choices if not c[2]] + [c for c in choices if c[2]]


async def default_for(datasette, actor) -> str | None:
    if llm_layer.installed(datasette):
        return await llm_layer.default_model_id(datasette, actor)
    return default_model_id(datasette)


def is_offered(datasette, model_id: str) -> bool:
    allowed = settings(datasette).models
    return allowed is None or model_id in allowed


def missing_key(model) -> bool:
    if not getattr(model, "needs_key", None):
        return False
    try:
        return not model.get_key()
    except llm.NeedsKeyException:
        return True


def how_to_set_key(model) -> str:
    env = f" or set the environment variable {model.key_env_var}" if model.key_env_var else ""
    return f"Set one with 'llm keys set {model.needs_key}'{env}, then send again."


def default_model_id(datasette) -> str | None:
    configured = settings(datasette).default_model
    if configured:
        return configured
    try:
        return llm.get_default_model()
    except Exception:
        return None


def supports_conversation(datasette, model_id) -> bool:
    """Can the model take the prompts before (llm raises
    ConversationNotSupported for one that cannot)?"""
    if not model_id:
        return True
    try:
        model, _ = resolve_model(model_id)
    except llm.UnknownModelError:
        return True
    return getattr(model, "supports_conversation", True)


def attachment_types(datasette, model_id) -> list[str]:
    """The file types a model reads (none for most)."""
    if not model_id or not is_offered(datasette, model_id):
        return []
    try:
        model, _ = resolve_model(model_id)
    except llm.UnknownModelError:
        return []
    return sorted(getattr(model, "attachment_types", None) or [])


def fields_for(datasette, model_id) -> list[OptionField]:
    if not model_id or not is_offered(datasette, model_id):
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
