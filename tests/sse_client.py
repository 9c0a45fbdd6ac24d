"""A small reader of text/event-stream over a real socket, for the tests."""

import re
from dataclasses import dataclass

LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass
class Event:
    name: str
    data: str
    id: str | None


def iter_lines(response):
    """Lines as the SSE spec splits them: on CR LF, CR or LF only (not on
    the Unicode separators that str.splitlines() also knows). Linear in the
    length of the stream, however long its events."""
    buffer = ""
    for text in response.iter_text():
        buffer += text
        start = 0
        for match in LINE_END.finditer(buffer):
            if match.group() == "\r" and match.end() == len(buffer):
                break  # a CR at the end may be the first half of CR LF
            yield buffer[start : match.start()]
            start = match.end()
        buffer = buffer[start:]


def iter_events(response):
    """Yield each event (and each comment as Event('comment', ...))."""
    name, data, id_ = "message", [], None
    for line in iter_lines(response):
        if line == "":
            if data:
                yield Event(name, "\n".join(data), id_)
            name, data = "message", []
            continue
        if line.startswith(":"):
            yield Event("comment", line[1:].strip(), None)
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
        elif field == "id":
            id_ = value


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
