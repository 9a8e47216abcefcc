"""Logging setup shared by every component: one line per record, to stderr."""

from __future__ import annotations

import logging
import sys


def configure(level: str = "INFO", component: str = "webhookmaster") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {component} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
