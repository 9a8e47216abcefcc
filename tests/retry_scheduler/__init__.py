"""Tests of retry_scheduler/: holding retries until due, in order, across restarts."""
