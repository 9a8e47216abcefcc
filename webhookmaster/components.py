"""The components registry: every component the CLI runs, the local stack starts and the tests
run as processes, with its entry point, the setting that holds its HTTP port (health,
readiness, metrics) and what it needs before it starts."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass

from webhookmaster.settings import Settings


@dataclass(frozen=True)
class Component:
    name: str  # the CLI subcommand
    module: str  # the module whose ``serve(settings)`` coroutine runs it to its exit code
    port_setting: str  # the Settings field of its HTTP port
    description: str  # what it is, in the stack's listing
    help: str  # the CLI subcommand's help, after "run"
    needs_secret_keys: bool = False  # reads the subscription table, so decrypts secrets

    @property
    def port_env(self) -> str:
        """The environment variable of its port setting."""
        [env] = [
            f.metadata["env"] for f in dataclasses.fields(Settings) if f.name == self.port_setting
        ]
        return str(env)

    def port(self, settings: Settings) -> int:
        return int(getattr(settings, self.port_setting))

    def argv(self) -> list[str]:
        """The command line that runs it as a process."""
        return [sys.executable, "-m", "webhookmaster", self.name]


COMPONENTS: tuple[Component, ...] = (
    Component(
        "gateway",
        "ingest_gateway.main",
        "gateway_port",
        "ingest, subscription and status API",
        "the ingest gateway (HTTP API)",
        needs_secret_keys=True,
    ),
    Component(
        "agent",
        "delivery_agents.main",
        "agent_port",
        "delivery agent",
        "a delivery agent",
        needs_secret_keys=True,
    ),
    Component(
        "scheduler",
        "retry_scheduler.main",
        "scheduler_port",
        "retry scheduler",
        "the retry scheduler",
    ),
    Component(
        "projector",
        "status_projector.main",
        "projector_port",
        "status projector",
        "the status projector",
    ),
)

BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}
