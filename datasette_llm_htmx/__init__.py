"""datasette-llm-htmx: a chat with llm's models at /-/llm. Hooks only."""

from datasette import hookimpl

from . import csp, permissions, storage, views
from .rendering import format_time, markdown_to_html

CID = r"(?P<cid>[^/.]+)"
MID = r"(?P<mid>[^/]+)"


@hookimpl
def register_routes(datasette):
    return [
        (r"^/-/llm$", views.index),
        (r"^/-/llm/start$", views.start),
        (r"^/-/llm/options$", views.model_options),
        (rf"^/-/llm/{CID}$", views.conversation_page),
        (rf"^/-/llm/{CID}\.(?P<format>md|json)$", views.export),
        (rf"^/-/llm/{CID}/prompt$", views.follow_up),
        (rf"^/-/llm/{CID}/stream/{MID}$", views.stream),
        (rf"^/-/llm/{CID}/stop/{MID}$", views.stop),
        (rf"^/-/llm/{CID}/retry/{MID}$", views.retry),
        (rf"^/-/llm/{CID}/title$", views.title),
        (rf"^/-/llm/{CID}/prompt/{MID}$", views.whole_prompt),
    ]


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
        await storage.prepare(datasette)
        await csp.prepare(datasette)

    return inner


@hookimpl
def menu_links(datasette, actor):
    async def inner():
        if await permissions.can_chat(datasette, actor):
            return [{"href": datasette.urls.path("/-/llm"), "label": "LLM chat"}]
        return []

    return inner


@hookimpl
def prepare_jinja2_environment(env, datasette):
    env.filters["llm_markdown"] = markdown_to_html
    env.filters["llm_time"] = format_time


@hookimpl
def register_commands(cli):
    from llm.cli import cli as llm_cli

    # `datasette llm ...` is the llm CLI, as in the first datasette-llm.
    cli.add_command(llm_cli, name="llm")
