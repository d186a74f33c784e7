"""Campaigns and what they pay: token units, triggers, trigger sources, engagements, claims and events.
See router.py for the HTTP surface and docs/adr/0005-claims-concurrency.md for the locking."""
