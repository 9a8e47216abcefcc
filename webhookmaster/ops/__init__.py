"""Operator commands: the ``webhookmaster`` CLI, the PostgreSQL migrations and the topic
catalogue's admin calls. The components never import this package."""
