"""A PostgreSQL cluster on 127.0.0.1 with its data in the state folder, from the Debian package
(installed when missing). Run as the ``postgres`` user when the stack runs as root."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import asyncpg

from devstack import processes
from devstack.errors import StackError
from webhookmaster.settings import Settings

DB_NAME = "webhookmaster"
DB_USER = "webhookmaster"


def paths(settings: Settings) -> dict[str, Path]:
    return processes.state_paths(
        settings.state_path, "postgres", data="data", socket="run", log="postgres.log"
    )


def bin_dir(install: bool = True) -> Path:
    """Folder holding initdb and pg_ctl; installs Debian's ``postgresql`` when none is found."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1].parent
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    if not install:
        raise StackError(
            "PostgreSQL server not found: install it (apt-get install postgresql) "
            "or set WM_DATABASE_URL"
        )
    _apt_install()
    return bin_dir(install=False)


def _apt_install() -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        try:
            result = subprocess.run(
                prefix + argv, capture_output=True, text=True, env=env, timeout=900
            )
        except FileNotFoundError as exc:
            raise StackError(
                "PostgreSQL server not found and apt-get is unavailable: install "
                "PostgreSQL or set WM_DATABASE_URL"
            ) from exc
        if result.returncode != 0:
            raise StackError(
                "PostgreSQL server not found and 'apt-get install postgresql' "
                "failed: install it yourself or set WM_DATABASE_URL",
                detail=result.stderr[-4000:],
            )


def _as_owner(argv: list[str]) -> list[str]:
    """Run as ``postgres`` when we are root: PostgreSQL refuses to run as root."""
    if os.geteuid() != 0:
        return argv
    return ["runuser", "-u", "postgres", "--", *argv]


def _pg_tool(
    bindir: Path, tool: str, settings: Settings, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run ``tool`` (initdb, pg_ctl) on the cluster's data folder as its owner."""
    argv = [str(bindir / tool), "-D", str(paths(settings)["data"]), *args]
    return subprocess.run(_as_owner(argv), capture_output=True, text=True, timeout=timeout)


def server_group() -> int | None:
    """The group id of the ``postgres`` user the cluster runs as when we are root, else None."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres").pw_gid
    except KeyError:
        return None


def _prepare_dirs(settings: Settings) -> None:
    p = paths(settings)
    for key in ("base", "socket"):
        p[key].mkdir(parents=True, exist_ok=True)
    p["base"].chmod(0o700)  # the cluster's data, log and socket: its owner's only
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError(
                "running as root needs a 'postgres' system user (the Debian package creates it)"
            ) from exc
        for key in ("base", "socket"):
            os.chown(p[key], owner.pw_uid, owner.pw_gid)
        if not p["log"].exists():
            p["log"].touch()
        os.chown(p["log"], owner.pw_uid, owner.pw_gid)
        if (
            subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(p["base"])],
                capture_output=True,
            ).returncode
            != 0
        ):
            raise StackError(
                f"the 'postgres' user cannot reach {p['base']}: choose a "
                "WM_STATE_DIR whose parent folders others may enter"
            )


def _initdb(settings: Settings, bindir: Path) -> None:
    p = paths(settings)
    if (p["data"] / "PG_VERSION").exists():
        p["data"].chmod(0o700)  # initdb made it so; keep it so
        return
    result = _pg_tool(
        bindir,
        "initdb",
        settings,
        *("-U", DB_USER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"),
        timeout=300,
    )
    if result.returncode != 0:
        raise StackError(
            "initdb failed for the local PostgreSQL cluster",
            detail=(result.stdout + result.stderr)[-4000:],
        )
    with open(p["data"] / "postgresql.conf", "a") as conf:
        conf.write(
            "\n# webhookmaster local stack\nlisten_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{p['socket']}'\nmax_connections = 200\n"
        )


def pid(settings: Settings) -> int | None:
    pid_file = paths(settings)["data"] / "postmaster.pid"
    return processes.read_pid(pid_file) if pid_file.exists() else None


def responds(settings: Settings) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(_admin_dsn(settings), timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


def _admin_dsn(settings: Settings) -> str:
    return f"postgresql://{DB_USER}@127.0.0.1:{settings.pg_port}/postgres"


async def _create_database(settings: Settings) -> None:
    conn = await asyncpg.connect(_admin_dsn(settings), timeout=10)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DB_NAME)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        await conn.close()


def start(settings: Settings) -> str:
    """Start the cluster unless it already runs; create the database. Returns a status line."""
    p = paths(settings)
    if pid(settings) is None:
        processes.require_free_port(settings.pg_port, "PostgreSQL", "WM_PG_PORT")
        bindir = bin_dir()
        _prepare_dirs(settings)
        _initdb(settings, bindir)
        wait_s = str(int(settings.ready_timeout_s))
        result = _pg_tool(
            bindir,
            "pg_ctl",
            settings,
            *("-l", str(p["log"]), "-o", f"-p {settings.pg_port}", "-w", "-t", wait_s, "start"),
            timeout=settings.ready_timeout_s + 30,
        )
        if result.returncode != 0:
            raise StackError(
                f"PostgreSQL did not start on 127.0.0.1:{settings.pg_port} (log: {p['log']})",
                detail=processes.tail(p["log"]),
            )
        state = "started"
    else:
        state = "already running"
    if not processes.wait_until(lambda: responds(settings), settings.ready_timeout_s):
        raise StackError(
            f"PostgreSQL does not answer on 127.0.0.1:{settings.pg_port}",
            detail=processes.tail(p["log"]),
        )
    asyncio.run(_create_database(settings))
    return f"postgres   {state} (pid {pid(settings)})  {settings.dsn}"


def stop(settings: Settings) -> bool:
    if pid(settings) is None:
        return False
    _pg_tool(bin_dir(install=False), "pg_ctl", settings, "-m", "fast", "-w", "stop", timeout=120)
    return True
