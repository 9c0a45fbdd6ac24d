"""datasette-llm, Datasette's LLM layer, when it is installed: which models
an actor may chat with (its purpose ``chat``), their keys (datasette-secrets)
and configured options, and every prompt through its ``llm_prompt_context``
hooks (costs, budgets).

datasette-llm lists async models only. Sync-only models (local ones such
as llm-markov or SmolLM2: no key, no cost) stay on offer, governed by
datasette-llm's ``models`` / ``blocked_models`` lists (global and for the
purpose) when they name them, and by this plugin's ``models`` setting.

The one place that knows datasette-llm, including one private attribute
(see ``conversation``), so its next release touches this file only.
"""

PURPOSE = "chat"


def installed(datasette) -> bool:
    """Is datasette-llm loaded (installed, and not left out by
    DATASETTE_LOAD_PLUGINS)?"""
    from datasette.plugins import pm  # not at import: this module loads while pm is made

    return any(
        getattr(plugin, "__name__", "") == "datasette_llm" for plugin in pm.get_plugins()
    )


def purpose():
    from datasette_llm import Purpose

    return Purpose(name=PURPOSE, description="Conversations in the web chat at /-/llm")


def _config(datasette) -> dict:
    return datasette.plugin_config("datasette-llm") or {}


def _ids(entries) -> set[str]:
    return {entry if isinstance(entry, str) else entry.get("model") for entry in entries or []}


def sync_only_allowed(datasette, model_id: str) -> bool:
    """A sync-only model, by datasette-llm's lists (it never sees them)."""
    config = _config(datasette)
    for_purpose = (config.get("purposes") or {}).get(PURPOSE) or {}
    allowlist = for_purpose.get("models") or config.get("models")
    if allowlist and model_id not in _ids(allowlist):
        return False
    return model_id not in _ids(config.get("blocked_models")) | _ids(
        for_purpose.get("blocked_models")
    )


async def async_model_ids(datasette, actor) -> list[str]:
    """The async models datasette-llm offers this actor for chat, in its
    order (default first)."""
    from datasette_llm import LLM

    return [model.model_id for model in await LLM(datasette).models(actor=actor, purpose=PURPOSE)]


async def default_model_id(datasette, actor) -> str | None:
    from datasette_llm import LLM, ModelNotFoundError

    try:
        wrapped = await LLM(datasette).model(purpose=PURPOSE, actor=actor)
    except (ModelNotFoundError, KeyError):
        return None
    return wrapped.model_id


async def conversation(datasette, actor, model_id: str, llm_conversation):
    """``llm_conversation`` (an llm AsyncConversation holding this chat's
    id and history) wrapped by datasette-llm: prompts made with its
    ``chain()`` run the hooks, with the key and options configured for the
    actor and the purpose."""
    from datasette_llm import LLM

    wrapped = (await LLM(datasette).model(model_id, purpose=PURPOSE, actor=actor)).conversation()
    # datasette-llm wraps a new, empty llm conversation; ours carries the
    # thread's id (so llm logs the reply there) and its history.
    wrapped._conversation = llm_conversation
    return wrapped


async def title_prompt(datasette, actor, model_id: str, text: str, system: str) -> str:
    """A one-off prompt (a title) through datasette-llm's hooks."""
    from datasette_llm import LLM

    model = await LLM(datasette).model(model_id, purpose=PURPOSE, actor=actor)
    response = await model.prompt(text, system=system)
    return await response.text()


async def cost_nanocents(datasette, model_id: str, responses) -> int | None:
    """What a reply cost, by the pricing provider a plugin registered for
    datasette-llm-accountant (None without one: its default provider
    fetches a price list from the internet, which this plugin never does)."""
    from datasette.plugins import pm

    hook = getattr(pm.hook, "register_llm_accountant_pricing", None)
    provider = hook(datasette=datasette) if hook is not None else None
    if provider is None:
        return None
    total = 0
    for response in responses:
        total += int(await provider.calculate_cost_from_response(model_id, await response.usage(), response))
    return total


def refusal(error: BaseException) -> str | None:
    """A hook's refusal (a budget of datasette-llm-limits) in words, or None
    if the error is something else."""
    try:
        from datasette_llm_accountant import InsufficientBalanceError
    except ImportError:
        return None
    if isinstance(error, InsufficientBalanceError):
        return str(error)
    return None
