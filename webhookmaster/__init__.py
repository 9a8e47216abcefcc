"""WebhookMaster's shared runtime: settings, Kafka client setup, signing, the subscription
table, offsets, health, logging and the components registry. Operator commands live in
:mod:`webhookmaster.ops`, the local development stack in the top-level :mod:`devstack`."""

__version__ = "0.1.0"
