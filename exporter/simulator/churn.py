"""A day of administration applied to an org: ``apply_churn(org, rng=..., rate=...)``, or
``churn_until(org, rng=..., changes=...)`` for a day that changes a given number of facts.

Imports ``exporter.simulator.org``, ``.generate`` and ``.observe``. Each kind of change (hires,
leavers, group membership, new/deleted/renamed/moved/published repositories, raised and lowered
grants, role changes, project grants and repository group grants) happens in ``apply_churn``
``max(1, round(rate * base))`` times when the org allows it, so even a small org shows every kind;
``churn_until`` draws them one at a time, weighted by the same bases. The ground truth
(``ChurnResult.changes``) is never written by hand: it is the diff of ``observable_state`` before
and after. ``ChurnResult.explicit_changes`` is the same for explicit grants and group membership
(``explicit_state``; sources ``direct``, ``group``, ``project``, ``membership``), which the
exporter may or may not read.

The two well-known users (the admin and the member) are never removed or re-roled.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from exporter.simulator.generate import (
    grant_repository_randomly,
    new_repository,
    new_user,
    slugify,
)
from exporter.simulator.observe import (
    ExplicitState,
    ObservableState,
    TruthChange,
    diff_explicit,
    diff_states,
    explicit_state,
    observable_state,
)
from exporter.simulator.org import PROJECT_PERMISSIONS, REPO_PERMISSIONS, ROLES, Org, Workspace


@dataclass
class ChurnResult:
    events: list[str] = field(default_factory=list)
    changes: list[TruthChange] = field(default_factory=list)
    explicit_changes: list[TruthChange] = field(default_factory=list)

    @property
    def facts_changed(self) -> int:
        """The facts the day changed: effective and explicit (what ``fact_count`` counts)."""
        return len(self.changes) + len(self.explicit_changes)


@dataclass
class _Day:
    org: Org
    rng: random.Random
    events: list[str]
    protected: set[str]
    fresh: set[str] = field(default_factory=set)  # repositories created today
    hired: set[str] = field(default_factory=set)  # users hired today (not to leave again)
    keys: dict[str, list[str]] = field(default_factory=dict)  # workspace -> repository uuids
    known: set[str] = field(default_factory=set)  # every uuid in use (an rng may repeat one)

    def repo_keys(self, ws: Workspace) -> list[str]:
        """Repository uuids of ``ws`` as first asked for today (may include deleted ones)."""
        if ws.uuid not in self.keys:
            self.keys[ws.uuid] = list(ws.repositories)
        return self.keys[ws.uuid]

    def pick_ws(self, ok: Callable[[Workspace], bool]) -> Workspace | None:
        spaces = [ws for ws in self.org.workspaces.values() if ok(ws)]
        return self.rng.choice(spaces) if spaces else None

    def people(self, ws: Workspace) -> list[str]:
        return [u for u in ws.members if u not in self.protected and u not in self.hired]

    def old_repos(self, ws: Workspace) -> list[str]:
        return [r for r in ws.repositories if r not in self.fresh]

    def label(self, ws: Workspace, repo_uuid: str) -> str:
        return f"{ws.slug}/{ws.repositories[repo_uuid].slug}"

    def name(self, user_uuid: str) -> str:
        return self.org.users[user_uuid].display_name


def _hire(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: True)
    if ws is None:
        return False
    user = new_user(day.rng, len(day.org.users))
    while user.uuid in day.known:
        user = new_user(day.rng, len(day.org.users))
    day.known.add(user.uuid)
    day.org.add_user(user)
    day.hired.add(user.uuid)
    role = day.rng.choice(("member", "member", "collaborator", "create-project"))
    ws.set_member(user.uuid, role)
    text = f"hired {user.display_name} into {ws.slug} as {role}"
    if ws.groups and day.rng.random() < 0.7:
        slug = day.rng.choice(sorted(ws.groups))
        ws.set_group_member(slug, user.uuid, True)
        text += f", group {slug}"
    day.events.append(text)
    return True


def _leave(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(day.people(w)))
    if ws is None:
        return False
    user = day.rng.choice(day.people(ws))
    ws.remove_member(user)
    day.events.append(f"{day.name(user)} left {ws.slug}")
    return True


def _group_change(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(w.groups) and bool(day.people(w)))
    if ws is None:
        return False
    group = ws.groups[day.rng.choice(sorted(ws.groups))]
    outside = [u for u in day.people(ws) if u not in group.members]
    if outside and (not group.members or day.rng.random() < 0.5):
        user = day.rng.choice(outside)
        ws.set_group_member(group.slug, user, True)
        day.events.append(f"added {day.name(user)} to {ws.slug} group {group.slug}")
        return True
    inside = sorted(group.members - day.protected)
    if not inside:
        return False
    user = day.rng.choice(inside)
    ws.set_group_member(group.slug, user, False)
    day.events.append(f"removed {day.name(user)} from {ws.slug} group {group.slug}")
    return True


def _new_repo(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(w.projects))
    if ws is None:
        return False
    slugs = {r.slug for r in ws.repositories.values()}
    project = day.rng.choice(sorted(ws.projects))
    repo = new_repository(day.rng, slugs, project, day.rng.randrange(10_000))
    while repo.uuid in day.known:
        repo = new_repository(day.rng, slugs, project, day.rng.randrange(10_000))
    day.known.add(repo.uuid)
    ws.add_repository(repo)
    grant_repository_randomly(day.rng, ws, repo.uuid, day.people(ws))
    ws.invalidate()
    day.fresh.add(repo.uuid)
    day.events.append(f"created {ws.slug}/{repo.slug}")
    return True


def _delete_repo(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(day.old_repos(w)))
    if ws is None:
        return False
    repo = day.rng.choice(day.old_repos(ws))
    day.events.append(f"deleted {day.label(ws, repo)}")
    ws.remove_repository(repo)
    return True


def _rename_repo(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(day.old_repos(w)))
    if ws is None:
        return False
    repo = day.rng.choice(day.old_repos(ws))
    before = day.label(ws, repo)
    slugs = {r.slug for r in ws.repositories.values()}
    name = f"{ws.repositories[repo].name}-{day.rng.choice(('v2', 'next', 'legacy', 'core'))}"
    slug = base = slugify(name)
    n = 2
    while slug in slugs:
        slug, n = f"{base}-{n}", n + 1
    ws.update_repository(repo, slug=slug, name=name)
    day.events.append(f"renamed {before} to {day.label(ws, repo)}")
    return True


def _move_repo(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: len(w.projects) > 1 and bool(day.old_repos(w)))
    if ws is None:
        return False
    repo = day.rng.choice(day.old_repos(ws))
    current = ws.repositories[repo].project_uuid
    target = day.rng.choice(sorted(p for p in ws.projects if p != current))
    ws.update_repository(repo, project_uuid=target)
    day.events.append(f"moved {day.label(ws, repo)} to project {ws.projects[target].key}")
    return True


def _sample_repos(day: _Day, attempts: int = 200) -> list[tuple[Workspace, str]]:
    """Up to ``attempts`` random (workspace, repository) pairs that existed before today."""
    spaces = [ws for ws in day.org.workspaces.values() if ws.repositories]
    picks = []
    for _ in range(attempts if spaces else 0):
        ws = day.rng.choice(spaces)
        repo = day.rng.choice(day.repo_keys(ws))
        if repo in ws.repositories and repo not in day.fresh:
            picks.append((ws, repo))
    return picks


def _publish_repo(day: _Day) -> bool:
    for ws, repo in _sample_repos(day):
        if ws.repositories[repo].is_private:
            ws.update_repository(repo, is_private=False)
            day.events.append(f"made {day.label(ws, repo)} public")
            return True
    return False


def _regrant(day: _Day, step: int) -> bool:
    """Raise (step 1) or lower (step -1) one direct user grant on a repository."""
    movable = {"read", "write"} if step > 0 else {"write", "admin"}
    for ws, repo in _sample_repos(day):
        users = sorted(u for u, p in ws.repo_user_grants.get(repo, {}).items() if p in movable)
        if not users:
            continue
        user = day.rng.choice(users)
        old = ws.repo_user_grants[repo][user]
        new = REPO_PERMISSIONS[REPO_PERMISSIONS.index(old) + step]
        ws.grant_repo_user(repo, user, new)
        verb = "raised" if step > 0 else "lowered"
        day.events.append(f"{verb} {day.name(user)} on {day.label(ws, repo)} from {old} to {new}")
        return True
    return False


def _raise_grant(day: _Day) -> bool:
    return _regrant(day, 1)


def _lower_grant(day: _Day) -> bool:
    return _regrant(day, -1)


def _role_change(day: _Day) -> bool:
    ws = day.pick_ws(lambda w: bool(day.people(w)))
    if ws is None:
        return False
    user = day.rng.choice(day.people(ws))
    old = ws.members[user]
    new = day.rng.choice([r for r in ROLES if r != old])
    ws.set_member(user, new)
    day.events.append(f"changed {day.name(user)} in {ws.slug} from {old} to {new}")
    return True


def _project_grant(day: _Day) -> bool:
    """Grant, change or remove one user's or group's permission on a project."""
    ws = day.pick_ws(lambda w: bool(w.projects) and bool(day.people(w)))
    if ws is None:
        return False
    project = day.rng.choice(sorted(ws.projects))
    perm = day.rng.choice((*PROJECT_PERMISSIONS, None))
    key = ws.projects[project].key
    if ws.groups and day.rng.random() < 0.5:
        slug = day.rng.choice(sorted(ws.groups))
        ws.grant_project_group(project, slug, perm)
        day.events.append(f"set group {slug} on project {ws.slug}/{key} to {perm}")
    else:
        user = day.rng.choice(day.people(ws))
        ws.grant_project_user(project, user, perm)
        day.events.append(f"set {day.name(user)} on project {ws.slug}/{key} to {perm}")
    return True


def _repo_group_grant(day: _Day) -> bool:
    """Grant, change or remove one group's permission on a repository."""
    for ws, repo in _sample_repos(day):
        if ws.groups:
            slug = day.rng.choice(sorted(ws.groups))
            perm = day.rng.choice((*REPO_PERMISSIONS, None))
            ws.grant_repo_group(repo, slug, perm)
            day.events.append(f"set group {slug} on {day.label(ws, repo)} to {perm}")
            return True
    return False


