"""The plugin's settings, read from datasette.yaml with their defaults."""

from dataclasses import dataclass
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


def settings(datasette) -> Settings:
    config = datasette.plugin_config(PLUGIN_NAME) or {}
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
    )
