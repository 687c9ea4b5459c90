"""The building blocks every schema of the API description is made of: references,
nullable and object schemas, the common scalar types.

Shared by the schemas and the operations, so that both write a reference or a
time the one way."""

from __future__ import annotations

from typing import Any

from ...jobs import JobStatus

JSON = "application/json"


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    out["type"] = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    return out


def obj(
    properties: dict[str, Any], required: list[str] | None = None, extra: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if not extra:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
INT = {"type": "integer"}
NUMBER = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
STATUS = {"type": "string", "enum": [s.value for s in JobStatus]}
JOB_ID = {
    "type": "string",
    "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$",
    "example": "01J9Z6N5G4X8W3QH2K7R1M0P9T",
}
