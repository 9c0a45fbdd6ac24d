"""The plugin's settings, read from datasette.yaml with their defaults."""

from dataclasses import dataclass
import os
from pathlib import Path

import llm

PLUGIN_NAME = "datasette-llm-htmx"
DATABASE_NAME = "llm"


@dataclass(frozen=True)
class Settings:
    database_path: Path
    default_model: str | None
    models: tuple[str, ...] | None
    title_model: str | bool | None
    truncate_prompt_chars: int
    max_prompt_chars: int
    allow: object
    # A reply that takes longer than this in all is stopped as failed...
    generation_timeout: float
    # ...and so is one whose model sends nothing for this long.
    idle_timeout: float
    # Replies one actor may have generating at once (this process).
    max_generations_per_actor: int
    # Memory for rendered replies, kept so a page renders markdown once.
    render_cache_mb: float
    # The largest file a prompt may carry (Datasette's max_post_body_bytes
    # bounds the whole request too).
    max_attachment_bytes: int
    # Leave models that need a key nobody set out of the model select.
    hide_models_without_keys: bool
    # "Chat about this table": the most rows its first prompt carries.
    about_rows: int = 100
    # Databases the read-only SQL tool may query (as the asking actor).
    sql_tool_databases: tuple[str, ...] = ()
    # Keep rendered replies in a file beside logs.db (store/rendered.py).
    render_cache_file: bool = True


def _number(value, default):
    return default if value in (None, "") else float(value)


def settings(datasette) -> Settings:
    """The plugin's settings, read again only when its configuration (or
    llm's user directory, which llm.user_dir() creates at each call)
    changes: a request asks for them a dozen times."""
    config = datasette.plugin_config(PLUGIN_NAME) or {}
    key = (repr(config), os.environ.get("LLM_USER_PATH"))
    cached = getattr(datasette, "_llm_htmx_settings", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    made = _settings(config)
    datasette._llm_htmx_settings = (key, made)
    return made


def _settings(config: dict) -> Settings:
    database_path = config.get("database_path")
    models = config.get("models")
    return Settings(
        database_path=(
            Path(database_path).expanduser()
            if database_path
            else llm.user_dir() / "logs.db"
        ),
        default_model=config.get("default_model"),
        models=tuple(models) if models else None,
        title_model=config.get("title_model"),
        truncate_prompt_chars=int(config.get("truncate_prompt_chars") or 1000),
        max_prompt_chars=int(config.get("max_prompt_chars") or 200_000),
        allow=config.get("allow"),
        generation_timeout=_number(config.get("generation_timeout"), 3600.0),
        idle_timeout=_number(config.get("idle_timeout"), 300.0),
        max_generations_per_actor=int(_number(config.get("max_generations_per_actor"), 4)),
        render_cache_mb=_number(config.get("render_cache_mb"), 64.0),
        max_attachment_bytes=int(_number(config.get("max_attachment_mb"), 10.0) * 1024 * 1024),
        about_rows=max(1, int(_number(config.get("about_rows"), 100))),
        sql_tool_databases=tuple(config.get("sql_tool_databases") or ()),
        render_cache_file=config.get("render_cache_file", True) is not False,
        hide_models_without_keys=bool(config.get("hide_models_without_keys", False)),
    )
