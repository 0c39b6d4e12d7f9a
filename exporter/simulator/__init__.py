"""A local Bitbucket Cloud for the demo, the tests and the benchmarks.

Modules: ``org`` (the in-memory model and effective permissions), ``generate`` (seeded orgs at
named sizes and the well-known credentials), ``churn`` (a day of administration), ``observe``
(observable state and the ground-truth diffs), ``gate`` (authentication, scopes, rate limit),
``paging`` (pages and ``fields``), ``query`` (``q`` and ``sort``), ``faults`` (injected faults),
``shapes`` (JSON shapes), ``endpoints`` and ``access`` (the handlers), ``routes`` (the route
table), ``server`` (the aiohttp app) and ``serve`` (``bbaccess simulate``). May import only the
standard library, aiohttp and yarl: nothing else from ``exporter``.

Effective repository permission of a user (``/permissions/repositories``) is the highest of:

1. a direct user grant on the repository (read, write, admin);
2. the repository's grants to any group the user is in;
3. the project's grants to the user and to the user's groups, inherited by every repository of
   the project (a project ``create-repo`` counts as ``write``; a project ``admin`` as ``admin``);
4. ``admin`` on every repository of the workspace for its owners.

Order read < write < admin. Only current members count; no source means no row (never ``none``).
Explicit grants (``permissions-config``) list exactly what was granted on that object.

Who may read what: any member reads the workspace, its members, roles, projects and
repositories; effective permissions of the whole workspace, ``/1.0/groups`` (slug only) and
``/hooks`` need an owner; one repository's effective permissions and its ``permissions-config``
need effective admin on it; a project's ``permissions-config`` needs a project admin or an
owner. Access tokens read no permissions. A token without an endpoint's scope gets 403 with
``detail: {"required": [...], "granted": [...]}``.
"""

from exporter.simulator.churn import ChurnResult, apply_churn, churn_until, fact_count
from exporter.simulator.faults import Fault, FaultKind, FaultPlan
from exporter.simulator.generate import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    MEMBER_EMAIL,
    MEMBER_TOKEN,
    OAUTH_TOKEN,
    PRESETS,
    generate_org,
)
from exporter.simulator.observe import (
    ExplicitState,
    TruthChange,
    diff_explicit,
    diff_states,
    explicit_state,
    observable_state,
)
from exporter.simulator.org import DEFAULT_SCOPES, Org, effective_permissions
from exporter.simulator.server import SimulatorHandle, build_app, run_simulator

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_TOKEN",
    "DEFAULT_SCOPES",
    "MEMBER_EMAIL",
    "MEMBER_TOKEN",
    "OAUTH_TOKEN",
    "PRESETS",
    "ChurnResult",
    "ExplicitState",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Org",
    "SimulatorHandle",
    "TruthChange",
    "apply_churn",
    "build_app",
    "churn_until",
    "diff_explicit",
    "diff_states",
    "effective_permissions",
    "explicit_state",
    "fact_count",
    "generate_org",
    "observable_state",
    "run_simulator",
]
