"""Consumers: the posting service and the subscribers that feed it from RabbitMQ."""
