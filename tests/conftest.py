import os
import pathlib
import socket
import subprocess
import sys
import time

import httpx
import llm.plugins
import pytest
import pytest_asyncio
from datasette.app import Datasette

import llm_test_models
from helpers import cid_from, stream_url_of_last
from sse_client import read_until_final
from xss_payloads import PAYLOADS

HERE = pathlib.Path(__file__).parent
SECRET = "test-secret-not-for-production"
THIS_MODULE = sys.modules[__name__]

if not llm.plugins.pm.has_plugin("llm-htmx-test-models"):
    llm.plugins.pm.register(llm_test_models, name="llm-htmx-test-models")


def pytest_plugin_registered(plugin, manager):
    """pytest imports every conftest.py outside a package as the module
    `conftest`, each replacing the one before in sys.modules: once
    tests/browser/conftest.py is loaded, make `conftest` this module again,
    for the code that imports from it (Server, HERE)."""
    if plugin is not THIS_MODULE and getattr(plugin, "__name__", None) == "conftest":
        sys.modules["conftest"] = THIS_MODULE


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    """A fresh llm user directory: logs.db, keys.json and default model."""
    path = tmp_path / "llm"
    path.mkdir()
    monkeypatch.setenv("LLM_USER_PATH", str(path))
    monkeypatch.setenv("LLM_HTMX_TEST_CALLS", str(tmp_path / "calls.txt"))
    for var in ("OPENAI_API_KEY", "LLM_OPENAI_SHOW_RESPONSES"):
        monkeypatch.delenv(var, raising=False)
    return path


@pytest.fixture
def make_datasette(user_dir):
    """make_datasette(plugin_config=None, config=None): a Datasette, root
    enabled, with the plugin configured so, on the test's user directory.
    ``files`` are databases to attach. Every one made is closed at teardown."""
    made = []

    def make(plugin_config=None, config=None, *, files=()):
        config = dict(config or {})
        config.setdefault("plugins", {})["datasette-llm-htmx"] = plugin_config or {}
        ds = Datasette([str(path) for path in files], config=config)
        ds.root_enabled = True
        made.append(ds)
        return ds

    yield make
    for ds in made:
        ds.close()


@pytest_asyncio.fixture
async def ds(make_datasette):
    ds = make_datasette({"default_model": "steady"})
    await ds.invoke_startup()
    return ds


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A real `datasette serve` in a subprocess, on a free port."""

    script = HERE / "serve.py"  # `datasette serve` with the test models

    def __init__(self, user_dir, extra_args=(), env=None):
        self.user_dir = user_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.extra_args = list(extra_args)
        self.env = {**os.environ, "DATASETTE_SECRET": SECRET, **(env or {})}
        self.process = None
        signer = Datasette(secret=SECRET)
        self.root_cookies = {"ds_actor": signer.sign({"a": {"id": "root"}}, "actor")}
        self.signer = signer

    def cookies(self, actor):
        return {"ds_actor": self.signer.sign({"a": actor}, "actor")}

    def start(self):
        self.log = open(self.user_dir / f"server-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [sys.executable, str(self.script), "serve", "--port", str(self.port),
             "--root", "-s", "plugins.datasette-llm-htmx.default_model", "steady",
             *self.extra_args],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/-/versions.json", timeout=1)
                return self
            except httpx.HTTPError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"server exited: {self.read_log()}")
                time.sleep(0.1)
        raise RuntimeError("server did not start: " + self.read_log())

    def read_log(self):
        return (self.user_dir / f"server-{self.port}.log").read_text(errors="replace")

    def client(self, actor=None, **kwargs):
        cookies = self.cookies(actor) if actor else self.root_cookies
        return httpx.Client(base_url=self.url, cookies=cookies, timeout=30, **kwargs)

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@pytest.fixture
def server(user_dir):
    server = Server(user_dir, env={"LLM_USER_PATH": str(user_dir)}).start()
    yield server
    server.stop()


@pytest.fixture
def make_server(user_dir):
    servers = []

    def make(**kwargs):
        env = {"LLM_USER_PATH": str(user_dir), **kwargs.pop("env", {})}
        server = Server(user_dir, env=env, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def xss_corpus(tmp_path_factory):
    """One conversation per payload of tests/xss_payloads.py, each payload as
    prompt, system prompt, title and reply, served by one real server: read
    as HTML by test_xss.py and in Chromium by browser/test_xss_in_chromium.py.
    Yields (server, conversation ids in the order of PAYLOADS)."""
    user_dir = tmp_path_factory.mktemp("xss") / "llm"
    user_dir.mkdir()
    # with another plugin's inline script on every page (tests/other_plugins)
    other_plugins = str(pathlib.Path(__file__).parent / "other_plugins")
    server = Server(
        user_dir, extra_args=["--plugins-dir", other_plugins], env={"LLM_USER_PATH": str(user_dir)}
    ).start()
    conversations = []
    with server.client() as client:
        for payload in PAYLOADS:
            cid = cid_from(
                client.post(
                    "/-/llm/start",
                    data={"model_id": "steady", "prompt": payload, "system": payload,
                          "option_text": payload},
                )
            )
            conversations.append(cid)
        for cid in conversations:
            page = client.get(f"/-/llm/{cid}").text
            read_until_final(client, stream_url_of_last(cid, page))
        # and each payload as a title, given by renaming
        for payload, cid in zip(PAYLOADS, conversations):
            assert client.post(f"/-/llm/{cid}/title", data={"title": payload}).status_code == 303
    yield server, conversations
    server.stop()
