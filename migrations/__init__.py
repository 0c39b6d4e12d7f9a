"""Alembic migrations of the bbaccess schema; installed as ``exporter.migrations``."""
