"""Ledgers: the built-in one, a practice's system over HTTP, adapter plug-ins, the hosts allowed, secrets at rest."""
