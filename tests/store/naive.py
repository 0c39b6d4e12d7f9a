"""A naive model of the observation rules: it keeps every snapshot's observations in full.

Used by the property tests to hold the real store to DESIGN.md's rules: facts and diffs, the
display names kept for users, and each snapshot's count of scopes by outcome.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: ``none`` (and any other value) has no rank: a change to or from it is "changed".
RANK = {
    "read": 1,
    "member": 1,
    "write": 2,
    "collaborator": 2,
    "create-repo": 3,
    "create-project": 3,
    "admin": 4,
    "owner": 4,
}

Facts = dict[tuple[str, ...], tuple[object, ...]]
#: user uuid -> the display name one scope's pages gave it
Names = dict[str, str]
OUTCOMES = ("ok", "forbidden", "failed", "skipped")


@dataclass
class NaiveScope:
    name: str
    is_listing: bool  # holds objects (key: uuid) rather than grants (key: subject, object)
    parent: str | None = None  # the listing that holds this scope's object
    object_uuid: str | None = None
    membership: bool = False  # group membership: granted/revoked read "added to"/"removed from"


@dataclass
class NaiveStore:
    scopes: dict[str, NaiveScope]
    # snapshot id -> scope -> facts, for ok observations only (deletion closures included)
    ok: dict[int, dict[str, Facts]] = field(default_factory=dict)
    complete: list[int] = field(default_factory=list)
    # snapshot id -> scope -> the names its pages gave, for scopes that ended ok only
    names: dict[int, dict[str, Names]] = field(default_factory=dict)
    # snapshot id -> scopes by outcome, as the snapshot row counts them
    counts: dict[int, dict[str, int]] = field(default_factory=dict)
    # snapshot id -> child scopes closed because their object left the listing
    closed: dict[int, set[str]] = field(default_factory=dict)

    def record(
        self,
        snapshot_id: int,
        observed: dict[str, Facts],
        *,
        finished: dict[str, str] | None = None,
        names: dict[str, Names] | None = None,
        skipped: int = 0,
    ) -> None:
        """Merge a complete snapshot's ok observations, closing children of deleted objects (even
        those read in the same snapshot: the object is gone).

        ``finished`` holds the outcome of every scope the run finished (not of those it never
        reached), ``names`` the names staged by each scope that ended ok, and ``skipped`` the
        per-object scopes the plan left for later, counted without being stored.
        """
        finished = finished or {}
        names = names or {}
        assert set(names) <= {n for n, o in finished.items() if o == "ok"}
        closures: dict[str, Facts] = {}
        for name, scope in self.scopes.items():
            if scope.parent is None or scope.parent not in observed:
                continue
            if not self.ok_snapshots(name) and name not in observed:
                continue  # never observed ok: nothing to close; its first facts are a baseline
            before = self.knowledge(snapshot_id - 1, scope.parent)
            after = observed[scope.parent]
            key = (scope.object_uuid or "",)
            if key in before and key not in after:
                closures[name] = {}
        self.ok[snapshot_id] = {**observed, **closures}
        self.complete.append(snapshot_id)
        self.closed[snapshot_id] = set(closures)
        # A closure takes the place of whatever this snapshot made of the scope, a read that
        # ended ok included: the object is gone, so what the read showed is no fact any more, and
        # the closure (not the read) is the scope's observation, counted apart from the outcomes.
        # A read that failed (after an ok one before) is superseded the same way.
        counts = dict.fromkeys(OUTCOMES, 0)
        for name, outcome in finished.items():
            if name not in closures:
                counts[outcome] += 1
        counts["skipped"] += skipped
        self.counts[snapshot_id] = counts
        # Names are kept from every scope read whole, even one closed just now: its pages were
        # the user's name at that moment, though its grants are not kept. One night gives a user
        # one name, so which scope's row is merged last does not matter.
        seen: Names = {}
        for scope_names in names.values():
            for uuid, name in scope_names.items():
                assert seen.setdefault(uuid, name) == name, (uuid, name, seen[uuid])
        self.names[snapshot_id] = names

    def users(self) -> dict[str, tuple[str, int]]:
        """uuid -> (display name, last seen): the name from the newest complete snapshot in which
        a scope that ended ok gave one. Failed, forbidden, skipped or unfinished scopes and runs
        that crashed or failed give none."""
        out: dict[str, tuple[str, int]] = {}
        for s in self.complete:
            for scope_names in self.names.get(s, {}).values():
                for uuid, name in scope_names.items():
                    out[uuid] = (name, s)
        return out

    def pruned(self, keep: set[int]) -> NaiveStore:
        """The store that pruning to the complete snapshots ``keep`` must leave (the newest is
        kept whether named or not): each removed snapshot is folded into the first kept one after
        it, which then holds, for every scope, its own ok observation, or else the newest ok one
        among the removed snapshots folded into it (a closure included). Names, counts and
        closures of the kept snapshots are carried over; the removed ones' are dropped."""
        kept = set(keep) | set(self.complete[-1:])
        out = NaiveStore(self.scopes)
        window: dict[str, Facts] = {}
        for s in self.complete:
            window.update(self.ok[s])  # oldest first: the newest ok observation wins
            if s in kept:
                out.ok[s], window = window, {}
                out.complete.append(s)
                out.names[s] = self.names.get(s, {})
                out.counts[s] = self.counts.get(s, {})
                out.closed[s] = self.closed.get(s, set())
        return out

    def ok_snapshots(self, name: str) -> list[int]:
        return [s for s in self.complete if name in self.ok[s]]

    def knowledge(self, at: int, name: str) -> Facts:
        seen = [s for s in self.ok_snapshots(name) if s <= at]
        return self.ok[seen[-1]][name] if seen else {}

    def diff(self, a: int, b: int) -> set[tuple[object, ...]]:
        """(scope, key, change, attribute, old, new) for every change from a to b."""
        out: set[tuple[object, ...]] = set()
        for name, scope in self.scopes.items():
            oks = self.ok_snapshots(name)
            verified = any(a < s <= b for s in oks)
            prior = any(s <= a for s in oks)
            if not verified:
                continue
            old = self.knowledge(a, name) if prior else {}
            new = self.knowledge(b, name)
            first = not prior and not self._new_object(scope, a, b)
            for key in old.keys() | new.keys():
                out |= self._compare(name, scope, key, old.get(key), new.get(key), first, prior)
        return out

    def _new_object(self, scope: NaiveScope, a: int, b: int) -> bool:
        if scope.parent is None:
            return False
        if not any(s <= a for s in self.ok_snapshots(scope.parent)):
            return False
        key = (scope.object_uuid or "",)
        return key not in self.knowledge(a, scope.parent) and key in self.knowledge(b, scope.parent)

    @staticmethod
    def _compare(
        name: str,
        scope: NaiveScope,
        key: tuple[str, ...],
        old: tuple[object, ...] | None,
        new: tuple[object, ...] | None,
        first: bool,
        prior: bool,
    ) -> set[tuple[object, ...]]:
        if old == new:
            return set()
        if old is None:
            assert new is not None
            if first:
                return {(name, key, "baseline", None, None, None)}
            if scope.is_listing:
                return {(name, key, "created" if prior else "baseline", None, None, None)}
            if scope.membership:
                return {(name, key, "added to group", None, None, None)}
            return {(name, key, "granted", None, None, new[0])}
        if new is None:
            if scope.is_listing:
                return {(name, key, "deleted", None, None, None)}
            if scope.membership:
                return {(name, key, "removed from group", None, None, None)}
            return {(name, key, "revoked", None, old[0], None)}
        if scope.is_listing:
            attrs = ("slug", "name", "is_private", "project")
            return {
                (name, key, "changed", attr, o, n)
                for attr, o, n in zip(attrs, old, new, strict=True)
                if o != n
            }
        o, n = str(old[0]), str(new[0])
        change = "changed"
        if o in RANK and n in RANK and RANK[n] != RANK[o]:
            change = "raised" if RANK[n] > RANK[o] else "lowered"
        return {(name, key, change, None, o, n)}
