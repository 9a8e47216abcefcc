"""Delivery agents: consume the ingest topic and POST each webhook to its target."""
