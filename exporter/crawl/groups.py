"""The groups of a workspace and their members: the one adapter for ``/1.0/groups/{ws}``.

Bitbucket's 2.0 API has no groups; ``/1.0/groups/{workspace slug}`` answers every group with its
``members[]`` in one unpaginated JSON array, to workspace admins only. Everything that knows that
endpoint's shape lives here, so that the day Atlassian replaces it only this module changes.

A group becomes an ``ObjectRecord`` (type ``group``, keyed by ``group_key``), each member a
``GrantRecord`` (user → group, permission ``member``). 401, 403 and 404 on this endpoint mean the
credential may not read groups (whether an API token may is uncertain): the scope is forbidden
and the run goes on; 410 fails the scope with the change id.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from exporter.bitbucket import BitbucketClient, RowKey
from exporter.crawl.records import GrantRecord, ObjectRecord, Record, ScopeTarget, UserRecord
from exporter.crawl.records import group_key as key_of_group
from exporter.errors import AuthenticationError, FetchFailedError, ForbiddenError

MEMBERSHIP = "member"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _member(account: Mapping[str, Any], where: str) -> UserRecord:
    uuid = _text(account.get("uuid"))
    if uuid is None:
        raise FetchFailedError(f"{where}: a member has no uuid", url=where)
    nickname = _text(account.get("nickname"))
    return UserRecord(
        uuid=uuid,
        display_name=_text(account.get("display_name")) or nickname or "",
        nickname=nickname,
        account_id=_text(account.get("account_id")),
    )


def parse_groups(body: Any, *, workspace_uuid: str, where: str) -> list[Record]:
    """Records of one ``/1.0/groups`` answer. Pure; raises ``FetchFailedError`` on a bad shape."""
    if not isinstance(body, list):
        raise FetchFailedError(f"{where}: expected a JSON array of groups", url=where)
    records: list[Record] = []
    users: dict[str, UserRecord] = {}
    for index, group in enumerate(body):
        slug = _text(group.get("slug")) if isinstance(group, Mapping) else None
        if slug is None:
            raise FetchFailedError(f"{where}: element [{index}] has no slug", url=where)
        key = key_of_group(workspace_uuid, slug)
        records.append(ObjectRecord("group", key, slug, _text(group.get("name")) or slug, None))
        members = group.get("members") or []
        if not isinstance(members, list):
            raise FetchFailedError(f"{where}: [{index}].members is not an array", url=where)
        for account in members:
            if not isinstance(account, Mapping):
                raise FetchFailedError(f"{where}: a member of {slug!r} is not an object", url=where)
            user = _member(account, where)
            users.setdefault(user.uuid, user)
            records.append(GrantRecord("user", user.uuid, "group", key, MEMBERSHIP))
    return [*users.values(), *records]


async def fetch_groups(
    client: BitbucketClient, path: str, target: ScopeTarget, key: RowKey | None
) -> AsyncIterator[list[Record]]:
    """Every group of the workspace with its members, as one page of records."""
    where = str(client.resolve(path))
    try:
        body = await client.get_json(path)
    except AuthenticationError as error:
        # The token works elsewhere in this run; here it only lacks the right to read groups.
        raise ForbiddenError(
            f"401 on GET {where}: this credential may not read groups", url=where, status=401
        ) from error
    yield parse_groups(body, workspace_uuid=target.workspace.uuid, where=where)
