"""A local Bitbucket Cloud for the demo, the tests and the benchmarks.

Modules: ``org`` (the in-memory model and effective permissions), ``generate`` (seeded orgs at
named sizes and the well-known credentials), ``churn`` (a day of administration), ``observe``
(observable state and the ground-truth diff), ``gate`` (authentication, rate limit), ``paging``
(pages and ``fields``), ``faults`` (injected faults), ``shapes`` (JSON shapes), ``endpoints``
(the routes) and ``server`` (the aiohttp app). May import only the standard library, aiohttp and
yarl: nothing else from ``exporter``.
"""

from exporter.simulator.churn import ChurnResult, apply_churn
from exporter.simulator.faults import Fault, FaultKind, FaultPlan
from exporter.simulator.generate import (
    ADMIN_EMAIL,
    ADMIN_TOKEN,
    MEMBER_EMAIL,
    MEMBER_TOKEN,
    OAUTH_TOKEN,
    generate_org,
)
from exporter.simulator.observe import TruthChange, diff_states, observable_state
from exporter.simulator.org import Org, effective_permissions
from exporter.simulator.server import SimulatorHandle, build_app, run_simulator

__all__ = [
    "ADMIN_EMAIL",
    "ADMIN_TOKEN",
    "MEMBER_EMAIL",
    "MEMBER_TOKEN",
    "OAUTH_TOKEN",
    "ChurnResult",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "Org",
    "SimulatorHandle",
    "TruthChange",
    "apply_churn",
    "build_app",
    "diff_states",
    "effective_permissions",
    "generate_org",
    "observable_state",
    "run_simulator",
]
