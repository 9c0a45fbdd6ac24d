"""tests/serve.py (a `datasette serve` with the test models), optionally
with the plugin's OpenAI client reuse switched on, for bench/upstream.py.

LLM_HTMX_BENCH_REUSE=1 applies datasette_llm_htmx.openai_reuse.reuse_clients
to every async model llm hands out in this process: the same effect as the
one-line hook in catalog.resolve_model that docs/benchmarks.md describes."""

import os
import pathlib
import runpy

import llm

if os.environ.get("LLM_HTMX_BENCH_REUSE") == "1":
    _get_async_model = llm.get_async_model

    def get_async_model(*args, **kwargs):
        # imported late: importing the plugin before Datasette has loaded its
        # plugins registers it half-initialised, with no hooks
        from datasette_llm_htmx.openai_reuse import reuse_clients

        return reuse_clients(_get_async_model(*args, **kwargs))

    llm.get_async_model = get_async_model

runpy.run_path(str(pathlib.Path(__file__).parent.parent / "tests" / "serve.py"), run_name="__main__")
