"""datasette-llm-htmx: a chat with llm's models at /-/llm. Hooks only.

Where things are: a request enters through ``routes`` into ``views``
(pages, actions, stream); a token flows from the model through
``generation`` (and ``sync_bridge``), ``following`` and ``views.stream`` to
``sse``; HTML is made safe in ``rendering`` (and by the templates'
escaping); every SQL statement is in ``store``.
"""

from datasette import hookimpl

from . import csp, events, llm_layer, menus, permissions, rendering, routes
from .config import settings
from .generations import generations
from .rendering import format_time, markdown_to_html
from .store import database, rendered


@hookimpl
def register_routes(datasette):
    return routes.routes()


@hookimpl
def register_actions(datasette):
    return permissions.ACTIONS


@hookimpl
def permission_resources_sql(datasette, actor, action):
    async def inner():
        return [
            rule
            for rule in (
                permissions.allow_setting_sql(datasette, actor, action),
                await permissions.private_database_sql(datasette, actor, action),
            )
            if rule is not None
        ]

    return inner


@hookimpl
def asgi_wrapper(datasette):
    return csp.nosniff


@hookimpl
def startup(datasette):
    async def inner():
        await database.prepare(datasette)
        await csp.prepare(datasette)
        rendering.set_cache_limit(settings(datasette).render_cache_mb)
        if settings(datasette).render_cache_file:
            path = rendered.beside(settings(datasette).database_path)
            rendering.set_store(rendered.RenderStore(path))

    return inner


@hookimpl
def shutdown(datasette):
    async def inner():
        await generations(datasette).shutdown()

    return inner


@hookimpl
def menu_links(datasette, actor):
    async def inner():
        if await permissions.can_chat(datasette, actor):
            return [{"href": datasette.urls.path("/-/llm"), "label": "LLM chat"}]
        return []

    return inner


@hookimpl
def homepage_actions(datasette, actor, request):
    return menus.homepage_actions(datasette, actor)


@hookimpl
def database_actions(datasette, actor, database, request):
    return menus.data_actions(datasette, actor, request, "database")


@hookimpl
def table_actions(datasette, actor, database, table, request):
    return menus.data_actions(datasette, actor, request, "table")


@hookimpl
def view_actions(datasette, actor, database, view, request):
    return menus.data_actions(datasette, actor, request, "table")


@hookimpl
def query_actions(datasette, actor, database, query_name, request, sql, params):
    return menus.data_actions(datasette, actor, request, "query")


@hookimpl
def row_actions(datasette, actor, request, database, table, row):
    return menus.data_actions(datasette, actor, request, "row")


@hookimpl
def jump_items_sql(datasette, actor, request):
    return menus.jump_items(datasette, actor)


@hookimpl
def prepare_jinja2_environment(env, datasette):
    env.filters["llm_markdown"] = markdown_to_html
    env.filters["llm_time"] = format_time


@hookimpl
def register_events(datasette):
    return events.ALL


@hookimpl
def register_llm_purposes(datasette):
    # a hook of datasette-llm, called only when it is installed
    return [llm_layer.purpose()]


@hookimpl
def register_commands(cli):
    from llm.cli import cli as llm_cli

    # `datasette llm ...` is the llm CLI, as in the first datasette-llm.
    cli.add_command(llm_cli, name="llm")
