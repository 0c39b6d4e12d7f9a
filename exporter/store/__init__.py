"""SQLite storage: the schema, the snapshot lifecycle (stage, then merge into versions in one
transaction), and the queries (knowledge at a snapshot, diff of two snapshots).

May import ``exporter.crawl.records`` and ``exporter.errors``; never ``exporter.bitbucket``.
"""
