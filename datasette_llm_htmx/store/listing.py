"""The list of conversations on /-/llm: newest first by keyset pagination,
or, for a search, in the order of the newest matching turn."""

import json

from ..safe_text import search_terms
from .records import ListedConversation

# The list of conversations on /-/llm, newest first, by keyset pagination.

# Each table gives its newest ids by its primary key, so a page costs the
# same however many conversations there are. A fork (regenerate, edit) is a
# thread of the conversation it came from, not a conversation of its own.
LIST_IDS_SQL = """
select id from (
    select id from (select id from threads where (:before is null or id < :before)
                    and forked_from is null
                    order by id desc limit :limit)
    union
    select id from (select id from conversations where (:before is null or id < :before)
                    order by id desc limit :limit)
    union
    select id from (select id from initiated where (:before is null or id < :before)
                    and root_id is null
                    order by id desc limit :limit)
)
order by id desc
limit :limit
"""

LIST_OWN_IDS_SQL = """
select id from initiated
where actor_id = :actor_id and (:before is null or id < :before) and root_id is null
order by id desc
limit :limit
"""

# Search: the hits in llm's own full-text indexes (both generations of
# tables), newest hit first, each with the join that keeps an actor to their
# own conversations. FTS5 walks its index in rowid order, so a page of
# results stops reading after a page of conversations, however many match.
SEARCH_HITS_SQL = (
    (
        """
        select turns.thread_id
        from turn_search_fts
        join turn_search on turn_search.id = turn_search_fts.rowid
        join turns on turns.id = turn_search.turn_id
        {own}
        where turn_search_fts match :query
        order by turn_search_fts.rowid desc
        """,
        "join initiated on initiated.id = turns.thread_id and initiated.actor_id = :actor_id",
    ),
    (
        """
        select responses.conversation_id
        from responses_fts
        join responses on responses.rowid = responses_fts.rowid
        {own}
        where responses_fts match :query
        order by responses_fts.rowid desc
        """,
        "join initiated on initiated.id = responses.conversation_id"
        " and initiated.actor_id = :actor_id",
    ),
)


def _search_ids(conn, params, *, everyone: bool, before: str | None, limit: int) -> list[str]:
    """Conversations in the order of their newest matching turn.

    ``before`` is the last conversation of the previous page: the walk skips
    to it, so a conversation with many hits is listed once, on the page of
    its newest hit."""
    seen: set[str] = set()
    ids: list[str] = []
    passed = before is None
    for sql, own in SEARCH_HITS_SQL:
        for (cid,) in conn.execute(sql.format(own="" if everyone else own), params):
            if cid is None or cid in seen:
                continue
            seen.add(cid)
            if not passed:
                passed = cid == before
            else:
                ids.append(cid)
                if len(ids) == limit:
                    return ids
    return ids


LIST_DETAILS_SQL = """
select ids.value as id,
    coalesce(threads.name, conversations.name) as name,
    coalesce(
        initiated.model_id,
        (select model from turns where thread_id = ids.value order by id limit 1),
        conversations.model
    ) as model_id,
    (select count(*) from turns where thread_id = ids.value)
    + (select count(*) from responses
        where conversation_id = ids.value
        and not exists (select 1 from turns where turns.id = responses.id))
    + (select count(*) from unlogged_messages where conversation_id = ids.value) as replies,
    coalesce(
        initiated.datetime_utc,
        (select datetime_utc from turns where thread_id = ids.value order by id limit 1),
        (select datetime_utc from responses where conversation_id = ids.value
            order by id limit 1),
        threads.datetime_utc
    ) as datetime_utc,
    initiated.prompt as first_prompt,
    initiated.actor_id as actor_id,
    max(
        coalesce((select max(datetime_utc) from turns where thread_id = ids.value), ''),
        coalesce((select max(updated_utc) from unlogged_messages
                  where conversation_id = ids.value), ''),
        coalesce((select max(datetime_utc) from responses where conversation_id = ids.value), '')
    ) as last_activity
from json_each(:ids) as ids
left join threads on threads.id = ids.value
left join conversations on conversations.id = ids.value
left join initiated on initiated.id = ids.value
order by ids.key
"""


def fts_query(text: str) -> str:
    """Each word a quoted phrase: what people type never breaks FTS syntax."""
    return " ".join(
        '"' + word.replace('"', '""') + '"' for word in search_terms(text).split()
    )


def list_conversations(
    conn,
    *,
    actor_id: str | None,
    everyone: bool,
    before: str | None,
    limit: int,
    query: str | None = None,
) -> tuple[list[ListedConversation], str | None]:
    """A page of conversations and the id to continue after: newest first,
    or for a search, by newest matching turn."""
    params = {"before": before, "limit": limit + 1, "actor_id": actor_id}
    if query and fts_query(query):
        params["query"] = fts_query(query)
        ids = _search_ids(conn, params, everyone=everyone, before=before, limit=limit + 1)
    else:
        sql = LIST_IDS_SQL if everyone else LIST_OWN_IDS_SQL
        ids = [row[0] for row in conn.execute(sql, params)]
    next_before = ids[limit - 1] if len(ids) > limit else None
    ids = ids[:limit]
    rows = conn.execute(LIST_DETAILS_SQL, {"ids": json.dumps(ids)}).fetchall()
    listed = [
        ListedConversation(
            id=row[0],
            name=row[1] or (row[5] or "").strip()[:60] or "Untitled",
            model_id=row[2],
            replies=row[3],
            datetime_utc=row[4],
            actor_id=row[6],
            last_activity=row[7] or row[4],
        )
        for row in rows
    ]
    return listed, next_before


# The conversations of the llm database, by title: llm's threads (forks
# are versions of their conversation, not conversations), then the
# conversations of llm's older schema. Those who may read everything see
# them all; others, those they started.
JUMP_SQL = """
select 'llm-conversation' as type,
       coalesce(name, 'Untitled') as label,
       'LLM conversation' as description,
       json_object('method', 'path', 'path', '/-/llm/' || id) as url,
       coalesce(name, '') as search_text,
       coalesce(name, 'Untitled') as display_name
from (
    select id, name from threads where forked_from is null
    union all
    select id, name from conversations where id not in (select id from threads)
)
where :llmhtmx_everyone or id in (select id from initiated where actor_id = :llmhtmx_actor_id)
"""
