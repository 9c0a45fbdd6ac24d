"""`datasette` with the test models registered: tests run this as a real
server in a subprocess. Usage: python tests/serve.py serve --port N ..."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import llm.plugins  # noqa: E402

import llm_test_models  # noqa: E402

llm.plugins.pm.register(llm_test_models, name="llm-htmx-test-models")

import os  # noqa: E402

import datasette_llm_htmx.sse  # noqa: E402
from datasette.cli import cli  # noqa: E402

# Tests of the keep-alive comment need not wait 15 seconds for one.
if os.environ.get("LLM_HTMX_TEST_PING_INTERVAL"):
    datasette_llm_htmx.sse.PING_INTERVAL = float(os.environ["LLM_HTMX_TEST_PING_INTERVAL"])

if __name__ == "__main__":
    cli()
