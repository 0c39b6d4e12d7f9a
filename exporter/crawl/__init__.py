"""Which scopes a run observes (plan), how each is read (fetchers), and the records they yield.

May import ``exporter.bitbucket`` and ``exporter.errors``; never ``exporter.store``.
"""
