"""Tests of deploy/ and the container files users run elsewhere."""
