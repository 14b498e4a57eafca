"""Releases: what Deploy, `/rollback` and boot do to the agents that run (see service.py)."""
