"""Chromium, driven through Playwright, for the tests in this directory: the
browser and page fixtures, and what the tests do with a page. Those helpers
are fixtures too: a test module never imports from a conftest.py (every
conftest.py outside a package is the module `conftest`)."""

import os
import pathlib
import re
import time

import pytest

HERE = pathlib.Path(__file__).parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = HERE.parent / "artifacts"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Skipped without Chromium, except in CI, where a missing browser must fail.
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


def pytest_collection_modifyitems(config, items):
    """Every test in this directory needs Chromium (the hook is given the
    whole session's items)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(needs_chromium)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def root_context(browser):
    """root_context(server, **options): a new browser context (with
    Playwright's context options) signed in as root to ``server``; closed at
    teardown."""
    contexts = []

    def root_context(server, **options):
        context = browser.new_context(**options)
        context.add_cookies(
            [{"name": "ds_actor", "value": server.root_cookies["ds_actor"], "url": server.url}]
        )
        contexts.append(context)
        return context

    yield root_context
    for context in contexts:
        context.close()


@pytest.fixture
def page(root_context, server):
    """A page signed in as root to the test's server; page.errors collects
    uncaught errors and console errors."""
    page = root_context(server, viewport={"width": 1000, "height": 800}).new_page()
    page.errors = []
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on(
        "console",
        lambda message: page.errors.append(message.text) if message.type == "error" else None,
    )
    return page


@pytest.fixture
def artifacts():
    """tests/artifacts/, for screenshots and PDFs to look at (not in git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def screenshot(artifacts):
    """screenshot(page, name): the whole page, as tests/artifacts/<name>.png."""

    def screenshot(page, name):
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    return screenshot


@pytest.fixture
def wait_for():
    """wait_for(page, expression, timeout=15): poll a JS expression from
    outside the page: the pages' CSP forbids the eval that Playwright's
    wait_for_function uses inside the page."""

    def wait_for(page, expression, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if page.evaluate(expression):
                return
            page.wait_for_timeout(50)
        raise AssertionError(f"timed out waiting for {expression}")

    return wait_for


@pytest.fixture
def add_option():
    """add_option(page, name, value): the start form sends model options as
    option_<name> fields."""

    def add_option(page, name, value):
        page.evaluate(
            """([name, value]) => {
                const input = document.createElement("input");
                input.type = "hidden"; input.name = name; input.value = value;
                document.getElementById("chat-form").appendChild(input);
            }""",
            [name, value],
        )

    return add_option


@pytest.fixture
def start_in_browser(add_option):
    """start_in_browser(page, server, prompt, system=None, **options): send
    the start form for the steady model; returns on the conversation's page."""

    def start_in_browser(page, server, prompt, system=None, **options):
        page.goto(server.url + "/-/llm")
        page.select_option("#model_id", "steady")
        if system:
            page.click(".system-details summary")
            page.fill("#system", system)
        for name, value in options.items():
            add_option(page, f"option_{name}", str(value))
        page.fill("#prompt", prompt)
        page.press("#prompt", "Control+Enter")
        page.wait_for_url(re.compile(r"/-/llm/[0-9a-z]{26}$"))

    return start_in_browser


AXE = HERE.parent / "vendor" / "axe-core-4.14.1.min.js"


@pytest.fixture
def run_axe():
    """run_axe(page): axe-core's serious and critical violations on the
    page, evaluated from outside it (the page's CSP stands)."""

    def run_axe(page):
        page.evaluate(AXE.read_text())
        violations = page.evaluate(
            """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
                .map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.map(n => n.target.join(" ")).slice(0, 3)}))"""
        )
        return [v for v in violations if v["impact"] in ("serious", "critical")]

    return run_axe
