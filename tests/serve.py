"""`datasette` with the test models registered: tests run this as a real
server in a subprocess. Usage: python tests/serve.py serve --port N ...

LLM_HTMX_TEST_SET="sse.PING_INTERVAL=0.3,titles.TITLE_TIMEOUT=1" sets
module constants of the plugin first, so a test of a 15-second keep-alive
or a 20-second title budget need not wait that long."""

import importlib
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import llm.plugins  # noqa: E402

import llm_test_models  # noqa: E402

llm.plugins.pm.register(llm_test_models, name="llm-htmx-test-models")

for assignment in filter(None, os.environ.get("LLM_HTMX_TEST_SET", "").split(",")):
    name, value = assignment.split("=")
    module_name, attribute = name.rsplit(".", 1)
    module = importlib.import_module(f"datasette_llm_htmx.{module_name}")
    setattr(module, attribute, type(getattr(module, attribute))(value))

from datasette.cli import cli  # noqa: E402

if __name__ == "__main__":
    cli()
