"""MongoDB: every store paypost keeps, and the one registry of their indexes."""
