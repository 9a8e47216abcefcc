"""The ingest gateway: accepts webhooks over HTTP, produces them to the ingest topic, serves the
subscription and status APIs."""
