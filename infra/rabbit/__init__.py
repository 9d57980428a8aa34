"""RabbitMQ: connections, topology, publishers, intake, the event hub, broker users and the AsyncAPI document."""
