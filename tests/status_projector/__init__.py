"""Tests of status_projector/: status rows from topic records, fold, retention, resilience."""
