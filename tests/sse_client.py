"""A small reader of text/event-stream over a real socket, for the tests."""

import re
from dataclasses import dataclass

LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Event:
    name: str
    data: str
    id: str | None


def _lines(buffer: str):
    """The whole lines in ``buffer`` and what is left after them."""
    start, lines = 0, []
    for match in LINE_END.finditer(buffer):
        if match.group() == "\r" and match.end() == len(buffer):
            break  # a CR at the end may be the first half of CR LF
        lines.append(buffer[start : match.start()])
        start = match.end()
    return lines, buffer[start:]


def iter_lines(response):
    """Lines as the SSE spec splits them: on CR LF, CR or LF only (not on
    the Unicode separators that str.splitlines() also knows). Linear in the
    length of the stream, however long its events."""
    buffer = ""
    for text in response.iter_text():
        lines, buffer = _lines(buffer + text)
        yield from lines


class _Events:
    """Lines in, events out (and each comment as Event('comment', ...))."""

    def __init__(self):
        self.name, self.data, self.id = "message", [], None

    def line(self, line: str) -> Event | None:
        if line == "":
            event = Event(self.name, "\n".join(self.data), self.id) if self.data else None
            self.name, self.data = "message", []
            return event
        if line.startswith(":"):
            return Event("comment", line[1:].strip(), None)
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self.name = value
        elif field == "data":
            self.data.append(value)
        elif field == "id":
            self.id = value
        return None


def iter_events(response):
    """Yield each event of a response read with httpx (sync)."""
    events = _Events()
    for line in iter_lines(response):
        event = events.line(line)
        if event is not None:
            yield event


async def aiter_events(response):
    """The same, for an httpx.AsyncClient's response."""
    events, buffer = _Events(), ""
    async for text in response.aiter_text():
        lines, buffer = _lines(buffer + text)
        for line in lines:
            event = events.line(line)
            if event is not None:
                yield event


def read_until_final(client, url, **kwargs):
    """All events of one connection, up to and including done or error."""
    events = []
    with client.stream("GET", url, **kwargs) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for event in iter_events(response):
            events.append(event)
            if event.name in ("done", "error"):
                break
    return events
