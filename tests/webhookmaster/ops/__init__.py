"""Tests of webhookmaster/ops/ (operator commands): migrations, topic administration."""
