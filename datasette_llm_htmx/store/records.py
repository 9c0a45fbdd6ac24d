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
class Fragment:
    """Text an llm prompt was built from, besides what was typed: a file,
    a URL, a table (`llm -f`)."""

    source: str | None
    content: str
    hash: str | None = None


@dataclass
class Attachment:
    """A file sent with a prompt (or returned by a tool). Its bytes stay in
    llm's ``attachments`` table; a URL attachment is only its URL."""

    id: str
    type: str | None
    size: int | None = None
    url: str | None = None
    name: str | None = None  # the file name, where one is known

    @property
    def is_image(self) -> bool:
        return (self.type or "") in INLINE_IMAGE_TYPES and not self.url


# Image types the plugin serves to be shown inline. Anything else (SVG and
# HTML included: they can carry script) is only ever a download.
INLINE_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON, as the model wrote it
    call_id: str | None = None


@dataclass
class ToolResult:
    name: str
    output: str
    call_id: str | None = None
    error: str | None = None  # "ClassName: message" when the tool raised
    attachments: list[Attachment] = field(default_factory=list)


@dataclass
class ReplyPart:
    """One part of a reply, in order: its text (markdown), what the model
    reasoned, or a tool it called."""

    kind: str  # text, reasoning, tool_call or tool_result
    text: str = ""
    tool_call: ToolCall | None = None
    tool_result: ToolResult | None = None  # a tool the chain ran, live
    seconds: float | None = None  # how long reasoning took, when known


@dataclass
class Alternative:
    """A turn that answered the same history as another: a regenerated
    reply, or an edited prompt and its reply, in the thread it lives in."""

    thread_id: str
    turn_id: str


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
    cost_nanocents: int | None = None  # by datasette-llm-accountant's pricing
    output_tokens: int | None = None
    duration_ms: int | None = None
    worker: str | None = None  # the process generating it, while in flight
    worker_record: Worker | None = None
    updated_utc: str | None = None
    # What else the prompt carried; ``prompt`` is only what was typed
    fragments: list[Fragment] = field(default_factory=list)
    system_fragments: list[Fragment] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    tool_results: list[ToolResult] = field(default_factory=list)
    # The reply in its parts; ``text`` is its text parts together
    parts: list[ReplyPart] = field(default_factory=list)
    # the system prompt is shown where it is set or changes, not again
    show_system: bool = True
    # the thread llm logged it in (a conversation's forks are threads too),
    # and the turns that answered the same history, itself among them
    thread_id: str | None = None
    alternatives: list[Alternative] = field(default_factory=list)

    @property
    def alternative_index(self) -> int:
        return next((i for i, a in enumerate(self.alternatives) if a.turn_id == self.id), 0)

    @property
    def reply_parts(self) -> list[ReplyPart]:
        """The parts to draw: the recorded ones, or the text alone."""
        if self.parts:
            return self.parts
        return [ReplyPart("text", self.text)] if self.text or not self.in_flight else []

    @property
    def reasoning(self) -> str:
        return "".join(part.text for part in self.parts if part.kind == "reasoning")

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [part.tool_call for part in self.parts if part.kind == "tool_call"]

    @property
    def in_flight(self) -> bool:
        return self.status in IN_FLIGHT

    @property
    def retryable(self) -> bool:
        return self.status in ENDED_UNLOGGED


@dataclass
class Conversation:
    id: str  # the thread shown: the conversation's first, or one of its forks
    name: str | None
    model_id: str | None
    actor_id: str | None
    datetime_utc: str | None
    messages: list[Message]
    root_id: str | None = None  # the thread it started as

    @property
    def title(self) -> str:
        if self.name:
            return self.name
        if self.messages:
            return " ".join(self.messages[0].prompt.split())[:60] or "Untitled"
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
    last_activity: str | None = None
