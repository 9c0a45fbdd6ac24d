"""Datasette events for what happens in the chat, for plugins that track
them (datasette-events-db and the like). They name conversations and
models, never what anyone typed: a prompt is private text."""

from dataclasses import dataclass

from datasette.events import Event


@dataclass
class ConversationStarted(Event):
    name = "llm-conversation-start"
    conversation_id: str
    model_id: str


@dataclass
class PromptSent(Event):
    """Every prompt: the first, a follow-up, a retry, a regenerate, an edit."""

    name = "llm-prompt"
    conversation_id: str
    message_id: str
    model_id: str


@dataclass
class ConversationRenamed(Event):
    name = "llm-conversation-rename"
    conversation_id: str


@dataclass
class ConversationDeleted(Event):
    name = "llm-conversation-delete"
    conversation_id: str


ALL = [ConversationStarted, PromptSent, ConversationRenamed, ConversationDeleted]
