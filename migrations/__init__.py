"""Alembic environment and revisions for Loom's own tables."""
