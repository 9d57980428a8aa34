"""Adapters behind the ports, grouped by what they talk to: MongoDB (``mongo/``), RabbitMQ (``rabbit/``),
ledgers (``ledgers/``) and the process itself (``runtime/``)."""
