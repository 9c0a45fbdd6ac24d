"""The `llm` CLI with the test models registered, as a user would run it
with their plugins: python tests/llm_cli.py logs ..."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))

import llm.plugins  # noqa: E402

import llm_test_models  # noqa: E402

llm.plugins.pm.register(llm_test_models, name="llm-htmx-test-models")

from llm.cli import cli  # noqa: E402

if __name__ == "__main__":
    cli()
