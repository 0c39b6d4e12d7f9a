"""One fetcher per scope kind: pages in, normalized records out.

Each listing asks only for the fields its records need (``fields=``, always naming ``next``) and
yields one list of records per page, so that a caller can stage them as they come. Each names
the key of its rows (a uuid, or user and repository) so that a row repeated by offset paging
is read once. Parsing is
tolerant of extra fields; a row that lacks a required field fails the whole scope with
``FetchFailedError`` naming the endpoint, the page and the field. May import
``exporter.bitbucket``, ``exporter.errors`` and ``exporter.crawl.records``; never the store.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from typing import Any
from urllib.parse import quote

from exporter.bitbucket import BitbucketClient, Page, RowKey
from exporter.crawl.records import GrantRecord, ObjectRecord, UserRecord, WorkspaceRef
from exporter.errors import FetchFailedError

_USER_FIELDS = "user.uuid,user.display_name,user.nickname,user.account_id"


def _fields(*names: str) -> str:
    """A ``fields=`` whitelist of ``values.<name>``s. A whitelist drops every envelope key it does
    not name, so it names ``next`` (to go on) and ``size``, ``page`` and ``pagelen`` (so that the
    other pages of a large listing can be read at once)."""
    values = (f"values.{n}" for part in names for n in part.split(","))
    return ",".join(["next", "size", "page", "pagelen", *values])


USER_WORKSPACES_FIELDS = _fields("administrator", "workspace.uuid", "workspace.slug")
WORKSPACE_FIELDS = "uuid,slug,name,is_private"
WORKSPACE_ROLES_FIELDS = _fields("permission", _USER_FIELDS)
PROJECTS_FIELDS = _fields("uuid", "key", "name", "is_private")
REPOSITORIES_FIELDS = _fields("uuid", "slug", "name", "is_private", "project.uuid")
REPOSITORY_PERMISSIONS_FIELDS = _fields("permission", "repository.uuid", _USER_FIELDS)


def _dig(row: Mapping[str, Any], dotted: str) -> Any:
    value: Any = row
    for key in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(key)
    return value


def _key(*dotted: str) -> RowKey:
    """A row's key from these fields; None (never deduplicated) when one is missing."""

    def key(row: dict[str, Any]) -> Hashable:
        parts = tuple(_dig(row, name) for name in dotted)
        return None if any(not isinstance(part, str) for part in parts) else parts

    return key


WORKSPACE_KEY = _key("workspace.uuid")
USER_KEY = _key("user.uuid")
USER_REPOSITORY_KEY = _key("user.uuid", "repository.uuid")
OBJECT_KEY = _key("uuid")


class _Rows:
    """Field access on the rows of one page, failing with the endpoint, page and row."""

    def __init__(self, endpoint: str, page_number: int) -> None:
        self.endpoint, self.page_number = endpoint, page_number

    @classmethod
    def of(cls, page: Page) -> _Rows:
        return cls(page.url, page.number)

    def text(self, row: Mapping[str, Any], dotted: str, index: int) -> str:
        value = _dig(row, dotted)
        if not isinstance(value, str) or not value:
            problem = "missing" if value is None else f"not a non-empty string ({value!r})"
            raise FetchFailedError(
                f"GET {self.endpoint} page {self.page_number}: values[{index}].{dotted} "
                f"is {problem}",
                url=self.endpoint,
            )
        return value


def _optional_text(row: Mapping[str, Any], dotted: str) -> str | None:
    value = _dig(row, dotted)
    return value if isinstance(value, str) and value else None


def _optional_bool(row: Mapping[str, Any], dotted: str) -> bool | None:
    value = _dig(row, dotted)
    return value if isinstance(value, bool) else None


def _ws_path(slug: str) -> str:
    return quote(slug, safe="")


def _user(row: Mapping[str, Any], uuid: str) -> UserRecord:
    nickname = _optional_text(row, "user.nickname")
    return UserRecord(
        uuid=uuid,
        display_name=_optional_text(row, "user.display_name") or nickname or "",
        nickname=nickname,
        account_id=_optional_text(row, "user.account_id"),
    )


async def list_workspaces(client: BitbucketClient) -> list[WorkspaceRef]:
    """Every workspace the credential can see (``/2.0/user/workspaces``), first seen first."""
    found: dict[str, WorkspaceRef] = {}
    params = {"fields": USER_WORKSPACES_FIELDS}
    pages = client.iter_pages("/2.0/user/workspaces", params=params, key=WORKSPACE_KEY)
    async for page in pages:
        rows = _Rows.of(page)
        for index, row in enumerate(page.values):
            uuid = rows.text(row, "workspace.uuid", index)
            slug = rows.text(row, "workspace.slug", index)
            ref = WorkspaceRef(uuid, slug, _optional_bool(row, "administrator"))
            found.setdefault(uuid, ref)
    return list(found.values())


