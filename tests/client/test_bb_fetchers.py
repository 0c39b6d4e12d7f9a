"""Fetchers against a local server answering with realistic Bitbucket bodies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web

from exporter.bitbucket import BitbucketClient
from exporter.crawl.fetchers import fetch_workspace, list_workspaces
from exporter.crawl.records import (
    GrantRecord,
    ObjectRecord,
    Record,
    ScopeKind,
    ScopeTarget,
    UserRecord,
    WorkspaceRef,
)
from exporter.crawl.scopes import SCOPE_KINDS
from exporter.errors import FetchFailedError
from tests.client.bb_fake import FakeBitbucket

MakeClient = Callable[..., BitbucketClient]
WS = WorkspaceRef(uuid="{ws-1111}", slug="acme", administrator=True)
ALICE = {
    "display_name": "Alice Admin",
    "uuid": "{u-alice}",
    "nickname": "alice",
    "account_id": "557058:aaaa",
    "type": "user",
    "links": {"avatar": {"href": "https://avatar-management.example/alice"}},
}
BOB = {"display_name": "Bob Builder", "uuid": "{u-bob}", "type": "user", "account_id": "5:b"}


def read(
    kind: ScopeKind, client: BitbucketClient, ws: WorkspaceRef | None = None
) -> AsyncIterator[list[Record]]:
    """The pages of a workspace-wide scope, as the run reads them."""
    return SCOPE_KINDS[kind].pages(client, ScopeTarget.of_workspace(ws or WS))


def pages(base: str, *bodies: list[dict[str, Any]]) -> Any:
    """A listing handler serving these pages, linking them by ``next`` like Bitbucket."""

    async def handler(request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("page", "1"))
        body: dict[str, Any] = {
            "pagelen": 100,
            "page": number,
            "size": sum(map(len, bodies)),
            "values": bodies[number - 1],
        }
        if number < len(bodies):
            body["next"] = f"{base}{request.path}?pagelen=100&page={number + 1}"
        return web.json_response(body)

    return handler


async def test_list_workspaces(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    rows = [
        {
            "type": "workspace_access",
            "administrator": True,
            "workspace": {"type": "workspace_base", "uuid": "{ws-1111}", "slug": "acme"},
        },
        {
            "type": "workspace_access",
            "administrator": False,
            "workspace": {"type": "workspace_base", "uuid": "{ws-2222}", "slug": "tools"},
        },
    ]
    bitbucket.routes["/2.0/user/workspaces"] = pages(bitbucket.base_url, rows[:1], rows[1:])
    found = await list_workspaces(make_client(bitbucket.base_url))
    assert found == [WS, WorkspaceRef("{ws-2222}", "tools", False)]
    fields = bitbucket.seen[0].query["fields"]
    assert fields.startswith("next,") and "values.workspace.slug" in fields


async def test_fetch_workspace(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "type": "workspace",
                "uuid": "{ws-1111}",
                "slug": "acme",
                "name": "Acme Corp",
                "is_private": True,
                "created_on": "2019-03-01T10:00:00+00:00",
                "links": {"html": {"href": "https://bitbucket.org/acme/"}},
            }
        )

    bitbucket.routes["/2.0/workspaces/acme"] = handler
    record = await fetch_workspace(make_client(bitbucket.base_url), "acme")
    assert record == ObjectRecord("workspace", "{ws-1111}", "acme", "Acme Corp", True)


async def test_workspace_slug_is_quoted_in_the_path(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    bitbucket.routes["/2.0/workspaces/odd slug/x/projects"] = pages(bitbucket.base_url, [])
    ws = WorkspaceRef("{ws-3}", "odd slug/x")
    got = [batch async for batch in read(ScopeKind.PROJECTS, make_client(bitbucket.base_url), ws)]
    assert got == [[]]
    assert bitbucket.seen[0].raw_path.startswith("/2.0/workspaces/odd%20slug%2Fx/projects?")


async def test_workspace_roles(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    rows = [
        {
            "type": "workspace_membership",
            "permission": "owner",
            "user": ALICE,
            "workspace": {"slug": "acme"},
            "last_accessed": "2026-10-30T08:00:00+00:00",
        },
        {"type": "workspace_membership", "permission": "member", "user": BOB},
    ]
    bitbucket.routes["/2.0/workspaces/acme/permissions"] = pages(
        bitbucket.base_url, rows[:1], rows[1:]
    )
    got = [
        batch
        async for batch in read(ScopeKind.WORKSPACE_ROLES, make_client(bitbucket.base_url), WS)
    ]
    assert got == [
        [
            UserRecord("{u-alice}", "Alice Admin", "alice", "557058:aaaa"),
            GrantRecord("user", "{u-alice}", "workspace", "{ws-1111}", "owner"),
        ],
        [
            UserRecord("{u-bob}", "Bob Builder", None, "5:b"),
            GrantRecord("user", "{u-bob}", "workspace", "{ws-1111}", "member"),
        ],
    ]
    query = bitbucket.seen[0].query
    assert query["pagelen"] == "100"
    assert query["fields"] == (
        "next,size,page,pagelen,values.permission,values.user.uuid,"
        "values.user.display_name,values.user.nickname,"
        "values.user.account_id"
    )


async def test_projects(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    rows = [
        {
            "type": "project",
            "uuid": "{p-1}",
            "key": "PAY",
            "name": "Payments",
            "is_private": True,
            "owner": {"uuid": "{ws-1111}"},
            "has_publicly_visible_repos": 0,
        }
    ]
    bitbucket.routes["/2.0/workspaces/acme/projects"] = pages(bitbucket.base_url, rows)
    got = [batch async for batch in read(ScopeKind.PROJECTS, make_client(bitbucket.base_url), WS)]
    assert got == [[ObjectRecord("project", "{p-1}", "PAY", "Payments", True, None)]]


async def test_repositories(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    rows = [
        {
            "type": "repository",
            "uuid": "{r-1}",
            "slug": "payments-api",
            "name": "payments-api",
            "full_name": "acme/payments-api",
            "is_private": True,
            "project": {"type": "project", "uuid": "{p-1}", "key": "PAY"},
        },
        {
            "type": "repository",
            "uuid": "{r-2}",
            "slug": "handbook",
            "name": "Handbook",
            "is_private": False,
            "project": None,
        },
    ]
    bitbucket.routes["/2.0/repositories/acme"] = pages(bitbucket.base_url, rows)
    got = [
        batch async for batch in read(ScopeKind.REPOSITORIES, make_client(bitbucket.base_url), WS)
    ]
    assert got == [
        [
            ObjectRecord("repository", "{r-1}", "payments-api", "payments-api", True, "{p-1}"),
            ObjectRecord("repository", "{r-2}", "handbook", "Handbook", False, None),
        ]
    ]
    assert "values.project.uuid" in bitbucket.seen[0].query["fields"]


def repo_permission(user: dict[str, Any], repo: str, permission: str) -> dict[str, Any]:
    return {
        "type": "repository_permission",
        "permission": permission,
        "user": user,
        "repository": {
            "type": "repository",
            "uuid": repo,
            "full_name": f"acme/{repo}",
            "name": repo,
        },
    }


async def test_repository_permissions(bitbucket: FakeBitbucket, make_client: MakeClient) -> None:
    rows = [
        repo_permission(ALICE, "{r-1}", "admin"),
        repo_permission(ALICE, "{r-2}", "admin"),
        repo_permission(BOB, "{r-1}", "write"),
    ]
    bitbucket.routes["/2.0/workspaces/acme/permissions/repositories"] = pages(
        bitbucket.base_url, rows[:2], rows[2:]
    )
    client = make_client(bitbucket.base_url)
    got = [batch async for batch in read(ScopeKind.REPOSITORY_PERMISSIONS, client, WS)]
    assert got == [
        [
            UserRecord("{u-alice}", "Alice Admin", "alice", "557058:aaaa"),
            GrantRecord("user", "{u-alice}", "repository", "{r-1}", "admin"),
            GrantRecord("user", "{u-alice}", "repository", "{r-2}", "admin"),
        ],
        [
            UserRecord("{u-bob}", "Bob Builder", None, "5:b"),
            GrantRecord("user", "{u-bob}", "repository", "{r-1}", "write"),
        ],
    ]


async def test_row_without_user_uuid_fails_the_scope(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    nameless = {"display_name": "Ghost", "type": "user"}
    rows = [repo_permission(ALICE, "{r-1}", "admin"), repo_permission(nameless, "{r-1}", "read")]
    bitbucket.routes["/2.0/workspaces/acme/permissions/repositories"] = pages(
        bitbucket.base_url, rows[:1], rows[1:]
    )
    client = make_client(bitbucket.base_url)
    with pytest.raises(FetchFailedError) as caught:
        async for _ in read(ScopeKind.REPOSITORY_PERMISSIONS, client, WS):
            pass
    text = str(caught.value)
    assert "/2.0/workspaces/acme/permissions/repositories" in text
    assert "page 2" in text and "values[0].user.uuid is missing" in text


def full_pages(base: str, rows: list[dict[str, Any]], pagelen: int = 2) -> Any:
    """A listing with full pages of ``pagelen`` rows that reports its size (so it fans out)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        number = int(request.query.get("page", "1"))
        body: dict[str, Any] = {
            "pagelen": pagelen,
            "page": number,
            "size": len(rows),
            "values": rows[(number - 1) * pagelen : number * pagelen],
        }
        if number * pagelen < len(rows):
            query = f"pagelen={pagelen}&fields={request.query['fields']}&page={number + 1}"
            body["next"] = f"{base}{request.path}?{query}"
        return web.json_response(body)

    return handler


