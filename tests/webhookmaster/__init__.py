"""Tests of webhookmaster/ (the shared runtime): settings, secrets, components, retry ladder."""
