"""Where the chat shows in the rest of Datasette: the homepage's actions,
the action menus of tables, queries and rows ("Chat about this table"),
and the jump menu, which finds the conversations an actor may read."""

from datasette.jump import JumpSQL

from . import about, permissions
from .store import listing
from .store.database import llm_database


async def jump_items(datasette, actor):
    can_chat = await permissions.can_chat(datasette, actor)
    everyone = await permissions.can_view_all(datasette, actor)
    if not (can_chat or everyone):
        return None
    items = [
        JumpSQL.menu_item(
            label="LLM chat",
            url=datasette.urls.path("/-/llm"),
            description="Chat with a language model",
        )
    ]
    if everyone or permissions.actor_id(actor):
        items.append(
            JumpSQL(
                sql=listing.JUMP_SQL,
                params={
                    "llmhtmx_everyone": 1 if everyone else 0,
                    "llmhtmx_actor_id": permissions.actor_id(actor),
                },
                database=llm_database(datasette).name,
            )
        )
    return items


async def homepage_actions(datasette, actor):
    if not await permissions.can_chat(datasette, actor):
        return []
    return [
        {
            "href": datasette.urls.path("/-/llm"),
            "label": "Chat with a language model",
            "description": "Start an LLM conversation, or go on with one",
        }
    ]


async def data_actions(datasette, actor, request, kind: str):
    """Chat about this table, query or row: for actors who may chat (the
    page itself proves they may see its data; the chat reads it again as
    them)."""
    if request is None or not await permissions.can_chat(datasette, actor):
        return []
    return [about.action_link(datasette, request, kind)]