async def test_grant_repeated_by_offset_paging_is_read_once(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    rows = [
        repo_permission(ALICE, "{r-1}", "admin"),
        repo_permission(ALICE, "{r-2}", "admin"),
        repo_permission(ALICE, "{r-2}", "admin"),  # shifted onto page 2 by an insert
        repo_permission(BOB, "{r-1}", "write"),
        repo_permission(BOB, "{r-2}", "read"),
    ]
    path = "/2.0/workspaces/acme/permissions/repositories"
    bitbucket.routes[path] = full_pages(bitbucket.base_url, rows)
    client = make_client(bitbucket.base_url)
    got = [r async for batch in read(ScopeKind.REPOSITORY_PERMISSIONS, client, WS) for r in batch]
    grants = [(g.subject_uuid, g.object_uuid) for g in got if isinstance(g, GrantRecord)]
    assert grants == [
        ("{u-alice}", "{r-1}"),
        ("{u-alice}", "{r-2}"),
        ("{u-bob}", "{r-1}"),
        ("{u-bob}", "{r-2}"),
    ]
    assert client.stats.duplicate_rows == 1 and len(bitbucket.seen) == 3


async def test_repository_repeated_by_offset_paging_is_read_once(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    rows = [{"uuid": f"{{r-{n}}}", "slug": f"repo-{n}"} for n in (1, 2, 2, 3)]
    bitbucket.routes["/2.0/repositories/acme"] = full_pages(bitbucket.base_url, rows)
    client = make_client(bitbucket.base_url)
    got = [r async for batch in read(ScopeKind.REPOSITORIES, client, WS) for r in batch]
    assert [r.uuid for r in got] == ["{r-1}", "{r-2}", "{r-3}"]


REPO = ScopeTarget(WS, "repository", "{r-1}", "payments-api")


def _per_object(kind: ScopeKind, client: BitbucketClient) -> AsyncIterator[list[Record]]:
    return SCOPE_KINDS[kind].pages(client, REPO)


async def test_explicit_grants_keep_a_permission_outside_the_known_order(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    base = "/2.0/repositories/acme/payments-api/permissions-config"
    users = [{"type": "repository_user_permission", "permission": "none", "user": BOB},
             {"type": "repository_user_permission", "permission": "write", "user": ALICE}]
    groups = [{"type": "repository_group_permission", "permission": "admin",
               "group": {"type": "group", "slug": "devs", "name": "Devs",
                         "full_slug": "acme:devs"}}]  # fmt: skip
    bitbucket.routes[f"{base}/users"] = pages(bitbucket.base_url, users)
    bitbucket.routes[f"{base}/groups"] = pages(bitbucket.base_url, groups)
    client = make_client(bitbucket.base_url)
    got = [r async for page in _per_object(ScopeKind.REPOSITORY_USER_GRANTS, client)
           for r in page if isinstance(r, GrantRecord)]  # fmt: skip
    assert got == [GrantRecord("user", "{u-bob}", "repository", "{r-1}", "none"),
                   GrantRecord("user", "{u-alice}", "repository", "{r-1}", "write")]
    got = [r async for page in _per_object(ScopeKind.REPOSITORY_GROUP_GRANTS, client)
           for r in page]  # fmt: skip
    assert got == [GrantRecord("group", "{ws-1111}:devs", "repository", "{r-1}", "admin")]
    assert "values.group.slug" in bitbucket.seen[-1].query["fields"]


async def test_groups_v1_becomes_groups_and_memberships(
    bitbucket: FakeBitbucket, make_client: MakeClient
) -> None:
    body = [
        {"name": "Devs", "slug": "devs", "permission": None, "members": [ALICE, BOB]},
        {"name": "Empty", "slug": "empty", "members": []},
    ]

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    bitbucket.routes["/1.0/groups/acme"] = handler
    got = [r async for page in read(ScopeKind.GROUPS, make_client(bitbucket.base_url))
           for r in page]  # fmt: skip
    assert [r for r in got if isinstance(r, ObjectRecord)] == [
        ObjectRecord("group", "{ws-1111}:devs", "devs", "Devs", None),
        ObjectRecord("group", "{ws-1111}:empty", "empty", "Empty", None),
    ]
    assert [r for r in got if isinstance(r, GrantRecord)] == [
        GrantRecord("user", "{u-alice}", "group", "{ws-1111}:devs", "member"),
        GrantRecord("user", "{u-bob}", "group", "{ws-1111}:devs", "member"),
    ]
    assert {r.display_name for r in got if isinstance(r, UserRecord)} == {
        "Alice Admin", "Bob Builder"}  # fmt: skip
    assert len(bitbucket.seen) == 1  # one unpaginated request


@pytest.mark.parametrize(
    ("body", "problem"),
    [({"values": []}, "expected a JSON array"), ([{"name": "x"}], "has no slug"),
     ([{"slug": "x", "members": [{"display_name": "no uuid"}]}], "a member has no uuid")],
)  # fmt: skip
async def test_groups_v1_of_another_shape_fails_the_scope(
    bitbucket: FakeBitbucket, make_client: MakeClient, body: object, problem: str
) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        return web.json_response(body)

    bitbucket.routes["/1.0/groups/acme"] = handler
    with pytest.raises(FetchFailedError, match=problem):
        async for _ in read(ScopeKind.GROUPS, make_client(bitbucket.base_url)):
            pass
