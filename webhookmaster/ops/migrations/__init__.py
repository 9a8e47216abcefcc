"""Versioned SQL migrations, applied in order by :mod:`webhookmaster.ops.migrate`."""
