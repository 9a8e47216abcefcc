"""The local development stack: a single-node Apache Kafka broker assembled from Maven Central,
a PostgreSQL cluster from Debian's binaries and the components, started and stopped by the
project's own code (no Docker). Not part of the runtime container image."""
