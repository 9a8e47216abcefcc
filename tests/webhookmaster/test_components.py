"""The components registry (``webhookmaster.components``) that the CLI, the local stack and the
tests' process runner all read."""

from __future__ import annotations

import argparse
import importlib

import pytest

from webhookmaster import settings as settings_mod
from webhookmaster.components import BY_NAME, COMPONENTS, Component
from webhookmaster.ops import cli


def test_cli_has_one_subcommand_per_component() -> None:
    [sub] = [a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    assert [c.name for c in COMPONENTS] == [n for n in sub.choices if n in BY_NAME]
    assert len(BY_NAME) == len(COMPONENTS) == 4


@pytest.mark.parametrize("component", COMPONENTS, ids=lambda c: c.name)
def test_entry_point_and_port_setting(component: Component) -> None:
    assert callable(importlib.import_module(component.module).serve)
    assert component.port(settings_mod.load({component.port_env: "12345"})) == 12345
    assert component.argv()[-2:] == ["webhookmaster", component.name]


def test_ports_differ_by_default() -> None:
    defaults = settings_mod.load({})
    assert len({c.port(defaults) for c in COMPONENTS}) == len(COMPONENTS)
