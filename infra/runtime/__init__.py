"""A process's runtime: settings, logging, retries and the sealer's process."""
