"""Rendering the plugin's partials outside a full page: for htmx swaps and
SSE events. Pages include the very same files."""

TEMPLATE_DIR = "llm_htmx"


async def render_partial(datasette, name: str, request=None, **context) -> str:
    env = datasette.get_jinja_environment(request)
    template = env.get_template(f"{TEMPLATE_DIR}/{name}")
    context.setdefault("urls", datasette.urls)
    return await template.render_async(context)
