"""Validating simulator answers against the platforms' OpenAPI specs (in ../shared/specs).

Each test module normalizes its spec to JSON Schema 2020-12 in its own way (the two specs
break the rules differently); what is shared is following `$ref`s, registering the
normalized document, and checking a body against one operation's response schema.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from jsonschema import Draft202012Validator  # type: ignore[import-untyped]  # ships no stubs
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012


def resolve_ref(node: Any, spec: dict[str, Any]) -> Any:
    """The schema a `{"$ref": "#/..."}` points to inside `spec`; any other node as it is."""
    if isinstance(node, dict) and isinstance(node.get("$ref"), str):
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        return target
    return node


def registry_of(uri: str, normalized: dict[str, Any]) -> Registry[Any]:
    """A registry holding the normalized spec under `uri`."""
    resource: Resource[Any] = Resource.from_contents(normalized, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(uri, resource)
    return registry


def assert_response_matches(
    registry: Registry[Any], uri: str, path: str, body: Any, *, status: str = "200"
) -> None:
    """`body` fits the JSON schema of `GET path`'s `status` answer; the first five
    mismatches are the assertion's message."""
    parts = ["paths", path, "get", "responses", status, "content", "application/json", "schema"]
    pointer = "/".join(part.replace("~", "~0").replace("/", "~1") for part in parts)
    validator = Draft202012Validator({"$ref": f"{uri}#/{quote(pointer)}"}, registry=registry)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
