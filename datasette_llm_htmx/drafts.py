"""What a person typed, kept a little while when a form without JavaScript
comes back with a problem: the POST answers with a redirect to the page
(a reload then does not send it again), and the page draws the form from
the draft, with the problem and its status.

Drafts live in this process's memory: a few minutes, a few hundred, for the
actor who typed them only. (Behind several worker processes, a redirect may
reach another one; the page then shows the form empty, and says so.)
"""

import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass

KEEP = 600.0  # seconds
MOST = 500


@dataclass
class Draft:
    actor_id: str | None
    fields: dict
    error: str
    status: int
    made: float


_drafts: OrderedDict[str, Draft] = OrderedDict()


def keep(actor_id: str | None, fields: dict, error: str, status: int) -> str:
    _expire()
    token = secrets.token_urlsafe(12)
    _drafts[token] = Draft(actor_id, dict(fields), error, status, time.monotonic())
    while len(_drafts) > MOST:
        _drafts.popitem(last=False)
    return token


def take(token: str | None, actor_id: str | None) -> Draft | None:
    """The draft, once (a reload after that draws the empty form)."""
    _expire()
    draft = _drafts.get(token or "")
    if draft is None or draft.actor_id != actor_id:
        return None
    del _drafts[token]
    return draft


def _expire() -> None:
    now = time.monotonic()
    while _drafts and now - next(iter(_drafts.values())).made > KEEP:
        _drafts.popitem(last=False)
