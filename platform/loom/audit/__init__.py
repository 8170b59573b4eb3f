"""The audit log: every operation, append-only and hash-chained (see docs/audit.md)."""
