"""WebhookMaster's shared runtime: settings, Kafka client setup, logging, metrics, the CLI and
the local stack."""

__version__ = "0.1.0"
