"""Integration rules and the worker: rules declared in metadata (``kind: rule``) turn
record changes, schedules and inbound webhooks into deliveries, written in the same
transaction as their cause; the worker runs each delivery's action (a built-in one or one
a plugin adds) with retries, leases and a dead letter, in process or on Celery."""
