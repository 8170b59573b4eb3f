"""Permissions: which actions a principal may take on an entity (casbin, with role
inheritance), on which rows (a SQL WHERE clause), and on which fields."""

from loom.permissions.policy import EntityAccess, Forbidden, Policy, live_policy

__all__ = ["EntityAccess", "Forbidden", "Policy", "live_policy"]
