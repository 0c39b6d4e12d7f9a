"""Validation of simulator answers against Atlassian's OpenAPI document (``openapi-v3.json``).

``validate(name, value)`` checks ``value`` against ``#/components/schemas/<name>`` with jsonschema
(Draft 4, close to OpenAPI 3.0's schema dialect; ``discriminator`` and ``format`` are not checked).
``SPEC_GAPS`` names every place where the document is known to be wrong, with why: tests refer to
a gap by its name rather than excusing a response wholesale.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

# shared/ lies beside the repository's folder, in development and in CI alike.
SPEC_PATH = Path(__file__).resolve().parents[3] / "shared" / "bitbucket" / "openapi-v3.json"
_URN = "urn:bitbucket-openapi"

SPEC_GAPS = {
    "workspace_membership_lacks_permission": (
        "workspace_membership declares no `permission`, yet /workspaces/{ws}/permissions returns"
        " it (owner, collaborator, member, create-project); it passes only because the schema"
        " allows additional properties (FACTS.md, 'The published spec is loose')"
    ),
    "scope_error_detail_is_an_object": (
        "error.error.detail is typed string with no additional properties, but a missing scope"
        ' answers 403 with detail {"required": [...], "granted": [...]} (FACTS.md, Authentication)'
    ),
    "groups_v1_not_in_document": (
        "/1.0/groups/{workspace} is not described (the document covers /2.0 only); its array is"
        " checked against GROUPS_V1_SCHEMA below, written from Bitbucket's 1.0 reference"
    ),
    "removed_endpoints_still_documented": (
        "/workspaces, /repositories and /user/permissions/* are still documented with 200 pages;"
        " since CHANGE-2770 they answer 410, whose error body does validate"
    ),
}

_V1_ACCOUNT = {
    "type": "object",
    "required": ["display_name", "uuid", "nickname", "is_team"],
    "properties": {
        "display_name": {"type": "string"},
        "uuid": {"type": "string", "pattern": r"^\{[0-9a-f-]{36}\}$"},
        "nickname": {"type": "string"},
        "account_id": {"type": "string"},
        "is_team": {"type": "boolean"},
        "avatar": {"type": "string"},
        "resource_uri": {"type": "string"},
    },
}
GROUPS_V1_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name", "slug", "members", "owner"],
        "properties": {
            "name": {"type": "string"},
            "slug": {"type": "string", "pattern": "^[a-z0-9-]+$"},
            "permission": {"type": ["string", "null"]},
            "auto_add": {"type": "boolean"},
            "email_forwarding_disabled": {"type": "boolean"},
            "account_privilege": {"type": ["string", "null"]},
            "owner": _V1_ACCOUNT,
            "members": {"type": "array", "items": _V1_ACCOUNT},
        },
    },
}


@cache
def spec() -> dict[str, Any]:
    if not SPEC_PATH.is_file():
        pytest.skip(
            f"Atlassian's OpenAPI document is not at {SPEC_PATH}: cannot validate against it"
        )
    document: dict[str, Any] = json.loads(SPEC_PATH.read_text())
    return document


_VALID: set[tuple[str, str]] = set()  # (ref, instance JSON) already found valid
_REF = jsonschema.Draft4Validator.VALIDATORS["$ref"]


def _memo_ref(validator: Any, ref: str, instance: Any, schema: Any) -> Any:
    """``$ref``, remembering sub-objects already found valid: the same user or repository
    appears in thousands of grants, and validating it once is enough."""
    key = (ref, json.dumps(instance, sort_keys=True)) if isinstance(instance, dict) else None
    if key is not None and key in _VALID:
        return
    found = False
    for error in _REF(validator, ref, instance, schema):
        found = True
        yield error
    if key is not None and not found:
        _VALID.add(key)


_MemoDraft4 = jsonschema.validators.extend(jsonschema.Draft4Validator, {"$ref": _memo_ref})


@cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    resource = Resource.from_contents(spec(), default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource(_URN, resource)
    schema = {"$ref": f"{_URN}#/components/schemas/{name}"}
    validator: jsonschema.protocols.Validator = _MemoDraft4(schema, registry=registry)
    return validator


def errors(name: str, value: Any) -> list[str]:
    """Why ``value`` is not a valid ``name`` (empty if it is)."""
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in _validator(name).iter_errors(value)
    ]


def validate(name: str, value: Any) -> None:
    problems = errors(name, value)
    assert not problems, f"{name}: {problems[:5]}"


def response_schema(path: str, status: str = "200") -> str:
    """The schema name the document gives for GET ``path`` (a /2.0 path template)."""
    content = spec()["paths"][path]["get"]["responses"][status]["content"]
    ref: str = content["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[1]


def declared_properties(name: str) -> set[str]:
    """Every property a schema declares, through ``allOf``."""
    schema = spec()["components"]["schemas"][name]
    parts = schema.get("allOf", [schema])
    found: set[str] = set()
    for part in parts:
        if "$ref" in part:
            found |= declared_properties(part["$ref"].rsplit("/", 1)[1])
        found |= set(part.get("properties", {}))
    return found
