"""How a reply wakes the streams that follow it: new text wakes them all
together, at once after a quiet spell, and at most every BATCH_INTERVAL
while text flows (a thousand streams cost one timer a reply, not a timer
per stream per token); the end wakes them at once."""

import asyncio
import time

import llm
import pytest

from datasette_llm_htmx.generation import BATCH_INTERVAL, BATCH_MAX, Generation, batch_interval
from datasette_llm_htmx.store.records import Message, utcnow


def a_generation() -> Generation:
    message = Message(
        id="01aaaaaaaaaaaaaaaaaaaaaaaa", conversation_id="01bbbbbbbbbbbbbbbbbbbbbbbb",
        model_id="steady", prompt="Hello", system=None, text="", status="running",
        datetime_utc=utcnow(),
    )
    response = llm.get_async_model("steady").prompt("Hello")
    return Generation(message, None, response, True)


@pytest.mark.asyncio
async def test_followers_wake_together_at_most_every_batch_interval():
    generation = a_generation()
    wakes = [0] * 50

    async def follower(i):
        while not generation.finished:
            await generation.changed()
            wakes[i] += 1

    followers = [asyncio.create_task(follower(i)) for i in range(50)]
    await asyncio.sleep(0)
    start = time.monotonic()
    for _ in range(400):  # a token a millisecond
        generation.append("x")
        await asyncio.sleep(0.001)
    elapsed = time.monotonic() - start
    ended = time.monotonic()
    generation.end("done")
    await asyncio.wait_for(asyncio.gather(*followers), 1)
    assert time.monotonic() - ended < 0.02  # the end wakes them at once
    most = elapsed / BATCH_INTERVAL + 2
    assert all(3 <= count <= most for count in wakes), (wakes, most)


async def seconds_to_wake_on_text(generation) -> float:
    """How long a waiting follower sleeps after the reply's next text."""
    waiting = asyncio.create_task(generation.changed())
    await asyncio.sleep(0)
    start = time.monotonic()
    generation.append("Hello")
    await asyncio.wait_for(waiting, 1)
    seconds = time.monotonic() - start
    generation.end("done")
    return seconds


@pytest.mark.asyncio
async def test_the_first_text_after_a_quiet_spell_wakes_at_once():
    generation = a_generation()
    await asyncio.sleep(BATCH_INTERVAL)
    assert await seconds_to_wake_on_text(generation) < 0.01


def test_the_interval_grows_with_the_replies_running_at_once():
    assert batch_interval(1) == batch_interval(100) == BATCH_INTERVAL
    assert batch_interval(200) == pytest.approx(2 * BATCH_INTERVAL)
    assert batch_interval(500) == batch_interval(5000) == BATCH_MAX


@pytest.mark.asyncio
async def test_with_many_replies_running_followers_wake_less_often():
    generation = a_generation()
    generation.running_now = lambda: 1000  # a crowded server
    wakes = []

    async def follower():
        while not generation.finished:
            await generation.changed()
            wakes.append(time.monotonic())

    following = asyncio.create_task(follower())
    await asyncio.sleep(0)
    start = time.monotonic()
    while time.monotonic() - start < 1.0:  # a token every 10 ms for a second
        generation.append("x")
        await asyncio.sleep(0.01)
    generation.end("done")
    await asyncio.wait_for(following, 1)
    # the first text at once, then at most every BATCH_MAX, then the end
    assert wakes[0] - start < 0.02
    gaps = [later - earlier for earlier, later in zip(wakes, wakes[1:-1])]
    assert gaps and min(gaps) >= BATCH_MAX * 0.9, gaps
    assert len(wakes) <= 1 / BATCH_MAX + 3


@pytest.mark.asyncio
async def test_the_first_text_after_other_news_wakes_at_once_even_when_crowded():
    # "running" wakes the followers as the reply begins; the first text
    # after it is not held back by that wake-up (250 ms with 1,000 replies)
    generation = a_generation()
    generation.running_now = lambda: 1000
    generation.notify()  # the reply began
    assert await seconds_to_wake_on_text(generation) < 0.02
