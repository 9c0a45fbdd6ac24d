"""Who may chat and who may read: one place that every view asks."""

from datasette import Forbidden
from datasette.permissions import Action, PermissionSQL
from datasette.utils import actor_matches_allow

from .config import settings
from .store.database import database_name

CHAT = "llm-chat"
VIEW_ALL = "llm-view-all"

ACTIONS = [
    Action(
        name=CHAT,
        abbr=None,
        description="Chat with LLM models: start conversations, continue and read your own",
    ),
    Action(
        name=VIEW_ALL,
        abbr=None,
        description="Read every LLM conversation, including other actors' and the llm CLI's",
    ),
]

HOW_TO_GRANT = (
    "An administrator can grant it in datasette.yaml with "
    "'permissions: {llm-chat: {id: your-id}}' or the plugin setting "
    "'plugins: {datasette-llm-htmx: {allow: {id: your-id}}}', "
    "or start Datasette with --root and sign in as root."
)


def allow_setting_sql(datasette, actor, action):
    """The plugin setting ``allow`` grants llm-chat to the actors it matches."""
    if action != CHAT:
        return None
    allow = settings(datasette).allow
    if allow is None or not actor_matches_allow(actor, allow):
        return None
    # Not PermissionSQL.allow(): it names its parameter anew at each call
    # (reason_1, reason_2, ...), so the SQL and the regular expressions
    # Datasette builds from it differ at every request and are never reused.
    return PermissionSQL(
        sql="SELECT NULL AS parent, NULL AS child, 1 AS allow, :llm_htmx_allow AS reason",
        params={"llm_htmx_allow": "datasette-llm-htmx 'allow' setting"},
    )


# A database block in datasette.yaml with any of these opens logs.db on
# purpose: then the config decides, as for any other database.
OPENING_KEYS = ("allow", "allow_sql", "permissions")


async def private_database_sql(datasette, actor, action):
    """logs.db holds every prompt of every user and the llm CLI's history:
    every action on it (its page, tables, queries, SQL, downloads, the
    homepage and the jump menu all ask one of them) needs llm-view-all.

    The rule is a deny on the database resource, so it beats Datasette's
    default allows (root's too, which is why view-all actors get no rule
    at all), while a table-level rule in the config is more specific and
    still wins."""
    declared = datasette.actions.get(action)
    if declared is None or not declared.takes_parent:
        return None
    name = database_name(datasette)
    database_config = ((datasette.config or {}).get("databases") or {}).get(name) or {}
    if any(key in database_config for key in OPENING_KEYS):
        return None
    if await can_view_all(datasette, actor):
        return None
    return PermissionSQL(
        sql="select :llm_htmx_database as parent, null as child, 0 as allow,"
        " :llm_htmx_reason as reason",
        params={
            "llm_htmx_database": name,
            "llm_htmx_reason": f"the LLM logs database is private: it needs {VIEW_ALL}",
        },
    )


async def check_all(datasette, actor) -> None:
    """Resolve every check a page makes (ours, and the "home" crumb) in one
    query. Datasette keeps the verdicts for the rest of the request, so the
    calls below are then free."""
    await datasette.allowed_many(actions=[CHAT, VIEW_ALL, "view-instance"], actor=actor)


async def can_chat(datasette, actor) -> bool:
    return await datasette.allowed(action=CHAT, actor=actor)


async def can_view_all(datasette, actor) -> bool:
    return await datasette.allowed(action=VIEW_ALL, actor=actor)


def _forbidden() -> Forbidden:
    return Forbidden(
        f"Using the LLM chat needs the '{CHAT}' permission, which you do not have"
        f" (or, to read every conversation, '{VIEW_ALL}'). " + HOW_TO_GRANT
    )


async def require_chat(datasette, request) -> None:
    await check_all(datasette, request.actor)
    if not await can_chat(datasette, request.actor):
        raise _forbidden()


async def require_chat_or_view(datasette, request) -> None:
    await check_all(datasette, request.actor)
    if not (
        await can_chat(datasette, request.actor)
        or await can_view_all(datasette, request.actor)
    ):
        raise _forbidden()


def actor_id(actor) -> str | None:
    return actor.get("id") if actor else None


async def can_read(datasette, actor, conversation) -> bool:
    if await can_view_all(datasette, actor):
        return True
    return (
        conversation.actor_id is not None
        and conversation.actor_id == actor_id(actor)
        and await can_chat(datasette, actor)
    )


async def can_write(datasette, actor, conversation) -> bool:
    """Continue, stop, retry, rename: the owner; a conversation made by the
    llm CLI has no owner and belongs to whoever may read everything."""
    if not await can_chat(datasette, actor):
        return False
    if conversation.actor_id is None:
        return await can_view_all(datasette, actor)
    return conversation.actor_id == actor_id(actor)


async def can_delete(datasette, actor, conversation) -> bool:
    """Delete: the owner, or whoever may read everything (the llm CLI's
    conversations included)."""
    if await can_view_all(datasette, actor):
        return True
    return await can_write(datasette, actor, conversation)
