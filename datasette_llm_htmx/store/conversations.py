"""A conversation as the pages show it, assembled from every table that can
hold part of it: llm's two schemas, the plugin's ``initiated`` (who started
it) and ``unlogged_messages`` (replies not logged, or not yet)."""

from . import legacy, llm_logs, threads, unlogged
from .records import Conversation, Message


def owner(conn, cid: str) -> tuple | None:
    """(model_id, actor_id, datetime_utc, prompt) from ``initiated``."""
    return conn.execute(
        "select model_id, actor_id, datetime_utc, prompt from initiated where id = ?",
        [cid],
    ).fetchone()


def read(conn, cid: str, with_messages: bool = True) -> Conversation | None:
    """The whole conversation; without its messages, just who owns it and
    what it is called (what a permission check needs)."""
    root = threads.root_of(conn, cid)
    thread, legacy_row = llm_logs.names(conn, root)
    initiated = owner(conn, cid)
    messages: dict[str, Message] = {}
    if with_messages:
        turns, turnless = threads.view(conn, cid)
        old = legacy.legacy_messages(conn, root)
        if root != cid:
            old = old[:turnless]  # a fork of an old conversation: what it was forked at
        messages = {m.id: m for m in old}
        messages.update((m.id, m) for m in turns)
        for message in unlogged.messages(conn, cid):
            messages.setdefault(message.id, message)
    if not (thread or legacy_row or initiated or messages):
        return None
    ordered = sorted(messages.values(), key=lambda m: m.id)
    shown = None
    for message in ordered:
        message.show_system = bool(message.system) and message.system != shown
        shown = message.system or shown
    name = (thread and thread[0]) or (legacy_row and legacy_row[0]) or None
    first = ordered[0] if ordered else None
    if name and first and first.fragments:
        # llm named it after its whole first prompt, fragments included: the
        # title comes from what was typed instead
        whole = "\n".join([*(f.content for f in first.fragments), first.prompt])
        if name == llm_logs.default_name(whole):
            name = None
    model_id = (
        (initiated and initiated[0])
        or (ordered and ordered[0].model_id)
        or (legacy_row and legacy_row[1])
        or None
    )
    started = (
        (initiated and initiated[2])
        or (ordered and ordered[0].datetime_utc)
        or (thread and thread[1])
        or None
    )
    return Conversation(
        id=cid,
        name=name,
        model_id=model_id,
        actor_id=initiated[1] if initiated else None,
        datetime_utc=started,
        messages=ordered,
        root_id=root,
    )


def continuation(conn, cid: str) -> tuple[str | None, list[Message]]:
    """What a follow-up needs without reading the whole conversation: the
    model of the latest message, and the messages not yet logged."""
    pending = unlogged.messages(conn, cid)
    candidates = [(m.id, m.model_id) for m in pending[-1:]]
    latest = llm_logs.latest_turn(conn, cid)
    if latest:
        candidates.append((latest[1], latest[0]))
    return (max(candidates)[1] if candidates else None), pending


def message(conn, cid: str, mid: str) -> Message | None:
    """One message. While it is in flight it is one row, found by key; once
    logged, it is read with its conversation."""
    found = unlogged.message(conn, cid, mid)
    if found is not None:
        return found
    conversation = read(conn, cid)
    if conversation is None:
        return None
    return next((m for m in conversation.messages if m.id == mid), None)
