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

from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any
from urllib.parse import quote

from exporter.bitbucket import BitbucketClient, Page, RowKey
from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Record,
    ScopeTarget,
    UserRecord,
    WorkspaceRef,
    group_key,
)
from exporter.errors import FetchFailedError

Pages = AsyncIterator[list[Record]]

_USER_FIELDS = "user.uuid,user.display_name,user.nickname,user.account_id"


def _fields(*names: str) -> str:
    """A ``fields=`` whitelist of ``values.<name>``s. A whitelist drops every envelope key it does
    not name, so it names ``next`` (to go on) and ``size``, ``page`` and ``pagelen`` (so that the
    other pages of a large listing can be read at once)."""
    values = (f"values.{n}" for part in names for n in part.split(","))
    return ",".join(["next", "size", "page", "pagelen", *values])


USER_WORKSPACES_FIELDS = _fields("administrator", "workspace.uuid", "workspace.slug")
WORKSPACE_FIELDS = "uuid,slug,name,is_private"
PROJECTS_FIELDS = _fields("uuid", "key", "name", "is_private")
REPOSITORIES_FIELDS = _fields("uuid", "slug", "name", "is_private", "project.uuid")
REPOSITORY_PERMISSIONS_FIELDS = _fields("permission", "repository.uuid", _USER_FIELDS)
USER_GRANTS_FIELDS = _fields("permission", _USER_FIELDS)
GROUP_GRANTS_FIELDS = _fields("permission", "group.slug", "group.name")


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
GROUP_KEY = _key("group.slug")


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


def path_part(slug: str) -> str:
    """A slug or key as one segment of a path."""
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
    path = f"/2.0/workspaces/{path_part(slug)}"
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


async def workspace_pages(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """The workspace itself, as one page; read again only when discovery did not already."""
    known = target.known
    yield [known if known is not None else await fetch_workspace(client, target.workspace.slug)]


async def user_grants(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """User grants on the scope's object: workspace roles, explicit user grants."""
    async for page in client.iter_pages(path, params={"fields": USER_GRANTS_FIELDS}, key=key):
        yield _user_grant_records(page, target.object_type, target.object_uuid)


async def effective_permissions(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """Effective permissions of every repository of the workspace, in one listing."""
    params = {"fields": REPOSITORY_PERMISSIONS_FIELDS}
    async for page in client.iter_pages(path, params=params, key=key):
        yield _user_grant_records(page, "repository", None)


def _user_grant_records(page: Page, object_type: str, object_uuid: str | None) -> list[Record]:
    """A page of user grants; the object is fixed or read from ``repository.uuid``."""
    rows, seen = _Rows.of(page), set[str]()
    records: list[Record] = []
    for index, row in enumerate(page.values):
        user_uuid = rows.text(row, "user.uuid", index)
        target = object_uuid or rows.text(row, "repository.uuid", index)
        permission = rows.text(row, "permission", index)
        if user_uuid not in seen:
            seen.add(user_uuid)
            records.append(_user(row, user_uuid))
        records.append(GrantRecord("user", user_uuid, object_type, target, permission))
    return records


async def group_grants(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """Explicit group grants on a repository or project; groups are keyed by workspace and slug.

    The permission is recorded as listed: a value outside the known order (``none``) is kept."""
    ws_uuid = target.workspace.uuid
    async for page in client.iter_pages(path, params={"fields": GROUP_GRANTS_FIELDS}, key=key):
        rows = _Rows.of(page)
        records: list[Record] = []
        for index, row in enumerate(page.values):
            slug = rows.text(row, "group.slug", index)
            permission = rows.text(row, "permission", index)
            subject = group_key(ws_uuid, slug)
            records.append(
                GrantRecord("group", subject, target.object_type, target.object_uuid, permission)
            )
        yield records


async def project_listing(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """The projects of a workspace, one list of records per page."""
    async for page in client.iter_pages(path, params={"fields": PROJECTS_FIELDS}, key=key):
        rows = _Rows.of(page)
        yield [_project(rows, row, index) for index, row in enumerate(page.values)]


async def repository_listing(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> Pages:
    """The repositories of a workspace, one list of records per page."""
    async for page in client.iter_pages(path, params={"fields": REPOSITORIES_FIELDS}, key=key):
        rows = _Rows.of(page)
        yield [_repository(rows, row, index) for index, row in enumerate(page.values)]


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
