"""Tests of delivery_agents/: delivery, signing, the SSRF guard, agents as processes."""
