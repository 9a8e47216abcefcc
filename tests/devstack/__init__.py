"""Tests of devstack/ (the local development stack): stack up/down/status."""
