"""The real-upstream benchmark (issue 16): llm's own OpenAI plugin, talking
to an OpenAI-compatible server over a local socket, with and without the
plugin in between.

    python bench/upstream.py            # full: about 5 minutes
    python bench/upstream.py --quick    # under a minute
    python bench/upstream.py --profile  # also: cProfile of llm's per-prompt cost

bench/openai_server.py runs as a separate process on a free port; llm finds it
through an ``extra-openai-models.yaml`` (model ``local-upstream``) in a
temporary LLM_USER_PATH, with the dummy key OPENAI_API_KEY=dummy-not-a-secret.
Nothing leaves 127.0.0.1. The plugin runs as real ``datasette serve``
subprocesses (tests/conftest.py's Server, through bench/serve_upstream.py):
one as shipped, with datasette_llm_htmx/openai_reuse.py, one without it
(llm's own client per prompt).

U1  one 20,000-token reply: tokens/s read (a) from the upstream directly with
    httpx, (b) by llm alone in this process (its async model), (c) through
    the plugin, from POST /-/llm/start to the stream's ``done`` event.
U2  time to first token, p50: upstream, llm alone, plugin new chat, plugin
    follow-up; each with and without client reuse.
U3  100 concurrent paced streams (200 tokens at 20 tokens/s) through the plugin.
U4  the server's RSS before and after each of five rounds of U3.
"""

import argparse
import asyncio
import contextlib
import cProfile
import html
import io
import os
import pathlib
import platform
import pstats
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

DUMMY_KEY = "dummy-not-a-secret"
MODEL_ID = "local-upstream"
# before llm reads anything: no real key can be picked up from here on
os.environ["OPENAI_API_KEY"] = DUMMY_KEY
os.environ.pop("LLM_OPENAI_SHOW_RESPONSES", None)

import httpx  # noqa: E402
import llm  # noqa: E402
from conftest import Server, free_port  # noqa: E402

import openai_server  # noqa: E402
from raw_http import RawClient  # noqa: E402
from run import Results, rss_mb  # noqa: E402
from sse_client import aiter_events  # noqa: E402
from datasette_llm_htmx import openai_reuse  # noqa: E402

STREAM = re.compile(r'sse-connect="([^"]+)"')
ID_OF = re.compile(r"/-/llm/([0-9a-z]{26})")


# Set-up


def make_user_dir(path: pathlib.Path, port: int) -> pathlib.Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "extra-openai-models.yaml").write_text(
        f"- model_id: {MODEL_ID}\n"
        f"  model_name: {MODEL_ID}\n"
        f"  api_base: http://127.0.0.1:{port}/v1\n"
        f"  api_key_name: {MODEL_ID}\n"  # so the key path is the real one
    )
    return path


class Upstream:
    def __init__(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self):
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "openai_server.py"), "--port", str(self.port)]
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(self.url + "/health", timeout=1)
                return self
            time.sleep(0.05)
        raise RuntimeError("the upstream did not start")

    def __exit__(self, *exc):
        self.process.terminate()
        self.process.wait(timeout=10)


class PluginServer(Server):
    """tests/conftest.py's Server, run through bench/serve_upstream.py (its
    default model is overridden by plugin_server's arguments)."""

    script = HERE / "serve_upstream.py"


def plugin_server(user_dir, reuse: bool, max_per_actor: int = 200) -> PluginServer:
    env = {"LLM_USER_PATH": str(user_dir), "OPENAI_API_KEY": DUMMY_KEY,
           "LLM_HTMX_BENCH_REUSE": "1" if reuse else "0"}
    args = ["-s", "plugins.datasette-llm-htmx.default_model", MODEL_ID,
            "-s", "plugins.datasette-llm-htmx.title_model", "false",
            "-s", "plugins.datasette-llm-htmx.max_generations_per_actor", str(max_per_actor)]
    return PluginServer(user_dir, extra_args=args, env=env).start()


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# Readers


