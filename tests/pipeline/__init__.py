"""Tests across components through real topics: end to end, data integrity, chaos."""
