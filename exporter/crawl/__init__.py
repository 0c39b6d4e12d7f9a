"""Which scopes a run observes (plan), how each is read (fetchers), and the records they yield.

``scopes`` describes each kind of scope once; ``plan`` orders and rations the per-object ones;
``groups`` is the one adapter for ``/1.0/groups``. May import ``exporter.bitbucket``,
``exporter.errors`` and ``exporter.progress`` (durations in plan lines); never ``exporter.store``.
"""
