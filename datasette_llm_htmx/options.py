"""Model options: form fields drawn from a model's own Options schema."""

from dataclasses import dataclass


@dataclass
class OptionField:
    name: str
    kind: str  # boolean, integer, number or string
    description: str | None
    minimum: float | None
    maximum: float | None
    default: object

    @property
    def field_name(self) -> str:
        return f"option_{self.name}"


def option_fields(model) -> list[OptionField]:
    schema = model.Options.model_json_schema()
    fields = []
    for name, prop in schema.get("properties", {}).items():
        variants = prop.get("anyOf") or [prop]
        types = {v.get("type") for v in variants}

        def first(key):
            for v in [prop, *variants]:
                if v.get(key) is not None:
                    return v[key]
            return None

        kind = next(
            (k for k in ("boolean", "integer", "number") if k in types), "string"
        )
        fields.append(
            OptionField(
                name=name,
                kind=kind,
                description=prop.get("description"),
                minimum=first("minimum") if first("minimum") is not None else first("exclusiveMinimum"),
                maximum=first("maximum") if first("maximum") is not None else first("exclusiveMaximum"),
                default=prop.get("default"),
            )
        )
    return fields
