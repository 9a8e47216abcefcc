"""The local stack: a single-node Apache Kafka broker, a PostgreSQL cluster and the components,
started and stopped by the project's own code (no Docker)."""
