"""Tests of ingest_gateway/: the HTTP API, the status API, OpenAPI and Swagger UI, the
gateway as a process."""
