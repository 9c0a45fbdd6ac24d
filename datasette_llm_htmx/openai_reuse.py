"""One OpenAI client per credentials, reused from prompt to prompt
(catalog.resolve_model applies it; measured in docs/benchmarks.md, "A real
upstream").

llm 0.36's OpenAI models build a new ``openai.AsyncOpenAI`` for every
prompt (``_Shared.get_client`` in ``llm/default_plugins/openai_models.py``).
Each new client builds a new HTTP client, whose SSL context loads the
certifi bundle: about 17 ms of CPU on this machine before the request is
even sent, and a new TCP (and, to a real API, TLS) connection per prompt,
because the connection pool goes with the client.

``reuse_clients(model)`` gives one model instance a ``get_client`` that
keeps the clients it builds and hands the same one back for the same
credentials. A client is only ever reused for exactly what built it:

- the same event loop (an async HTTP pool belongs to its loop);
- the same ``api_base``, ``api_type``, ``api_version``, ``api_engine`` and
  ``headers`` of the model;
- the same key, as the model resolves it for this prompt
  (``model.get_key(key)``: an explicit key, a keys.json alias, the
  environment). Two different keys, such as two actors' own keys, never get
  the same client; the cache is compared on the key itself.

The client is built by llm's own ``get_client``, so it is configured
exactly as llm would configure it. Anything this module does not
recognise goes to llm's own method untouched: sync clients, no running
loop, ``LLM_OPENAI_SHOW_RESPONSES`` (a logging client), models that are not
llm's OpenAI models.

Clients are never closed here: one dropped from the cache (more than
``MAX_CLIENTS`` credentials in one loop) is left to be collected, as llm
leaves every client today, so a reply still streaming through it is not cut
off.
"""

import asyncio
import os
import weakref

MAX_CLIENTS = 64  # per event loop: distinct credentials kept

_by_loop: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
stats = {"built": 0, "reused": 0, "passed_through": 0}


def is_openai_model(model) -> bool:
    try:
        from llm.default_plugins.openai_models import _Shared
    except ImportError:  # another llm: leave it alone
        return False
    return isinstance(model, _Shared)


def reuse_clients(model):
    """Make this llm OpenAI model reuse its async clients. Returns the model
    (unchanged if it is not one of llm's OpenAI models). Idempotent."""
    if not is_openai_model(model) or getattr(model, "_reuses_clients", False):
        return model
    build = model.get_client  # llm's own, bound to this model

    def get_client(key=None, *, async_=False):
        if not async_ or os.environ.get("LLM_OPENAI_SHOW_RESPONSES"):
            stats["passed_through"] += 1
            return build(key, async_=async_)
        try:
            loop = asyncio.get_running_loop()
            clients = _by_loop.setdefault(loop, {})
        except (RuntimeError, TypeError):  # no loop, or one without weakrefs
            stats["passed_through"] += 1
            return build(key, async_=async_)
        resolved = model.get_key(key) if model.needs_key else None
        identity = (
            model.api_base,
            model.api_type,
            model.api_version,
            model.api_engine,
            tuple(sorted((model.headers or {}).items())),
            resolved,
        )
        client = clients.pop(identity, None)
        if client is not None and not client.is_closed():
            clients[identity] = client  # most recently used last
            stats["reused"] += 1
            return client
        client = build(key, async_=True)
        stats["built"] += 1
        if model.needs_key and client.api_key != resolved:
            return client  # the key changed in between: use it once, keep nothing
        clients[identity] = client
        while len(clients) > MAX_CLIENTS:
            clients.pop(next(iter(clients)))
        return client

    model.get_client = get_client
    model._reuses_clients = True
    return model
