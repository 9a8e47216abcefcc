"""The package boundaries the architecture promises, read from the import statements: the
components talk only through topics (they never import each other), the shared runtime never
reaches into the operator commands or the local development stack, and the CLI still answers
in one line where the development stack is not installed (the runtime image)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from webhookmaster.settings import PROJECT_ROOT

ROOT = PROJECT_ROOT
COMPONENTS = ("ingest_gateway", "delivery_agents", "retry_scheduler", "status_projector")
RUNTIME_FORBIDDEN = ("webhookmaster.ops", "devstack", *COMPONENTS)


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _ours(names: set[str], package: str) -> set[str]:
    tops = {*COMPONENTS, "schemas", "webhookmaster", "devstack"}
    return {n for n in names if n.split(".")[0] in tops and n.split(".")[0] != package}


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize("package", COMPONENTS)
def test_a_component_imports_only_the_runtime_and_the_schemas(package: str) -> None:
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _ours(_imports(path), package):
            assert _under(name, "schemas") or _under(name, "webhookmaster"), (path, name)
            assert not _under(name, "webhookmaster.ops"), (path, name)


def test_the_runtime_never_imports_operator_commands_the_stack_or_a_component() -> None:
    runtime = [
        p
        for p in (ROOT / "webhookmaster").rglob("*.py")
        if "ops" not in p.parts and p.name != "__main__.py"  # the command's entry shim
    ]
    assert len(runtime) > 10
    for path in runtime:
        for name in _imports(path):
            assert not any(_under(name, bad) for bad in RUNTIME_FORBIDDEN), (path, name)


def test_the_schemas_import_nothing_of_ours() -> None:
    for path in (ROOT / "schemas").rglob("*.py"):
        assert not _ours(_imports(path), "schemas") - {
            n for n in _imports(path) if _under(n, "schemas")
        }, path


def test_without_the_development_stack_the_stack_command_fails_in_one_line() -> None:
    code = (
        "import sys; sys.modules['devstack'] = None\n"  # as in the runtime image
        "from webhookmaster.ops.cli import main\n"
        "sys.exit(main(['stack', 'status']))"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert lines == [
        "webhookmaster: error: the local development stack (the devstack package) is not "
        "installed here; run it from a source checkout"
    ], run.stderr
