"""Adapters: the only code that talks to RabbitMQ, MongoDB, HTTP ledgers and local processes."""
