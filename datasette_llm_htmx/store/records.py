"""What a conversation and its messages are, whichever tables they come
from."""

import datetime
from dataclasses import dataclass, field

# A message that has no logged response (yet) is in one of these states.
IN_FLIGHT = ("pending", "running")
ENDED_UNLOGGED = ("stopped", "failed", "interrupted")


def utcnow() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


@dataclass
class Worker:
    """A process that generates replies, as it last reported itself."""

    id: str
    host: str
    pid: int
    process_start: str | None
    heartbeat_utc: str
    stopped_utc: str | None


@dataclass
class Message:
    """One prompt and its reply: an llm response once it is logged."""

    id: str
    conversation_id: str
    model_id: str
    prompt: str
    system: str | None
    text: str
    status: str  # done, or one of IN_FLIGHT or ENDED_UNLOGGED
    datetime_utc: str
    error: str | None = None
    options: dict = field(default_factory=dict)
    input_tokens: int | None = None
    output_tokens: int | None = None
    duration_ms: int | None = None
    worker: str | None = None  # the process generating it, while in flight
    worker_record: Worker | None = None
    updated_utc: str | None = None

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    @property
    def retryable(self) -> bool:
        return self.status in ENDED_UNLOGGED


@dataclass
class Conversation:
    id: str
    name: str | None
    model_id: str | None
    actor_id: str | None
    datetime_utc: str | None
    messages: list[Message]

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        if self.messages:
            return self.messages[0].prompt[:60] or "Untitled"
        return "Untitled"


@dataclass
class ListedConversation:
    """A row of the list on /-/llm."""

    id: str
    name: str
    model_id: str | None
    replies: int
    datetime_utc: str | None
    actor_id: str | None