def has_text(name, data) -> bool:
    if name == "token":
        return bool(data)
    if name == "snapshot":
        return bool(re.sub(r"<[^>]+>", "", data).strip())
    return False


async def upstream_stream(client: httpx.AsyncClient, tokens: int, rate: float = 0):
    """(seconds to the first content, seconds to [DONE], content chunks):
    the upstream read directly, each chunk's JSON decoded."""
    import json

    body = {"model": MODEL_ID, "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"tokens={tokens} rate={rate}"}]}
    start = time.perf_counter()
    first, count = None, 0
    async with client.stream("POST", "/chat/completions", json=body,
                             headers={"Authorization": f"Bearer {DUMMY_KEY}"}) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            if line == "data: [DONE]":
                break
            chunk = json.loads(line[6:])
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                count += 1
                if first is None:
                    first = time.perf_counter() - start
    return first, time.perf_counter() - start, count


async def llm_stream(model, tokens: int, rate: float = 0):
    """(seconds to the first chunk, seconds to the end, chunks): llm alone."""
    start = time.perf_counter()
    first, count = None, 0
    async for _chunk in model.prompt(f"tokens={tokens} rate={rate}"):
        count += 1
        if first is None:
            first = time.perf_counter() - start
    return first, time.perf_counter() - start, count


async def llm_events(model, tokens: int):
    """The same as llm_stream, through ``response.astream_events()``: the
    plugin's way of reading a model."""
    start = time.perf_counter()
    count = 0
    async for event in model.prompt(f"tokens={tokens}").astream_events():
        if event.type == "text":
            count += 1
    return None, time.perf_counter() - start, count


async def follow_stream(client, url, start, expected_length=None):
    """(first text, last text, done) seconds since ``start``, reading one
    reply's SSE stream until its done event."""
    first = last = None
    async with client.stream("GET", url) as response:
        assert response.status_code == 200, response.status_code
        async for event in aiter_events(response):
            name, data, id_ = event.name, event.data, event.id
            if first is None and has_text(name, data):
                first = time.perf_counter() - start
            if last is None and expected_length and id_ and int(id_) >= expected_length:
                last = time.perf_counter() - start
            if name == "done":
                return first, last, time.perf_counter() - start
            if name == "error":
                raise RuntimeError("error event: " + data[:500])
    raise RuntimeError("the stream ended without done")


# The text a streaming reply shows in a page or a follow-up's answer: its
# finished blocks and its tail (_live_text.html)
SHOWN = re.compile(r'<div class="reply-body markdown" id="m-[0-9a-z]{26}-part-\d+">(.*?)</div>\s*</div>\s*</div>', re.S)


def shows_text(html: str) -> bool:
    return any(re.sub(r"<[^>]+>", "", found).strip() for found in SHOWN.findall(html))


async def plugin_new_chat(client, prompt, expected_length=None):
    start = time.perf_counter()
    response = await client.post("/-/llm/start", data={"model_id": MODEL_ID, "prompt": prompt})
    assert response.status_code == 303, (response.status_code, response.text[:500])
    cid = ID_OF.search(response.headers["location"]).group(1)
    page = await client.get(f"/-/llm/{cid}")
    shown = time.perf_counter() - start if shows_text(page.text) else None  # the first words with the page
    match = STREAM.search(page.text)
    if match is None:  # finished before the page was drawn: the page has it all
        seconds = time.perf_counter() - start
        return cid, seconds, seconds, seconds
    first, last, done = await follow_stream(client, url=match.group(1), start=start,
                                            expected_length=expected_length)
    return cid, shown or first, last, done


async def plugin_follow_up(client, cid, prompt):
    start = time.perf_counter()
    response = await client.post(f"/-/llm/{cid}/prompt", data={"prompt": prompt},
                                 headers={"HX-Request": "true"})
    assert response.status_code == 200, (response.status_code, response.text[:500])
    shown = time.perf_counter() - start if shows_text(response.text) else None  # the first words with the answer
    match = STREAM.search(response.text)
    if match is None:
        seconds = time.perf_counter() - start
        return seconds, seconds
    first, _last, done = await follow_stream(client, match.group(1), start)
    return shown or first, done


async def raw_first_text(raw, start, answer: str):
    """Seconds since ``start`` to the reply's first text: in ``answer`` (the
    page, or a follow-up's htmx answer), else from its stream, read to its
    done so that the next prompt finds the conversation free."""
    first = time.perf_counter() - start if shows_text(answer) else None
    match = STREAM.search(answer)
    if match is None:
        return first or time.perf_counter() - start

    def on_event(name, data):
        nonlocal first
        if first is None and has_text(name, data):
            first = time.perf_counter() - start
        return name in ("done", "error")

    await raw.stream_until(html.unescape(match.group(1)), on_event)
    return first


async def raw_new_chat(raw, prompt):
    start = time.perf_counter()
    status, head, _ = await raw.request("POST", "/-/llm/start", {"model_id": MODEL_ID, "prompt": prompt})
    assert status == 303, status
    _status, _head, page = await raw.request("GET", head["location"])
    return await raw_first_text(raw, start, page)


async def raw_follow_up(raw, cid, prompt):
    start = time.perf_counter()
    status, _head, answer = await raw.request("POST", f"/-/llm/{cid}/prompt", {"prompt": prompt},
                                              headers=[("HX-Request", "true")])
    assert status == 200, (status, answer[:300])
    return await raw_first_text(raw, start, answer)


async def llm_follow_up(conversation, prompt):
    """First chunk of a prompt in an llm conversation (its history sent
    along, as the plugin's follow-ups send theirs), then the rest."""
    start = time.perf_counter()
    first = None
    async for chunk in conversation.prompt(prompt):
        if first is None and chunk:
            first = time.perf_counter() - start
    return first


def raw_client(server):
    return RawClient(server.port, "ds_actor=" + server.root_cookies["ds_actor"])


def async_client(server, **kwargs):
    return httpx.AsyncClient(base_url=server.url, cookies=server.root_cookies, timeout=120, **kwargs)


# U1: one long reply


async def bench_throughput(rows, upstream, servers, tokens, runs):
    model = llm.get_async_model(MODEL_ID)
    expected = len(openai_server.reply_text(tokens))
    rates = {"a": [], "b": [], "b2": [], "c": [], "c_last": []}
    async with httpx.AsyncClient(base_url=upstream.url, timeout=120) as direct, \
            async_client(servers["plain"]) as client:
        await upstream_stream(direct, 10)
        await llm_stream(model, 10)
        await plugin_new_chat(client, "tokens=10")
        for run in range(runs):
            _f, seconds, count = await upstream_stream(direct, tokens)
            assert count == tokens, count
            rates["a"].append(tokens / seconds)
            _f, seconds, count = await llm_stream(model, tokens)
            assert count >= tokens * 0.99, count  # a chunk can carry two tokens
            rates["b"].append(tokens / seconds)
            _f, seconds, count = await llm_events(model, tokens)
            rates["b2"].append(tokens / seconds)
            _cid, _first, last, done = await plugin_new_chat(client, f"tokens={tokens}", expected)
            rates["c"].append(tokens / done)
            rates["c_last"].append(tokens / last)
            print(f"  U1 run {run + 1}: a {rates['a'][-1]:,.0f}  b {rates['b'][-1]:,.0f}  "
                  f"b2 {rates['b2'][-1]:,.0f}  c {rates['c'][-1]:,.0f} (last token {rates['c_last'][-1]:,.0f}) tokens/s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    ratios_cb = statistics.median(c / b for c, b in zip(rates["c"], rates["b"]))
    ratios_lb = statistics.median(c / b for c, b in zip(rates["c_last"], rates["b"]))
    rows.add("U1", f"(a) upstream read directly with httpx, {tokens:,} tokens", med["a"], "tokens/s")
    rows.add("U1", "(b) llm alone, in-process async model", med["b"], "tokens/s",
             note=f"{med['b'] / med['a']:.2f} of (a)")
    rows.add("U1", "(b2) llm alone, through response.astream_events() as the plugin reads it",
             med["b2"], "tokens/s", note=f"{med['b2'] / med['b']:.2f} of (b)")
    rows.add("U1", "(c) through the plugin: POST /-/llm/start to the done event", med["c"], "tokens/s",
             note=f"{med['c'] / med['a']:.2f} of (a)")
    rows.add("U1", "(c)/(b), paired by run", ratios_cb, "ratio", target=0.95, better="higher")
    rows.add("U1", "... to the last token event instead of done", ratios_lb, "ratio",
             note=f"{med['c_last']:,.0f} tokens/s")


# U2: time to first token


async def bench_first_token(rows, upstream, servers, prompts):
    plain = llm.get_async_model(MODEL_ID)
    reused = openai_reuse.reuse_clients(llm.get_async_model(MODEL_ID))
    names = ("upstream", "llm", "llm_reuse", "llm_follow", "llm_follow_reuse", "new", "new_reuse",
             "follow", "follow_reuse", "raw_new", "raw_new_reuse", "raw_follow", "raw_follow_reuse")
    times = {name: [] for name in names}
    async with httpx.AsyncClient(base_url=upstream.url, timeout=30) as direct, \
            async_client(servers["plain"]) as c_plain, async_client(servers["reuse"]) as c_reuse, \
            raw_client(servers["plain"]) as r_plain, raw_client(servers["reuse"]) as r_reuse:
        # warm every path; one conversation each for the follow-ups, each
        # with two exchanges before the first measured one
        await upstream_stream(direct, 5)
        await llm_stream(plain, 5)
        await llm_stream(reused, 5)
        conversations = {"llm_follow": plain.conversation(), "llm_follow_reuse": reused.conversation()}
        for conversation in conversations.values():
            for _ in range(2):
                await llm_follow_up(conversation, "tokens=5")
        cids = {}
        for name, client in (("follow", c_plain), ("follow_reuse", c_reuse)):
            cids[name], *_ = await plugin_new_chat(client, "tokens=5")
            await plugin_follow_up(client, cids[name], "tokens=5")
        for name, server, raw in (("raw_follow", servers["plain"], r_plain),
                                  ("raw_follow_reuse", servers["reuse"], r_reuse)):
            async with async_client(server) as client:
                cids[name], *_ = await plugin_new_chat(client, "tokens=5")
            await raw_follow_up(raw, cids[name], "tokens=5")
        # The first token comes at once; the next four at 50 a second, so
        # that the reply is still streaming when the page asks for it.
        short = "tokens=5 rate=50"
        for i in range(prompts):
            # round-robin, so every path meets the same moments of the machine
            text = f"{short} {i}"
            times["upstream"].append((await upstream_stream(direct, 5, 50))[0])
            times["llm"].append((await llm_stream(plain, 5, 50))[0])
            times["llm_reuse"].append((await llm_stream(reused, 5, 50))[0])
            for name, conversation in conversations.items():
                times[name].append(await llm_follow_up(conversation, text))
            times["new"].append((await plugin_new_chat(c_plain, text))[1])
            times["new_reuse"].append((await plugin_new_chat(c_reuse, text))[1])
            times["follow"].append((await plugin_follow_up(c_plain, cids["follow"], text))[0])
            times["follow_reuse"].append((await plugin_follow_up(c_reuse, cids["follow_reuse"], text))[0])
            times["raw_new"].append(await raw_new_chat(r_plain, text))
            times["raw_new_reuse"].append(await raw_new_chat(r_reuse, text))
            times["raw_follow"].append(await raw_follow_up(r_plain, cids["raw_follow"], text))
            times["raw_follow_reuse"].append(await raw_follow_up(r_reuse, cids["raw_follow_reuse"], text))
            await asyncio.sleep(0.02)  # let llm's dropped clients close
    p50 = {name: statistics.median(values) * 1000 for name, values in times.items()}
    p90 = {name: statistics.quantiles(values, n=10)[-1] * 1000 for name, values in times.items()}
    n = f"p50 of {prompts}"

    def row(measure, name, over=None, target=None):
        rows.add("U2", measure, p50[name], "ms", note=f"p90 {p90[name]:.1f}")
        if over is not None:
            rows.add("U2", f"... added over {over[1]}", p50[name] - p50[over[0]], "ms", target=target)

    rows.add("U2", f"first token, upstream read directly (kept-alive connection), {n}", p50["upstream"], "ms")
    row("first token, llm alone, a new prompt (a new AsyncOpenAI client per prompt, as llm does)", "llm")
    row("first token, llm alone, a new prompt, openai_reuse", "llm_reuse")
    row("first token, llm alone, a follow-up (same history as the plugin's)", "llm_follow")
    row("first token, llm alone, a follow-up, openai_reuse", "llm_follow_reuse")
    # The figures to meet: the plugin through a lean client (raw_http.py)
    row("plugin new chat, lean client: POST start, 303, page (first words in it) or stream",
        "raw_new", ("llm", "llm alone"), 5)
    row("plugin follow-up, lean client: htmx POST (first words in its answer) or stream",
        "raw_follow", ("llm_follow", "llm alone's follow-up"), 5)
    row("plugin new chat, lean client, openai_reuse on", "raw_new_reuse",
        ("llm_reuse", "llm alone with openai_reuse"), 5)
    row("plugin follow-up, lean client, openai_reuse on", "raw_follow_reuse",
        ("llm_follow_reuse", "llm alone's follow-up with openai_reuse"), 5)
    # The same through httpx, whose own 2-3 ms a request are the client's
    row("plugin new chat, httpx client", "new", ("llm", "llm alone"))
    row("plugin follow-up, httpx client", "follow", ("llm_follow", "llm alone's follow-up"))
    row("plugin new chat, httpx client, openai_reuse on", "new_reuse",
        ("llm_reuse", "llm alone with openai_reuse"))
    row("plugin follow-up, httpx client, openai_reuse on", "follow_reuse",
        ("llm_follow_reuse", "llm alone's follow-up with openai_reuse"))
    rows.add("U2", "plugin follow-up: openai_reuse off minus on", p50["raw_follow"] - p50["raw_follow_reuse"], "ms")


# The per-prompt cost inside llm


async def per_prompt_costs(rows, prompts):
    """What llm does per prompt before the request leaves, piece by piece."""
    import ssl

    import certifi
    import openai

    model = llm.get_async_model(MODEL_ID)
    parts = {"model.get_key()": [], "model.get_client(async_=True)": [],
             "ssl.create_default_context(certifi)": [], "openai.AsyncOpenAI(http_client=shared)": []}
    shared = httpx_for_openai = None
    with contextlib.suppress(Exception):
        httpx_for_openai = openai.DefaultAsyncHttpxClient()
    for _ in range(prompts):
        start = time.perf_counter()
        model.get_key()
        parts["model.get_key()"].append(time.perf_counter() - start)
        start = time.perf_counter()
        client = model.get_client(None, async_=True)
        parts["model.get_client(async_=True)"].append(time.perf_counter() - start)
        await client.close()
        start = time.perf_counter()
        ssl.create_default_context(cafile=certifi.where())
        parts["ssl.create_default_context(certifi)"].append(time.perf_counter() - start)
        if httpx_for_openai is not None:
            start = time.perf_counter()
            shared = openai.AsyncOpenAI(api_key=DUMMY_KEY, base_url=model.api_base, http_client=httpx_for_openai)
            parts["openai.AsyncOpenAI(http_client=shared)"].append(time.perf_counter() - start)
    if httpx_for_openai is not None:
        await httpx_for_openai.aclose()
    del shared
    for name, values in parts.items():
        if values:
            rows.add("L", f"llm per prompt: {name}, p50", statistics.median(values) * 1000, "ms")


async def profile_long_reply(tokens: int) -> str:
    """cProfile of one long reply through llm alone: the cost per chunk."""
    model = llm.get_async_model(MODEL_ID)
    profile = cProfile.Profile()
    profile.enable()
    await llm_stream(model, tokens)
    profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(25)
    return out.getvalue()


async def profile_prompts(prompts: int) -> str:
    """cProfile of ``prompts`` short prompts through llm alone: where the
    per-prompt time goes."""
    model = llm.get_async_model(MODEL_ID)
    await llm_stream(model, 5)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(prompts):
        await llm_stream(model, 5)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    stats.sort_stats("cumulative").print_stats(35)
    return out.getvalue()


# U3 and U4: many paced streams, and memory


async def one_user(server, i, tokens, rate):
    """A browser's start: POST, 303, page, stream to its done; (first text,
    done) in seconds. Over raw sockets: an httpx client per user builds an
    SSL context (about 17 ms of CPU each, 1.7 s for a round's 100 users, on
    the two cores the server has)."""
    async with raw_client(server) as raw:
        start = time.perf_counter()
        status, head, _ = await raw.request(
            "POST", "/-/llm/start", {"model_id": MODEL_ID, "prompt": f"tokens={tokens} rate={rate} user {i}"}
        )
        assert status == 303, status
        _status, _head, page = await raw.request("GET", head["location"])
        first = await raw_first_text(raw, start, page)
        return first, time.perf_counter() - start


async def round_of_streams(server, count, tokens, rate):
    peak = rss_mb(server.process.pid)

    async def watch():
        nonlocal peak
        while True:
            peak = max(peak, rss_mb(server.process.pid))
            await asyncio.sleep(0.2)

    watcher = asyncio.ensure_future(watch())
    start = time.perf_counter()
    results = await asyncio.gather(*(one_user(server, i, tokens, rate) for i in range(count)),
                                   return_exceptions=True)
    wall = time.perf_counter() - start
    watcher.cancel()
    failures = [r for r in results if isinstance(r, BaseException)]
    done = [r for r in results if not isinstance(r, BaseException)]
    firsts = sorted(r[0] for r in done)
    if firsts:
        print(f"    first tokens: median {statistics.median(firsts):.2f} s, last {firsts[-1]:.2f} s; "
              f"first token to done: median {statistics.median(d - f for f, d in done):.2f} s "
              f"(paced: {(tokens - 1) / rate:.2f} s)", flush=True)
    done = [d for _f, d in done]
    return wall, done, failures, peak


async def bench_concurrency(rows, servers, count, tokens, rate, rounds, settle=3.0, upstream=None):
    ideal = tokens / rate
    for name, label in (("plain", ""), ("reuse", ", openai_reuse on")):
        if name not in servers:
            continue
        server = servers[name]
        walls, growth, lines, own = [], [], [], []
        for r in range(rounds):
            before = rss_mb(server.process.pid)
            pids = {"server": server.process.pid, "bench clients": os.getpid()}
            if upstream is not None:
                pids["upstream"] = upstream.process.pid
            cpu = {who: cpu_seconds(pid) for who, pid in pids.items()}
            wall, done, failures, peak = await round_of_streams(server, count, tokens, rate)
            cpu = {who: cpu_seconds(pid) - cpu[who] for who, pid in pids.items()}
            print("    CPU seconds in the round: " + ", ".join(f"{who} {s:.1f}" for who, s in cpu.items())
                  + f" (2 cores: {2 * wall:.1f} available)", flush=True)
            await asyncio.sleep(settle)
            after = rss_mb(server.process.pid)
            walls.append(wall)
            own.extend(done)
            growth.append(after - before)
            lines.append(f"{before:.0f}→{peak:.0f}→{after:.0f}")
            print(f"  U3 {name} round {r + 1}: {len(done)}/{count} done in {wall:.2f} s "
                  f"(slowest reply {max(done, default=0):.2f} s); RSS MB before {before:.0f}, "
                  f"peak {peak:.0f}, after {after:.0f}"
                  + (f"; {len(failures)} failed: {failures[0]!r}" if failures else ""), flush=True)
            if failures:
                rows.add("U3", f"FAILED streams{label}, round {r + 1}", len(failures), "streams", target=0)
        rows.add("U3", f"{count} concurrent streams, {tokens} tokens at {rate:g}/s{label}: "
                 f"wall ÷ paced ideal ({ideal:g} s), median of {rounds} rounds",
                 statistics.median(walls) / ideal, "ratio", target=1.15,
                 note="walls " + ", ".join(f"{w:.2f}" for w in walls) + " s")
        rows.add("U3", f"... each stream, its POST to its done event ÷ ideal: median, all rounds{label}",
                 statistics.median(own) / ideal, "ratio",
                 note=f"slowest {max(own) / ideal:.2f}")
        rows.add("U4", f"server RSS, after minus before each round{label}: the largest",
                 max(growth), "MB", target=50,
                 note="MB before→peak→after " + "; ".join(lines))


# Results


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="under a minute")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of llm's per-prompt cost")
    parser.add_argument("--only", default="", help="comma-separated: U1,U2,U3,L")
    args = parser.parse_args()
    only = {part.strip().upper() for part in args.only.split(",") if part.strip()}
    quick = args.quick
    # a SIGTERM still stops the servers this script started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    def wanted(name):
        return not only or name in only

    load = os.getloadavg()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"llm {llm_version()}, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"{'quick' if quick else 'full'} mode\n", flush=True)
    rows = Results()
    with tempfile.TemporaryDirectory() as tmp, Upstream() as upstream:
        user_dir = make_user_dir(pathlib.Path(tmp) / "llm", upstream.port)
        os.environ["LLM_USER_PATH"] = str(user_dir)
        servers = {}
        try:
            servers["plain"] = plugin_server(make_user_dir(pathlib.Path(tmp) / "plain", upstream.port), False)
            servers["reuse"] = plugin_server(make_user_dir(pathlib.Path(tmp) / "reuse", upstream.port), True)

            async def run():
                if wanted("U1"):
                    await bench_throughput(rows, upstream, servers, tokens=20_000, runs=2 if quick else 7)
                if wanted("U2"):
                    await bench_first_token(rows, upstream, servers, prompts=10 if quick else 30)
                if wanted("L"):
                    await per_prompt_costs(rows, prompts=10 if quick else 30)
                if wanted("U3"):
                    if quick:
                        await bench_concurrency(rows, {"reuse": servers["reuse"]}, count=50, tokens=100,
                                                rate=20, rounds=1, settle=1.0, upstream=upstream)
                    else:
                        await bench_concurrency(rows, servers, count=100, tokens=200, rate=20, rounds=5,
                                                upstream=upstream)
                if args.profile:
                    print(await profile_prompts(30))
                    print(await profile_long_reply(20_000))

            asyncio.run(run())
        finally:
            for server in servers.values():
                server.stop()
    print()
    print(rows.markdown())
    failed = [row for row in rows.rows if row[6] == "MISSED BY 2x"]
    if failed:
        print("\nMissed by more than 2x:", [row[1] for row in failed])
        return 1
    return 0


def llm_version():
    from importlib.metadata import version

    return version("llm")


if __name__ == "__main__":
    sys.exit(main())