async def fetch_workspace(client: BitbucketClient, slug: str) -> ObjectRecord:
    """The workspace itself (``/2.0/workspaces/{slug}``)."""
    path = f"/2.0/workspaces/{_ws_path(slug)}"
    body = await client.get_json(path, {"fields": WORKSPACE_FIELDS})
    endpoint = client.resolve(path)
    if not isinstance(body, dict):
        raise FetchFailedError(f"GET {endpoint}: expected a JSON object", url=str(endpoint))
    rows = _Rows(str(endpoint), 1)
    workspace_slug = _optional_text(body, "slug") or slug
    return ObjectRecord(
        object_type="workspace",
        uuid=rows.text(body, "uuid", 0),
        slug=workspace_slug,
        name=_optional_text(body, "name") or workspace_slug,
        is_private=_optional_bool(body, "is_private"),
    )


async def _user_grants(
    client: BitbucketClient,
    path: str,
    fields: str,
    object_type: str,
    object_uuid: str | None,
) -> AsyncIterator[list[GrantRecord | UserRecord]]:
    """User grants of one listing; the object is fixed or read from ``repository.uuid``."""
    key = USER_KEY if object_uuid else USER_REPOSITORY_KEY
    async for page in client.iter_pages(path, params={"fields": fields}, key=key):
        rows, seen = _Rows.of(page), set[str]()
        records: list[GrantRecord | UserRecord] = []
        for index, row in enumerate(page.values):
            user_uuid = rows.text(row, "user.uuid", index)
            target = object_uuid or rows.text(row, "repository.uuid", index)
            permission = rows.text(row, "permission", index)
            if user_uuid not in seen:
                seen.add(user_uuid)
                records.append(_user(row, user_uuid))
            records.append(GrantRecord("user", user_uuid, object_type, target, permission))
        yield records


def fetch_workspace_roles(
    client: BitbucketClient, ws: WorkspaceRef
) -> AsyncIterator[list[GrantRecord | UserRecord]]:
    """Workspace roles (owner, collaborator, member, ...) from ``/workspaces/{ws}/permissions``."""
    path = f"/2.0/workspaces/{_ws_path(ws.slug)}/permissions"
    return _user_grants(client, path, WORKSPACE_ROLES_FIELDS, "workspace", ws.uuid)


def fetch_repository_permissions(
    client: BitbucketClient, ws: WorkspaceRef
) -> AsyncIterator[list[GrantRecord | UserRecord]]:
    """Effective repository permissions of every repository of the workspace, in one listing."""
    path = f"/2.0/workspaces/{_ws_path(ws.slug)}/permissions/repositories"
    return _user_grants(client, path, REPOSITORY_PERMISSIONS_FIELDS, "repository", None)


async def _object_pages(
    client: BitbucketClient,
    path: str,
    fields: str,
    build: Callable[[_Rows, Mapping[str, Any], int], ObjectRecord],
) -> AsyncIterator[list[ObjectRecord]]:
    """A listing of objects, one list of records per page, each row read by ``build``."""
    async for page in client.iter_pages(path, params={"fields": fields}, key=OBJECT_KEY):
        rows = _Rows.of(page)
        yield [build(rows, row, index) for index, row in enumerate(page.values)]


def _project(rows: _Rows, row: Mapping[str, Any], index: int) -> ObjectRecord:
    key = rows.text(row, "key", index)
    return ObjectRecord(
        "project",
        rows.text(row, "uuid", index),
        key,
        _optional_text(row, "name") or key,
        _optional_bool(row, "is_private"),
    )


def _repository(rows: _Rows, row: Mapping[str, Any], index: int) -> ObjectRecord:
    slug = rows.text(row, "slug", index)
    return ObjectRecord(
        "repository",
        rows.text(row, "uuid", index),
        slug,
        _optional_text(row, "name") or slug,
        _optional_bool(row, "is_private"),
        parent_uuid=_optional_text(row, "project.uuid"),
    )


def fetch_projects(client: BitbucketClient, ws: WorkspaceRef) -> AsyncIterator[list[ObjectRecord]]:
    path = f"/2.0/workspaces/{_ws_path(ws.slug)}/projects"
    return _object_pages(client, path, PROJECTS_FIELDS, _project)


def fetch_repositories(
    client: BitbucketClient, ws: WorkspaceRef
) -> AsyncIterator[list[ObjectRecord]]:
    path = f"/2.0/repositories/{_ws_path(ws.slug)}"
    return _object_pages(client, path, REPOSITORIES_FIELDS, _repository)
