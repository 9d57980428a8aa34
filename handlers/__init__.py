"""The service layer: what happens to a payment, a retry, a clear or a mapping, once.

Entrypoints (the AMQP consumers, the HTTP routes, the CLI) turn their input into a call to one
of these handlers. Handlers depend on the domain and on ports (``domain/ports/``), never on a
driver: the composition root (``paypost/bootstrap.py``) hands them the adapters of ``infra/``.
"""
