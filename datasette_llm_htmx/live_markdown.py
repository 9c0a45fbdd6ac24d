"""A reply's markdown while it is written: the blocks that can no longer
change, each rendered and sanitized once, and after them the tail, the
text still being written, shown as plain text (or, inside a code fence not
yet closed, as code).

Markdown is not local: a list goes on after a blank line, a line of `===`
turns the paragraph above it into a heading, a table grows row by row, a
fence runs until it is closed. So a top-level block counts as finished only
when markdown-it, parsing the whole lines written so far (a line still being
written may change what its block is), shows that nothing after can change
it:

- another top-level block follows it, with blank lines between them;
- it closes itself: a fenced code block with its closing fence, or an ATX
  heading or a thematic break with a line after it;
- a code fence opens right under a paragraph (the fence ends the paragraph);
- it is a paragraph, heading, thematic break, table or blockquote, and a
  blank line follows it (lists and indented code go on after blank lines).

A line still being written counts when it begins with a letter in its first
column: whatever follows, it starts a paragraph (or a table) there, so the
list above it is finished while the paragraph after it is written.

Finished blocks are then rendered together (rendering.render_blocks, the
renderer of finished replies), so that their HTML is the HTML the finished
reply has: tests/test_live_markdown.py checks that on a corpus and on
random replies.

Link reference definitions: blocks are rendered with the definitions seen so
far. A definition that comes after a link using it resolves that link only
when the reply ends: a reply that defines any is rendered whole again then,
and the stream sends it whole if it differs from what was shown (see
views/stream.py). Anything else is shown as it will stay.

Cost: the tail is parsed (block structure only, without the inline work)
when a line arrives that could end a block, and never more than
PARSE_BUDGET times the text's length in all (plus PARSE_ALLOWANCE): a block
that stays open across many blank lines, a long loose list, is looked at
less often rather than at a quadratic cost. Rendering is linear.

This object is changed only on the event loop; the parsing and rendering
it asks for run in the render thread (``plan`` is a pure function).
"""

import asyncio
import re
from bisect import bisect_right
from dataclasses import dataclass

from markupsafe import Markup

from . import rendering

PARSE_BUDGET = 4
PARSE_ALLOWANCE = 64 * 1024

LINE_END = re.compile(r"\r\n|\r|\n")
# The start of a line that might open or close a code fence
FENCE_LIKE = re.compile(r" {0,3}(?:```|~~~)")
ATX_LIKE = re.compile(r" {0,3}#")
# Blocks that a blank line closes (lists and indented code go on after one)
CLOSED_BY_BLANK = {"paragraph_open", "heading_open", "hr", "table_open", "blockquote_open"}


@dataclass
class Plan:
    """What a parse found: ``consumed`` characters of the tail are finished
    blocks, whose HTML is ``html``; the tail then shows as code from
    ``code_from`` (relative to the new tail), or as text when None."""

    consumed: int
    html: Markup | None
    code_from: int | None
    parsed: int  # characters parsed, for the budget
    final: bool = False


class LiveMarkdown:
    """One text part of a reply, as it is written."""

    def __init__(self):
        self.blocks: list[Markup] = []  # HTML of the blocks finished at each split
        self.split = 0  # characters in finished blocks
        self.length = 0  # characters fed
        self.code = False  # the tail is inside a code fence not yet closed
        self.shown_from = 0  # where the tail's shown text begins
        self.complete = False  # all of it is in blocks
        self.lock = asyncio.Lock()  # one parse at a time, for all its followers
        # the chunk list it is fed from, and how many of them (following.py)
        self.source: list[str] | None = None
        self.fed_chunks = 0
        self._pieces: list[str] = []  # the tail, from self.split
        self._starts: list[int] = []  # the offset of each piece in the text
        self._env: dict = {}  # link reference definitions of finished blocks
        self._key = rendering.text_key()
        self._work = 0
        self._due = False
        # the line being fed: whether it is blank so far, and how it begins
        self._line_blank = True
        self._line_head = ""
        self._previous_blank = True
        self._previous_atx = False
        self._after_cr = False
        self._planned = 0

    # Feeding

    def feed(self, text: str) -> None:
        """Add text that arrived (on the event loop)."""
        if not text or self.complete:
            return
        self._key.update(rendering.encoded(text))
        self._starts.append(self.length)
        self._pieces.append(text)
        self.length += len(text)
        self._watch_lines(text)

    def _watch_lines(self, text: str) -> None:
        """Note whether a line just ended that could end a block: blank, or
        after a blank line or a heading, or a possible fence. Looks at the
        new text only."""
        start = 0
        if self._after_cr and text.startswith("\n"):
            start = 1  # the second half of a CR LF
        self._after_cr = text.endswith("\r")
        for end in LINE_END.finditer(text, start):
            self._take_line(text[start : end.start()])
            self._end_line()
            start = end.end()
        self._take_line(text[start:])

    def _take_line(self, piece: str) -> None:
        if not self._line_head and piece and self._previous_blank and piece[0].isalpha():
            self._due = self._due or not self.code  # a paragraph begins after a blank line
        if len(self._line_head) < 8:
            self._line_head += piece[:8]
        if self._line_blank and piece.strip(" \t"):
            self._line_blank = False

    def _end_line(self) -> None:
        head, blank = self._line_head, self._line_blank
        fence = bool(FENCE_LIKE.match(head))
        if self.code:
            # inside an open fence only a closing fence can end anything
            self._due = self._due or fence
        elif blank or fence or self._previous_blank or self._previous_atx:
            self._due = True
        self._previous_blank, self._previous_atx = blank, bool(ATX_LIKE.match(head))
        self._line_head, self._line_blank = "", True

    def due(self) -> bool:
        """Whether a parse may find a block finished, within the budget."""
        tail = self.length - self.split
        budget = PARSE_BUDGET * self.length + PARSE_ALLOWANCE
        return self._due and not self.complete and self._work + tail <= budget

    # Parsing: plan() runs in the render thread, the rest on the loop

    def tail_text(self) -> str:
        """The tail as one string (kept so: the next join is free)."""
        if len(self._pieces) > 1:
            self._pieces = ["".join(self._pieces)]
            self._starts = [self.split]
        return self._pieces[0] if self._pieces else ""

    def planner(self, final: bool = False):
        """(function, arguments) to run in the render thread."""
        self._due = False
        self._planned = self.length
        return plan, (self.tail_text(), self._env, final)

    def apply(self, found: Plan) -> None:
        """Take what a parse found (on the event loop, with nothing fed
        since it was asked for)."""
        if self.length != self._planned:
            raise RuntimeError("text was fed while a parse ran")
        self._work += found.parsed
        if found.html is not None:
            self.blocks.append(found.html)
            rest = self.tail_text()[found.consumed :]
            self.split += found.consumed
            self._pieces = [rest] if rest else []
            self._starts = [self.split] if rest else []
        if found.final:
            self.complete = True
            if self.exact:
                rendering.remember(self._key.digest(), Markup("".join(self.blocks)))
        self.code = found.code_from is not None
        self.shown_from = self.split + (found.code_from or 0)

    @property
    def exact(self) -> bool:
        """Whether the blocks are the finished reply's HTML by construction:
        no link reference definition could have changed an earlier block."""
        return not self._env.get("references")

    def html(self) -> str:
        return "".join(self.blocks)

    # Reading

    def text_from(self, offset: int, limit: int | None = None) -> str:
        """The text fed from ``offset`` (not before the tail), at most
        ``limit`` characters of it."""
        offset = max(offset, self.split)
        end = self.length if limit is None else min(self.length, offset + limit)
        if offset >= end:
            return ""
        at = max(bisect_right(self._starts, offset) - 1, 0)
        taken = []
        while at < len(self._pieces) and self._starts[at] < end:
            start = self._starts[at]
            taken.append(self._pieces[at][max(offset - start, 0) : end - start])
            at += 1
        return "".join(taken)

    def pieces_from(self, offset: int):
        offset = max(offset, self.split)
        if offset >= self.length:
            return
        at = max(bisect_right(self._starts, offset) - 1, 0)
        yield self._pieces[at][offset - self._starts[at] :]
        yield from self._pieces[at + 1 :]


