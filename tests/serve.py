"""`datasette` with the test models registered: tests run this as a real
server in a subprocess. Usage: python tests/serve.py serve --port N ..."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import llm.plugins  # noqa: E402

import llm_test_models  # noqa: E402

llm.plugins.pm.register(llm_test_models, name="llm-htmx-test-models")

from datasette.cli import cli  # noqa: E402

if __name__ == "__main__":
    cli()
