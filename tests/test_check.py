"""``bbaccess check``'s arithmetic: tonight's requests from the sizes the listings report."""

from __future__ import annotations

from exporter.check import KindCheck, WorkspaceCheck


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