def _steps(org: Org) -> list[tuple[Callable[[_Day], bool], int]]:
    """Each kind of change with its base: the members or the repositories it is a share of."""
    repos = sum(len(ws.repositories) for ws in org.workspaces.values())
    members = sum(len(ws.members) for ws in org.workspaces.values())
    return [
        (_hire, members), (_leave, members), (_group_change, members), (_role_change, members),
        (_new_repo, repos), (_delete_repo, repos), (_rename_repo, repos), (_move_repo, repos),
        (_publish_repo, repos), (_raise_grant, repos), (_lower_grant, repos),
        (_project_grant, repos), (_repo_group_grant, repos),
    ]  # fmt: skip


def _start(org: Org, rng: random.Random) -> tuple[_Day, ObservableState, ExplicitState]:
    before = observable_state(org)
    protected = set(org.api_tokens.values()) | set(org.oauth_tokens.values())
    day = _Day(org, rng, [], protected)
    day.known = set(org.users) | set(before.objects)
    return day, before, explicit_state(org)


def _truth(org: Org, day: _Day, before: ObservableState, explicit_before: ExplicitState,
           ) -> ChurnResult:
    return ChurnResult(
        events=day.events,
        changes=diff_states(before, observable_state(org)),
        explicit_changes=diff_explicit(explicit_before, explicit_state(org)),
    )


