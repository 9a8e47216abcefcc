"""The components the stack runs as background processes: CLI subcommand and the setting that
holds its HTTP port (health, readiness, metrics)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    name: str
    port_setting: str
    description: str


COMPONENTS: tuple[Component, ...] = (
    Component("gateway", "gateway_port", "ingest, subscription and status API"),
    Component("agent", "agent_port", "delivery agent"),
    Component("scheduler", "scheduler_port", "retry scheduler"),
    Component("projector", "projector_port", "status projector"),
)
