"""tests/serve.py (a `datasette serve` with the test models), with or
without the plugin's OpenAI client reuse, for bench/upstream.py.

The plugin reuses llm's OpenAI clients (catalog.resolve_model applies
datasette_llm_htmx.openai_reuse). LLM_HTMX_BENCH_REUSE=0 measures it
without: the models llm hands out come marked as handled already, so
reuse_clients leaves them as llm made them, a new client per prompt."""

import os
import pathlib
import runpy

import llm

if os.environ.get("LLM_HTMX_BENCH_REUSE") == "0":
    _get_async_model = llm.get_async_model

    def get_async_model(*args, **kwargs):
        model = _get_async_model(*args, **kwargs)
        model._reuses_clients = True  # what reuse_clients checks: left alone
        return model

    llm.get_async_model = get_async_model

runpy.run_path(str(pathlib.Path(__file__).parent.parent / "tests" / "serve.py"), run_name="__main__")
