"""Rendering the plugin's partials: for htmx swaps, SSE events, and the
repeated parts of pages (messages, the conversation list), which the pages
insert as they are. Every partial is one file, drawn only here."""

import weakref

from markupsafe import Markup

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
