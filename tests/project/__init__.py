"""Tests of the project as a whole: package boundaries, documentation."""
