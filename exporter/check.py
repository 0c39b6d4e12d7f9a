"""``bbaccess check``: can each credential read what a snapshot needs? One request per kind.

For each credential, ``/2.0/user/workspaces`` proves the credential and gives its admin flag per
workspace; for each workspace to read, one request per scope kind (a first page of one row; for
per-object kinds, the first repository's or project's) says whether the kind can be read, and the
listings' ``size`` says how many requests a snapshot will take. Nothing is written anywhere.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field

from exporter.bitbucket import BitbucketClient
from exporter.crawl.fetchers import list_workspaces
from exporter.crawl.records import ScopeKind, ScopeTarget, WorkspaceRef
from exporter.crawl.scopes import PER_OBJECT, WORKSPACE_WIDE, ScopeSpec
from exporter.errors import ApiError, AuthenticationError, ScopeError, UnsafeUrlError
from exporter.readers import Reader

PAGE = 100


@dataclass
class KindCheck:
    kind: str
    readable: str  # ok, forbidden, failed, or "no object to try"
    detail: str = ""
    size: int | None = None  # rows the listing reports


@dataclass
class WorkspaceCheck:
    workspace: str
    credential: str
    administrator: bool | None
    kinds: list[KindCheck] = field(default_factory=list)

    def pages(self) -> int:
        """Requests the workspace-wide listings take, by the sizes they report."""
        sized = [k for k in self.kinds if k.kind in WIDE_NAMES]
        # /1.0/groups answers in one request however many groups it lists.
        return sum(
            1 if k.size is None or k.kind == ScopeKind.GROUPS else max(1, math.ceil(k.size / PAGE))
            for k in sized
        )

    def objects(self) -> int:
        """Repositories and projects: each has two per-object scopes."""
        return sum(k.size or 0 for k in self.kinds
                   if k.kind in (ScopeKind.REPOSITORIES, ScopeKind.PROJECTS))  # fmt: skip


WIDE_NAMES = {spec.kind.value for spec in WORKSPACE_WIDE}


async def _probe(
    client: BitbucketClient, spec: ScopeSpec, target: ScopeTarget
) -> tuple[KindCheck, str | None]:
    """One request: the first page of one row (or the whole answer of an unpaginated one); the
    check, and the slug or key of the first row (to try the per-object kinds on)."""
    path = spec.path_for(target)
    try:
        if spec.kind in (ScopeKind.WORKSPACE, ScopeKind.GROUPS):
            body = await client.get_json(path)
            size = len(body) if isinstance(body, list) else None
        else:
            fields = "size,values.slug,values.key,values.permission"
            body = await client.get_json(path, {"pagelen": "1", "fields": fields})
            size = body.get("size") if isinstance(body, dict) else None
    except ScopeError as error:
        return KindCheck(spec.kind.value, error.outcome.value, str(error)), None
    except UnsafeUrlError as error:
        return KindCheck(spec.kind.value, "failed", str(error)), None
    values = body.get("values") if isinstance(body, dict) else None
    first = values[0] if isinstance(values, list) and values else {}
    key = (first.get("slug") or first.get("key")) if isinstance(first, dict) else None
    shown = size if isinstance(size, int) and not spec.per_object else None
    return KindCheck(spec.kind.value, "ok", "", shown), key if isinstance(key, str) else None


async def check_workspace(reader: Reader, ws: WorkspaceRef) -> WorkspaceCheck:
    """One request per scope kind: the workspace-wide ones, then the per-object ones on the first
    repository and project that the listings showed."""
    client = reader.client
    found = WorkspaceCheck(ws.slug, reader.client.auth_description, ws.administrator)
    target = ScopeTarget.of_workspace(ws)
    probed = await asyncio.gather(*(_probe(client, s, target) for s in WORKSPACE_WIDE))
    found.kinds = [check for check, _ in probed]
    firsts = {spec.kind: key for spec, (_, key) in zip(WORKSPACE_WIDE, probed, strict=True)}
    for object_type, listing in (("repository", ScopeKind.REPOSITORIES),
                                 ("project", ScopeKind.PROJECTS)):  # fmt: skip
        key = firsts.get(listing)
        for spec in PER_OBJECT:
            if spec.object_type != object_type:
                continue
            if key is None:
                found.kinds.append(KindCheck(spec.kind.value, f"no {object_type} to try"))
                continue
            one = ScopeTarget(ws, object_type, "", key)
            found.kinds.append((await _probe(client, spec, one))[0])
    return found


async def check_credentials(
    readers: dict[str | None, Reader], workspaces: tuple[str, ...]
) -> tuple[list[WorkspaceCheck], list[str]]:
    """Each workspace a snapshot would read, checked with the credential that would read it;
    and the problems found with the credentials themselves."""
    problems: list[str] = []
    listed: dict[str | None, dict[str, WorkspaceRef]] = {}
    for key, reader in readers.items():
        try:
            listed[key] = {ws.slug: ws for ws in await list_workspaces(reader.client)}
        except AuthenticationError as error:
            problems.append(f"{reader.name}: {error}")
        except ApiError as error:
            problems.append(f"{reader.name}: /2.0/user/workspaces could not be read ({error})")
    checks: list[WorkspaceCheck] = []
    wanted = workspaces or tuple(listed.get(None, {})) + tuple(k for k in readers if k)
    for slug in dict.fromkeys(wanted):
        key = slug if slug in readers else None
        if key not in listed:
            continue
        ws = listed[key].get(slug)
        if ws is None:
            problems.append(f"workspace {slug!r} is not listed for {readers[key].name}")
            continue
        checks.append(await check_workspace(readers[key], ws))
    return checks, problems
