"""Tests of schemas/: the record formats, their JSON Schema files and the topic catalogue."""
