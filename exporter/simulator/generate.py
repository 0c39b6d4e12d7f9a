"""Deterministic org generation at named sizes: ``generate_org(preset, seed)``.

Imports only ``exporter.simulator.org``. All randomness comes from one ``random.Random(seed)``,
so the same preset and seed always give the same org. The shape is meant to look like a real
company: skewed group sizes and grants per repository, some public repositories, some with no
explicit grants, non-ASCII names, and users who belong to several workspaces.

Sizes (workspaces, users, repositories, groups, projects; effective grants at seed 1): ``small``
3, 25, 30, 9, 9; ``medium`` 1, 150, 300, 20, 15; ``large`` 5, 2,000, 10,000, 300, 500, about
400,000; ``huge`` ten times large. Generation is compact: effective permissions are computed per
workspace only when first asked for, then cached.

Webhooks come from their own random stream, so adding them did not change any other object.

Two well-known users exist in every org: the admin (owner of every workspace, the exporter's
credential) and a plain member of every workspace.
"""

from __future__ import annotations

import random
import re
import unicodedata
import uuid
from dataclasses import dataclass

from exporter.simulator.org import Group, Org, Project, Repository, User, Webhook, Workspace

ADMIN_EMAIL = "admin@example.com"
ADMIN_TOKEN = "sim-admin-token"
OAUTH_TOKEN = "sim-oauth-token"
MEMBER_EMAIL = "member@example.com"
MEMBER_TOKEN = "sim-member-token"


@dataclass(frozen=True)
class Preset:
    workspaces: int
    users: int
    repos_per_workspace: int
    groups_per_workspace: int
    projects_per_workspace: int


PRESETS: dict[str, Preset] = {
    "small": Preset(3, 25, 10, 3, 3),
    "medium": Preset(1, 150, 300, 20, 15),
    "large": Preset(5, 2000, 2000, 60, 100),
    "huge": Preset(50, 20000, 2000, 60, 100),  # ten times large, for scaling curves
}
HOOK_EVENTS = ("repo:push", "repo:created", "repo:deleted", "repo:updated", "pullrequest:created")

FIRST_NAMES = (
    "Zoë", "Łukasz", "José", "Søren", "Ana", "Ben", "Chloé", "Dmitri", "Emma", "Farah", "Gábor",
    "Hiro", "Ingrid", "Jamal", "Kai", "Lena", "Mateo", "Nadia", "Olu", "Priya", "Quinn", "Rafael",
    "Sofia", "Tomás", "Uma", "Viktor", "Wen", "Xiu", "Yusuf", "Zara", "美玲", "Ólafur",
)  # fmt: skip
LAST_NAMES = (
    "Nguyen", "Smith", "Kowalski", "Müller", "García", "Okafor", "Tanaka", "Jensen", "Rossi",
    "Brown", "Ivanova", "Dubois", "Silva", "Chen", "Patel", "Öztürk", "Haddad", "Novák", "王",
)  # fmt: skip
WORKSPACES = (
    ("acme", "Acme Corp"), ("globex", "Globex"), ("zurich-labs", "Zürich Labs"),
    ("initech", "Initech"), ("hooli", "Hooli 平台"),
)  # fmt: skip
REPO_WORDS = (
    "api", "web", "billing", "payments", "auth", "search", "infra", "data", "mobile", "docs",
    "platform", "tools", "gateway", "ledger", "reports", "catalog", "identity", "notify",
)  # fmt: skip
REPO_SUFFIXES = ("service", "ui", "lib", "worker", "cli", "sdk", "config", "pipeline", "")
NON_ASCII_REPO_NAMES = ("平台 gateway", "Zoë's tools", "Łódź ingest", "café-menu", "naïve-bayes")
PROJECT_WORDS = (
    "Core", "Payments", "Mobile", "Data", "Platform", "Security", "Growth", "Ops", "Research",
    "Frontend", "Backend", "Internal", "Partners", "Analytics", "Infra",
)  # fmt: skip


