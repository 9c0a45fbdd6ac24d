"""Conversations as llm 0.32 and later log them: threads of turns over a
tree of content-addressed messages.

A conversation is a family of threads: the one it started as, and the forks
made from it (regenerate, edit and resend), each a thread that points at a
message of another (``threads.forked_from``). A thread shows the messages
on the way to its tip; at each turn, the turns of the family that answered
the same history are its alternatives.

Reading a whole family costs five queries, however long it is.
"""

import json

from .attachments import _attachment_ids, _rows, attachments
from .legacy import _pretty
from .records import Alternative, Fragment, Message, ReplyPart, ToolCall, ToolResult

FAMILY_SQL = """
with recursive up(id, forked_from) as (
    select id, forked_from from threads where id = :cid
    union
    select threads.id, threads.forked_from from threads join up on threads.id = up.forked_from
),
root(id) as (select id from up where forked_from is null limit 1),
down(id) as (
    select id from root
    union
    select threads.id from threads join down on threads.forked_from = down.id
)
select threads.id, threads.forked_from, threads.tip_message_hash
from down join threads on threads.id = down.id
"""

TURNS_SQL = """
select turns.id, thread_id, model, parent_message_hash, tip_message_hash, options_json,
       datetime_utc, input_tokens, output_tokens, duration_ms, llm_htmx_costs.nanocents
from turns left join llm_htmx_costs on llm_htmx_costs.turn_id = turns.id
where thread_id in (select value from json_each(:threads)) order by turns.id
"""

# Every message on the way from each turn's tip (and each thread's) back to
# the root, with all its parts.
CHAIN_SQL = """
with recursive chain(hash) as (
    select tip_message_hash from turns where thread_id in (select value from json_each(:threads))
    union
    select tip_message_hash from threads where id in (select value from json_each(:threads))
    union
    select messages.parent_hash from messages join chain on messages.hash = chain.hash
    where messages.parent_hash is not null
)
select messages.hash, messages.parent_hash, messages.role,
       parts.type, parts.text, parts.payload
from chain
join messages on messages.hash = chain.hash
left join parts on parts.message_hash = messages.hash
order by messages.hash, parts.position
"""

TURN_FRAGMENTS_SQL = """
select tf.turn_id, tf.kind, f.source, f.content, f.hash
from turn_fragments tf join fragments f on f.id = tf.fragment_id
where tf.turn_id in (select id from turns where thread_id in (select value from json_each(:threads)))
order by tf.turn_id, tf.kind, tf."order"
"""


