"""The retry scheduler: holds webhooks in tiered retry topics until due, then hands them back."""