def _uuid(rng: random.Random) -> str:
    return "{" + str(uuid.UUID(int=rng.getrandbits(128), version=4)) + "}"


def _timestamp(rng: random.Random) -> str:
    year, month, day = rng.randint(2015, 2024), rng.randint(1, 12), rng.randint(1, 28)
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return f"{year:04d}-{month:02d}-{day:02d}T{hour:02d}:{minute:02d}:{second:02d}.000000+00:00"


def slugify(text: str) -> str:
    """ASCII slug of a name; non-Latin text falls back to ``repo``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug or "repo"


def new_user(rng: random.Random, index: int, *, email: str | None = None) -> User:
    """A generated user; ``index`` keeps nicknames and emails unique."""
    first = FIRST_NAMES[index % 2] if index < 2 else rng.choice(FIRST_NAMES)
    last = rng.choice(LAST_NAMES)
    nickname = f"{slugify(first + '-' + last)}-{index}"
    return User(
        uuid=_uuid(rng),
        display_name=f"{first} {last}",
        nickname=nickname,
        account_id=f"5b{rng.getrandbits(88):022x}",
        email=email or f"{nickname}@example.com",
    )


def _special_users(rng: random.Random, org: Org) -> tuple[User, User]:
    admin = User(_uuid(rng), "Sim Admin", "sim-admin", f"5b{rng.getrandbits(88):022x}", ADMIN_EMAIL)
    member = User(
        _uuid(rng), "Sim Member", "sim-member", f"5b{rng.getrandbits(88):022x}", MEMBER_EMAIL
    )
    for user in (admin, member):
        org.add_user(user)
    org.api_tokens[ADMIN_TOKEN] = admin.uuid
    org.api_tokens[MEMBER_TOKEN] = member.uuid
    org.oauth_tokens[OAUTH_TOKEN] = admin.uuid
    return admin, member


def _pick_role(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.03:
        return "owner"
    if roll < 0.13:
        return "collaborator"
    if roll < 0.23:
        return "create-project"
    return "member"


def _skewed_size(rng: random.Random, base: float, cap: int) -> int:
    """A Pareto-distributed size: most small, a few large."""
    return max(1, min(cap, int(base * rng.paretovariate(1.5))))


def new_repository(
    rng: random.Random, taken_slugs: set[str], project_uuid: str, index: int
) -> Repository:
    """A repository with a slug not in ``taken_slugs`` (which it joins); every 17th has a
    non-ASCII name."""
    if index % 17 == 3:
        name = NON_ASCII_REPO_NAMES[(index // 17) % len(NON_ASCII_REPO_NAMES)]
    else:
        suffix = rng.choice(REPO_SUFFIXES)
        name = rng.choice(REPO_WORDS) + (f"-{suffix}" if suffix else "")
    slug = base = slugify(name)
    n = 2
    while slug in taken_slugs:
        slug, n = f"{base}-{n}", n + 1
    taken_slugs.add(slug)
    is_private = not (index % 9 == 4 or rng.random() < 0.03)
    return Repository(_uuid(rng), slug, name, is_private, project_uuid, _timestamp(rng))


def grant_repository_randomly(
    rng: random.Random, ws: Workspace, repo_uuid: str, users: list[str]
) -> None:
    """Skewed explicit grants: about a fifth of repositories get none."""
    if rng.random() < 0.2:
        return
    for user in rng.sample(users, min(len(users), _skewed_size(rng, 1.5, 40))):
        ws.repo_user_grants.setdefault(repo_uuid, {})[user] = rng.choice(("read", "write", "admin"))
    groups = list(ws.groups)
    if groups and rng.random() < 0.5:
        slug = rng.choice(groups)
        ws.repo_group_grants.setdefault(repo_uuid, {})[slug] = rng.choice(("read", "write"))


def _populate_workspace(
    rng: random.Random, ws: Workspace, preset: Preset, members: list[str], unique_keys: set[str]
) -> None:
    for g in range(preset.groups_per_workspace):
        size = _skewed_size(rng, max(2.0, len(members) / 74), len(members))
        slug = f"{rng.choice(PROJECT_WORDS).lower()}-team-{g}"
        ws.groups[slug] = Group(
            slug, slug.replace("-", " ").title(), set(rng.sample(members, size))
        )
    groups = list(ws.groups)
    for p in range(preset.projects_per_workspace):
        word = rng.choice(PROJECT_WORDS)
        key = f"{word[:3].upper()}{p}"
        unique_keys.add(key)
        project = Project(_uuid(rng), key, f"{word} {p}", rng.random() > 0.05, _timestamp(rng))
        ws.projects[project.uuid] = project
        for slug in rng.sample(groups, min(len(groups), rng.choice((0, 1, 1, 1, 2)))):
            ws.project_group_grants.setdefault(project.uuid, {})[slug] = rng.choice(
                ("read", "read", "write", "create-repo", "admin")
            )
        for user in rng.sample(members, min(len(members), rng.randint(0, 3))):
            ws.project_user_grants.setdefault(project.uuid, {})[user] = rng.choice(
                ("read", "write", "create-repo", "admin")
            )
    projects = list(ws.projects)
    weights = [1.0 / (i + 1) for i in range(len(projects))]
    slugs: set[str] = set()
    for r in range(preset.repos_per_workspace):
        project_uuid = rng.choices(projects, weights)[0]
        repo = new_repository(rng, slugs, project_uuid, r)
        ws.repositories[repo.uuid] = repo
        grant_repository_randomly(rng, ws, repo.uuid, members)
    ws.invalidate()


def _add_hooks(seed: int, spaces: list[Workspace]) -> None:
    rng = random.Random(f"hooks-{seed}")
    for ws in spaces:
        for n in range(rng.choice((0, 1, 2, 3))):
            events = tuple(sorted(rng.sample(HOOK_EVENTS, rng.randint(1, 3))))
            hook = Webhook(
                _uuid(rng), f"https://hooks.example.com/{ws.slug}/{n}", events,
                active=rng.random() > 0.2, secret_set=rng.random() > 0.5,
                created_at=_timestamp(rng), description=f"CI hook {n}",
            )  # fmt: skip
            ws.hooks[hook.uuid] = hook


def generate_org(preset: str = "small", seed: int = 1) -> Org:
    """A new org of the named size (small, medium, large, huge); the same seed gives the same
    org."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    shape = PRESETS[preset]
    rng = random.Random(seed)
    org = Org()
    admin, member = _special_users(rng, org)
    users = [new_user(rng, i) for i in range(shape.users)]
    for user in users:
        org.add_user(user)
    spaces: list[Workspace] = []
    for i in range(shape.workspaces):
        slug, name = WORKSPACES[i % len(WORKSPACES)]
        if i >= len(WORKSPACES):
            slug, name = f"{slug}-{i}", f"{name} {i}"
        ws = Workspace(_uuid(rng), slug, name, rng.random() > 0.2, _timestamp(rng))
        ws.members[admin.uuid] = "owner"
        ws.members[member.uuid] = "member"
        spaces.append(ws)
        org.add_workspace(ws)
    for i, user in enumerate(users):
        home = i % len(spaces)
        chosen = {home}
        if len(spaces) > 1 and rng.random() < 0.3:
            chosen.add(rng.randrange(len(spaces)))
        for index in sorted(chosen):
            spaces[index].members[user.uuid] = _pick_role(rng)
    keys: set[str] = set()
    for ws in spaces:
        plain = [u for u, role in ws.members.items() if u not in (admin.uuid, member.uuid)]
        _populate_workspace(rng, ws, shape, plain, keys)
    _add_hooks(seed, spaces)
    return org