def plan(text: str, env: dict, final: bool) -> Plan:
    """Which of the tail's blocks are finished, rendered; and whether the
    tail then opens with a fence not yet closed. ``env`` gains the link
    definitions of what is rendered."""
    if final:
        return Plan(len(text), rendering.render_blocks(text, env), None, len(text), final=True)
    end = _whole_lines(text)
    if text[end : end + 1].isalpha():
        end = len(text)  # a line begun with a letter: its block is known
    if end == 0:
        return Plan(0, None, None, 0)
    starts = [0] + [m.end() for m in LINE_END.finditer(text, 0, end)]
    if starts[-1] < end:
        starts.append(end)  # the line being written, taken as it stands
    # starts[i] is where line i begins; starts[-1] == end (no line there)
    lines = [text[starts[i] : starts[i + 1]].rstrip("\r\n") for i in range(len(starts) - 1)]
    blank = [not line.strip(" \t") for line in lines]
    blocks = [
        (token, token.map[0], token.map[1])
        for token in rendering.block_tokens(text[:end])
        if token.level == 0 and token.nesting != -1 and token.map
    ]
    count, line = _finished(blocks, lines, blank)
    code_from = None
    if count < len(blocks) and count == len(blocks) - 1:
        token, start, stop = blocks[count]
        if (
            token.type == "fence"
            and not _closed_fence(token, lines, start, stop)
            and all(blank[line:start])
        ):
            code_from = starts[start + 1] - starts[line]
    if line == 0:
        return Plan(0, None, code_from, end)
    consumed = starts[line]
    return Plan(consumed, rendering.render_blocks(text[:consumed], env), code_from, end)


def _whole_lines(text: str) -> int:
    """Where the whole lines end: after the last line end, a CR at the very
    end excepted (it may be the first half of a CR LF)."""
    end = max(text.rfind("\n"), text.rfind("\r", 0, len(text) - 1)) + 1
    return end


def _finished(blocks, lines, blank) -> tuple[int, int]:
    """(how many blocks are finished, the line the tail then starts at)."""
    count, line = 0, 0
    total = len(lines)
    for i, (token, start, stop) in enumerate(blocks):
        following = blocks[i + 1] if i + 1 < len(blocks) else None
        kind = token.type
        if kind == "fence" and _closed_fence(token, lines, start, stop):
            count, line = i + 1, stop
            continue
        if (kind == "hr" or (kind == "heading_open" and token.markup.startswith("#"))) and stop < total:
            count, line = i + 1, stop
            continue
        if following is not None:
            next_start = following[1]
            # (a list's lines take in the blank lines after it)
            if blank[next_start - 1] and (next_start == stop or blank[stop]):
                count, line = i + 1, next_start
                continue
            if next_start == stop and kind == "paragraph_open" and following[0].type == "fence":
                count, line = i + 1, next_start
                continue
            break
        if stop < total and all(blank[stop:]) and kind in CLOSED_BY_BLANK:
            count, line = i + 1, total
        break
    return count, line


def _closed_fence(token, lines, start, stop) -> bool:
    if stop - start < 2:
        return False
    mark = token.markup
    closing = re.fullmatch(r" {0,3}(%s{%d,})[ \t]*" % (re.escape(mark[0]), len(mark)), lines[stop - 1])
    return closing is not None