def apply_churn(org: Org, *, rng: random.Random, rate: float = 0.01) -> ChurnResult:
    """Mutate ``org`` as one day of administration would; return what happened and the truth."""
    day, before, explicit_before = _start(org, rng)
    for step, base in _steps(org):
        for _ in range(max(1, round(rate * base))):
            if not step(day):
                break
    return _truth(org, day, before, explicit_before)


def fact_count(org: Org) -> int:
    """The facts a snapshot of ``org`` holds: workspace roles, effective permissions, explicit
    grants and group memberships (what ``ChurnResult.changes`` and ``explicit_changes`` count)."""
    state, explicit = observable_state(org), explicit_state(org)
    return (len(state.roles) + len(state.effective)
            + len(explicit.grants) + len(explicit.memberships))


#: Changes in a row that ``churn_until`` may find impossible before it gives up on the day.
MAX_IMPOSSIBLE = 100


def churn_until(
    org: Org, *, rng: random.Random, changes: float, most_per_count: int = 1
) -> ChurnResult:
    """Mutate ``org`` one change at a time, each of a kind drawn with the weight ``apply_churn``
    gives it (the members or the repositories it is a share of), until the truth counts at least
    ``changes`` changed facts; 0 or less is a quiet day. A day of 0.5 % of ``fact_count`` is the
    0.5 % daily churn of the budgets, whatever the org's size, where ``apply_churn`` does every
    kind at least once a day and, at ``medium``, changes several times as many facts.

    The truth is counted after every change, or, with ``most_per_count`` above 1, after batches
    of changes: 1, 2, 4 and so on up to ``most_per_count``, and never more than half of the
    changes that the facts changed so far say are left. A day then stops at the first count that
    reaches ``changes``, at most one batch past it. Counting the truth reads the whole org: at
    ``huge`` (4.9 million facts) about 10 s, where a day of 0.5 % is hundreds of changes."""
    day, before, explicit_before = _start(org, rng)
    steps = _steps(org)
    kinds, weights = [step for step, _ in steps], [base for _, base in steps]
    result = _truth(org, day, before, explicit_before)
    taken = batch = impossible = 0
    while impossible < MAX_IMPOSSIBLE:
        counted = result.facts_changed
        if counted >= changes:
            break
        batch = min(2 * batch or 1, most_per_count)
        if counted:
            batch = min(batch, max(1, int((changes - counted) * taken / counted / 2)))
        for _ in range(batch):
            if rng.choices(kinds, weights=weights)[0](day):
                taken, impossible = taken + 1, 0
            else:
                impossible += 1
                if impossible >= MAX_IMPOSSIBLE:
                    break
        result = _truth(org, day, before, explicit_before)
    return result