class Family:
    """The threads of one conversation, their turns, and the messages they
    point at, each with its parts resolved."""

    def __init__(self, conn, cid: str):
        rows = conn.execute(FAMILY_SQL, {"cid": cid}).fetchall()
        self.threads = {row[0]: (row[1], row[2]) for row in rows}  # id: (forked_from, tip)
        self.root = next((tid for tid, (parent, _) in self.threads.items() if parent is None), cid)
        ids = json.dumps(list(self.threads) or [cid])
        self.turns = conn.execute(TURNS_SQL, {"threads": ids}).fetchall()
        self.parents: dict[str, str | None] = {}
        self.roles: dict[str, str] = {}
        self.parts: dict[str, list[tuple[str, str | None, dict]]] = {}
        fragment_ids, attachment_ids = set(), set()
        if self.turns or any(tip for _, tip in self.threads.values()):
            for hash_, parent, role, part_type, text, payload in conn.execute(CHAIN_SQL, {"threads": ids}):
                self.parents[hash_] = parent
                self.roles[hash_] = role
                parts = self.parts.setdefault(hash_, [])
                if part_type is None:
                    continue
                data = json.loads(payload) if payload else {}
                parts.append((part_type, text, data))
                fragment_ids.update(p["fragment"] for p in data.get("text_ref", []) if "fragment" in p)
                attachment_ids.update(_attachment_ids(data))
        self.fragments = {
            row[0]: row[1] for row in _rows(conn, "select id, content from fragments", fragment_ids)
        }
        self.attachments = attachments(conn, attachment_ids)
        self.turn_fragments: dict[str, dict[str, list[Fragment]]] = {}
        if self.turns:
            for turn_id, kind, source, content, hash_ in conn.execute(TURN_FRAGMENTS_SQL, {"threads": ids}):
                self.turn_fragments.setdefault(turn_id, {}).setdefault(kind, []).append(
                    Fragment(source, content, hash_)
                )

    def walk(self, tip: str | None) -> list[str]:
        """The hashes from the root to ``tip``."""
        hashes = []
        while tip is not None and tip in self.parents:
            hashes.append(tip)
            tip = self.parents[tip]
        hashes.reverse()
        return hashes

    def own_input_start(self, inputs: list[str]) -> int:
        """Where a turn's own input begins: the run of user and tool
        messages at the end of its input chain."""
        boundary = len(inputs)
        while boundary and self.roles[inputs[boundary - 1]] in ("user", "tool"):
            boundary -= 1
        return boundary

    def fork_point(self, parent: str | None) -> str | None:
        """The message before a turn's own input (None at the root): where a
        regenerate or an edit of that turn forks the conversation."""
        inputs = self.walk(parent)
        boundary = self.own_input_start(inputs)
        return inputs[boundary - 1] if boundary else None

    def text(self, part_text: str | None, data: dict) -> str:
        if part_text is not None:
            return part_text
        # text that borrows fragments is stored as literal pieces and ids
        return "".join(
            piece["literal"] if "literal" in piece else self.fragments.get(piece["fragment"], "")
            for piece in data.get("text_ref", [])
        ) or data.get("text", "")

    def attachment(self, data: dict) -> list:
        return [self.attachments[i] for i in _attachment_ids(data) if i in self.attachments]

    def lineage(self, tid: str) -> list[str]:
        """A thread and the threads it was forked from, nearest first."""
        line = []
        while tid is not None and tid in self.threads and tid not in line:
            line.append(tid)
            tid = self.threads[tid][0]
        return line


def view(conn, cid: str) -> tuple[list[Message], int]:
    """The turns on thread ``cid``'s way to its tip, in order, each with its
    alternatives; and how many messages on that way belong to no turn
    (history llm was given explicitly, such as a pre-0.32 conversation's,
    when one was forked)."""
    family = Family(conn, cid)
    if not family.turns:
        return [], 0
    tip = family.threads.get(cid, (None, None))[1]
    if tip is None:  # a thread with turns but no tip: its newest turn's
        tip = next((t[4] for t in reversed(family.turns) if t[1] == cid), None)
    chain = family.walk(tip)
    position = {hash_: i for i, hash_ in enumerate(chain)}
    lineage = family.lineage(cid)

    def preference(turn):
        # the turn this thread logged, else the nearest thread it came from
        return (lineage.index(turn[1]) if turn[1] in lineage else len(lineage), turn[0])

    on_chain: dict[str, tuple] = {}
    for turn in family.turns:
        parent, turn_tip = turn[3], turn[4]
        if turn_tip in position and (parent is None or parent in position):
            if turn_tip not in on_chain or preference(turn) < preference(on_chain[turn_tip]):
                on_chain[turn_tip] = turn
    shown = sorted(on_chain.values(), key=lambda turn: position[turn[4]])

    by_fork_point: dict[str | None, list[tuple]] = {}
    for turn in family.turns:
        by_fork_point.setdefault(family.fork_point(turn[3]), []).append(turn)

    messages = []
    covered = set()
    for turn in shown:
        message = _message(family, turn, cid)
        siblings = by_fork_point.get(family.fork_point(turn[3]), [turn])
        message.alternatives = [Alternative(s[1], s[0]) for s in siblings]
        messages.append(message)
        covered.update(family.walk(turn[4]))
    turnless = [h for h in chain if h not in covered and family.roles[h] == "assistant"]
    return messages, len(turnless)


