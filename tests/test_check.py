"""``bbaccess check``'s arithmetic: tonight's requests from the sizes the listings report."""

from __future__ import annotations

from exporter.check import KindCheck, WorkspaceCheck
from exporter.check_report import plan_lines
from exporter.crawl.plan import NightBudget


def test_requests_follow_the_sizes_and_groups_take_one() -> None:
    check = WorkspaceCheck("acme", "HTTP Basic", True, [
        KindCheck("workspace", "ok"),
        KindCheck("workspace_roles", "ok", size=130),  # two pages
        KindCheck("projects", "ok", size=15),
        KindCheck("repositories", "ok", size=301),  # four pages
        KindCheck("repository_permissions", "ok", size=0),  # still one request
        KindCheck("groups", "ok", size=250),  # one unpaginated answer
        KindCheck("repository_user_grants", "ok"),
    ])  # fmt: skip
    assert check.pages() == 1 + 2 + 1 + 4 + 1 + 1
    assert check.objects() == 15 + 301


def _workspace(slug: str, credential: str, repositories: int) -> WorkspaceCheck:
    """A workspace whose effective-permission listing takes ``repositories`` pages."""
    return WorkspaceCheck(slug, credential, True, [
        KindCheck("repositories", "ok", size=repositories),
        KindCheck("repository_permissions", "ok", size=100 * repositories),
    ])  # fmt: skip


def test_the_workspaces_of_one_credential_share_its_night() -> None:
    # Each workspace's listings take 606 requests: one fits in a night of 1,000, two do not.
    night = NightBudget((1000, 3600.0), max_requests=1000)
    checks = [_workspace("acme", "the default credential", 600),
              _workspace("globex", "the default credential", 600)]  # fmt: skip
    lines = plan_lines(checks, night)
    assert lines[0] == ("acme: about 606 requests for its workspace-wide listings, "
                        "1200 per-object scopes")  # fmt: skip
    (plan,) = [line for line in lines if line.startswith("plan: ")]
    assert plan.startswith("plan: about 607 requests for the workspace-wide listings of 1 of 2 "
                           "workspaces (from the sizes the listings report; every workspace "
                           "read within 2 night(s)), then 393 of 1200 per-object scopes")


def test_each_credential_has_its_own_night_and_the_line_of_them_all() -> None:
    night = NightBudget((1000, 3600.0), max_requests=1000)
    checks = [_workspace("acme", "the default credential", 600),
              _workspace("globex", "the default credential", 600),
              _workspace("initech", "workspace initech", 600)]  # fmt: skip
    plans = [line for line in plan_lines(checks, night) if line.startswith("plan")]
    assert len(plans) == 3
    assert plans[0].endswith("(the default credential)") and "of 1 of 2 workspaces" in plans[0]
    assert plans[1].endswith("(workspace initech)") and "workspaces" not in plans[1].split(",")[0]
    assert "plan of every credential (2" in plans[2]
    assert "the workspace-wide listings of 2 of 3 workspaces tonight" in plans[2]


def test_workspaces_that_fit_are_all_read_tonight() -> None:
    night = NightBudget((1000, 3600.0), max_requests=1000)
    checks = [_workspace("acme", "the default credential", 30),
              _workspace("globex", "the default credential", 30)]  # fmt: skip
    (plan,) = [line for line in plan_lines(checks, night) if line.startswith("plan: ")]
    # Both workspaces' listings and the credential's first request: 1 + 2 * 31.
    assert plan.startswith("plan: about 63 requests for the workspace-wide listings "
                           "(from the sizes the listings report), then 120 of 120")  # fmt: skip
