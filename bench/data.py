"""Benchmark data, made with llm's own logging (and, for the pre-0.32 tables,
rows shaped as llm before 0.32 wrote them)."""

import random

import llm
import sqlite_utils
from llm.migrations import migrate

WORDS = (
    "data base index query table column row join select where order group "
    "python sqlite datasette plugin model prompt reply token stream server "
    "browser htmx template render markdown cache page search filter view"
).split()
SEARCH_WORD = "kumquat"  # in about one prompt in a hundred


def sentence(rng, words=12):
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def markdown_reply(size, seed=1):
    """Markdown of about ``size`` bytes: headings, lists, code, tables."""
    rng = random.Random(seed)
    parts = []
    while sum(len(p) + 2 for p in parts) < size:
        parts.append(f"## {sentence(rng, 4)[:-1]}")
        parts.append(" ".join(sentence(rng) for _ in range(4)))
        parts.append("\n".join(f"- {sentence(rng, 6)}" for _ in range(4)))
        parts.append("```python\n" + "\n".join(f"{w} = {i}" for i, w in enumerate(rng.sample(WORDS, 4))) + "\n```")
        parts.append("| name | value |\n|---|---|\n" + "\n".join(f"| {rng.choice(WORDS)} | {rng.randint(1, 99)} |" for _ in range(3)))
    return "\n\n".join(parts)[:size]


def build_logs(path, conversations, turns_per, seed=2):
    """Conversations logged by llm's log_to_db, as the llm CLI logs them."""
    rng = random.Random(seed)
    db = sqlite_utils.Database(path)
    migrate(db)
    model = llm.get_model("steady")
    with db.conn:
        db.conn.execute("begin")
        for c in range(conversations):
            conversation = model.conversation()
            for t in range(turns_per):
                prompt = sentence(rng, 8)
                if rng.random() < 0.01:
                    prompt += f" {SEARCH_WORD}"
                response = conversation.prompt(prompt, chunks=20)
                response.text()
                response.log_to_db(db)
    db.close()


def build_legacy(path, conversations, turns_per, seed=3):
    """The same again in the pre-0.32 tables; returns one conversation id."""
    rng = random.Random(seed)
    db = sqlite_utils.Database(path)
    ids = [f"01f{c:023d}" for c in range(conversations)]
    with db.conn:
        db["conversations"].insert_all(
            ({"id": cid, "name": sentence(rng, 4), "model": "gpt-3.5-turbo"} for cid in ids),
            batch_size=1000,
        )
        db["responses"].insert_all(
            (
                {
                    "id": f"{cid}{t:02d}"[-26:].replace("01f", "01g", 1),
                    "model": "gpt-3.5-turbo",
                    "prompt": sentence(rng, 8) + (f" {SEARCH_WORD}" if rng.random() < 0.01 else ""),
                    "system": None,
                    "response": " ".join(sentence(rng) for _ in range(3)),
                    "options_json": "{}",
                    "conversation_id": cid,
                    "duration_ms": 1000,
                    "datetime_utc": "2024-01-01T00:00:00",
                }
                for cid in ids
                for t in range(turns_per)
            ),
            batch_size=1000,
        )
    db.close()
    return ids[-1]


def build_long_conversation(path, exchanges, reply_bytes=2000):
    """One conversation of ``exchanges`` prompts with markdown replies."""
    db = sqlite_utils.Database(path)
    model = llm.get_model("steady")
    conversation = model.conversation()
    with db.conn:
        db.conn.execute("begin")
        for i in range(exchanges):
            response = conversation.prompt(
                f"Question {i}: tell me more", text=markdown_reply(reply_bytes, seed=i), chunk_size=500
            )
            response.text()
            response.log_to_db(db)
    db.close()
    return conversation.id