def _message(family: Family, turn: tuple, cid: str) -> Message:
    tid, thread_id, model, parent, tip, options_json, when, input_tokens, output_tokens, duration_ms, cost = turn
    inputs = family.walk(parent)
    outputs = family.walk(tip)[len(inputs) :]
    own_input = inputs[family.own_input_start(inputs) :]
    fragments = family.turn_fragments.get(tid, {})
    user_text, attached, tool_results = [], [], []
    for hash_ in own_input:
        for part_type, text, data in family.parts[hash_]:
            if part_type == "text" and family.roles[hash_] == "user":
                user_text.append(family.text(text, data))
            elif part_type == "attachment":
                attached += family.attachment(data)
            elif part_type == "tool_result":
                tool_results.append(
                    ToolResult(
                        name=data.get("name") or "",
                        output=str(data.get("output", "")),
                        call_id=data.get("tool_call_id"),
                        error=data.get("exception"),
                        attachments=family.attachment(data),
                    )
                )
    # the system prompt in force: the latest system message of the history
    system_hash = next((h for h in reversed(inputs) if family.roles[h] == "system"), None)
    system = None
    if system_hash is not None:
        system = "".join(
            family.text(text, data)
            for part_type, text, data in family.parts[system_hash]
            if part_type == "text"
        )
    parts = []
    for hash_ in outputs:
        if family.roles[hash_] != "assistant":
            continue
        for part_type, text, data in family.parts[hash_]:
            if part_type in ("text", "reasoning"):
                _add_text(parts, part_type, family.text(text, data))
            elif part_type == "tool_call":
                call = ToolCall(
                    data.get("name") or "", _pretty(data.get("arguments", {})), data.get("tool_call_id")
                )
                parts.append(ReplyPart("tool_call", tool_call=call))
    prompt_fragments = fragments.get("prompt", [])
    system_fragments = fragments.get("system", [])
    return Message(
        id=tid,
        conversation_id=cid,
        model_id=model,
        prompt=typed_text("".join(user_text), prompt_fragments, "\n"),
        system=(typed_text(system, system_fragments, "\n\n", strip=True) or None) if system else None,
        text="".join(p.text for p in parts if p.kind == "text"),
        status="done",
        options=json.loads(options_json or "{}"),
        datetime_utc=when,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        duration_ms=duration_ms,
        cost_nanocents=cost,
        fragments=prompt_fragments,
        system_fragments=system_fragments,
        attachments=attached,
        tool_results=tool_results,
        parts=parts,
        thread_id=thread_id,
    )


def _add_text(parts: list[ReplyPart], kind: str, text: str) -> None:
    """Consecutive parts of one kind read as one."""
    if not text:
        return
    if parts and parts[-1].kind == kind:
        parts[-1].text += text
    else:
        parts.append(ReplyPart(kind, text))


def typed_text(text: str, fragments: list[Fragment], joiner: str, strip: bool = False) -> str:
    """What was typed, without the fragments llm put before it: llm joins
    fragments and the typed text with ``joiner`` (the system prompt's
    fragments are stripped first)."""
    if not fragments:
        return text
    prefix = joiner.join(f.content.strip() if strip else f.content for f in fragments)
    if text == prefix:
        return ""
    if text.startswith(prefix + joiner):
        return text[len(prefix) + len(joiner) :]
    return text


def fork_point_of_turn(conn, turn_id: str) -> tuple[str | None, str | None]:
    """(the thread of a turn, the message before its own input): where a
    regenerate or an edit of it forks."""
    row = conn.execute("select thread_id from turns where id = ?", [turn_id]).fetchone()
    if row is None:
        return None, None
    family = Family(conn, row[0])
    turn = next(t for t in family.turns if t[0] == turn_id)
    return row[0], family.fork_point(turn[3])


def root_of(conn, cid: str) -> str:
    """The thread a conversation started as (itself, if it is no fork)."""
    return Family(conn, cid).root if _is_thread(conn, cid) else cid


def family_ids(conn, cid: str) -> list[str]:
    rows = conn.execute(FAMILY_SQL, {"cid": cid}).fetchall()
    return [row[0] for row in rows] or [cid]


def _is_thread(conn, cid: str) -> bool:
    return bool(conn.execute("select 1 from threads where id = ?", [cid]).fetchone())
