"""The ``webhookmaster`` command: one subcommand per component, the operator commands (topics,
migrations, settings, keys) and, where the :mod:`devstack` package is installed, the local stack."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaException

from webhookmaster import (
    __version__,
    components,
    kafka_clients,
    lifecycle,
    logs,
    secret_box,
    tracing,
)
from webhookmaster import settings as settings_mod
from webhookmaster.ops import deadletters_cli, migrate, replay_command, topics_admin
from webhookmaster.ops import listen as listen_mod
from webhookmaster.ops.errors import CommandError
from webhookmaster.settings import Settings, SettingsError

Handler = Callable[[Settings, argparse.Namespace], int]


def _stack(settings: Settings, args: argparse.Namespace) -> int:
    try:
        from devstack import local
    except ImportError:
        raise CommandError(
            "the local development stack (the devstack package) is not installed here; "
            "run it from a source checkout"
        ) from None

    if args.action == "up":
        lines = local.up(settings, components=not args.infra)
        print("\n".join(lines))
        print("WebhookMaster local stack is ready. Stop it with: webhookmaster stack down")
    elif args.action == "down":
        print("\n".join(local.down(settings)))
    else:
        print("\n".join(local.status(settings)))
    return 0


def _topics(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "manifest":
        from webhookmaster.ops import topic_manifests

        if args.format == "helm":
            defaults = Settings()
            print(
                topic_manifests.helm_template(
                    defaults.topic_partitions, defaults.retention_ms, defaults.idempotency_window_s
                ),
                end="",
            )
        else:
            print(
                topic_manifests.strimzi_yaml(
                    settings.topic_prefix,
                    settings.topic_partitions,
                    settings.retention_ms,
                    args.cluster,
                    args.namespace,
                    round(settings.idempotency_window_s * 1000),
                ),
                end="",
            )
        return 0
    if args.action == "apply":
        kafka_clients.check_cluster(settings)
        created = topics_admin.ensure_topics(settings)
        print(f"catalogue applied; created: {', '.join(created) or 'none'}")
    for spec in topics_admin.topic_specs(settings):
        configs = " ".join(f"{k}={v}" for k, v in spec.config.items())
        print(f"{spec.name:<40} partitions={spec.partitions:<3} {configs}")
    return 0


def _migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    print(f"applied migrations: {applied or 'none (up to date)'}")
    return 0


def _init(settings: Settings, args: argparse.Namespace) -> int:
    if args.check:
        missing = topics_admin.missing_topics(settings)
        pending = asyncio.run(migrate.pending_url(settings.dsn, settings.db_schema))
        if missing or pending:
            print(
                f"not initialised: missing topics: {', '.join(missing) or 'none'}; "
                f"pending migrations: {pending or 'none'}"
            )
            return 1
        print("initialised: every topic and migration is in place")
        return 0
    kafka_clients.check_cluster(settings)
    created = topics_admin.ensure_topics(settings)
    applied = asyncio.run(migrate.migrate_url(settings.dsn, settings.db_schema))
    print(f"topics created: {', '.join(created) or 'none'}")
    print(f"migrations applied: {applied or 'none'}")
    return 0


def _component(settings: Settings, args: argparse.Namespace) -> int:
    import importlib

    from webhookmaster.health_server import announce_component

    component = components.BY_NAME[args.command]
    if component.needs_secret_keys:
        secret_box.from_settings(settings)  # no usable key: one clear error line, before anything
    kafka_clients.check_cluster(settings)  # wrong credentials: one clear error line, not a hang
    logs.configure(settings.log_level, component.name)
    announce_component(component.name)
    tracing.setup(settings, component.name)
    module = importlib.import_module(component.module)
    try:
        status: int = lifecycle.run(module.serve(settings), settings.uvloop)
    finally:
        tracing.shutdown()
    return status


def _settings(settings: Settings, args: argparse.Namespace) -> int:
    if args.table:
        print(settings_mod.markdown_table())
        return 0
    rows = settings_mod.effective(settings)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}".rstrip())
    return 0


def _secret_key(settings: Settings, args: argparse.Namespace) -> int:
    print(secret_box.new_key())
    return 0


def _listen(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(listen_mod.serve(args.port, args.status, args.secret))
    return 0


def _replay(settings: Settings, args: argparse.Namespace) -> int:
    return replay_command.run(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="webhookmaster", description=__doc__)
    parser.add_argument("--version", action="version", version=f"webhookmaster {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local stack: Kafka, PostgreSQL, components")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument(
        "--infra", action="store_true", help="only Kafka, PostgreSQL, topics and migrations"
    )
    stack.set_defaults(handler=_stack)

    topics = sub.add_parser("topics", help="show or apply the topic catalogue")
    topics.add_argument("action", choices=["show", "apply", "manifest"])
    topics.add_argument(
        "--format",
        choices=["strimzi", "helm"],
        default="strimzi",
        help="manifest: Strimzi KafkaTopic YAML, or the Helm chart's template of it",
    )
    topics.add_argument("--cluster", default="my-cluster", help="manifest: the Strimzi cluster")
    topics.add_argument("--namespace", default="", help="manifest: the resources' namespace")
    topics.set_defaults(handler=_topics)

    sub.add_parser("migrate", help="apply PostgreSQL migrations").set_defaults(handler=_migrate)
    init = sub.add_parser(
        "init",
        help="apply the topic catalogue and the migrations (for deployments "
        "whose Kafka and PostgreSQL run elsewhere)",
    )
    init.add_argument(
        "--check",
        action="store_true",
        help="change nothing: exit 0 when every topic and migration is in place, else 1",
    )
    init.set_defaults(handler=_init)
    for component in components.COMPONENTS:
        sub.add_parser(component.name, help=f"run {component.help}").set_defaults(
            handler=_component
        )
    show = sub.add_parser("settings", help="print the effective WM_* settings (secrets masked)")
    show.add_argument(
        "--table",
        action="store_true",
        help="print the configuration table (defaults and meanings) instead",
    )
    show.set_defaults(handler=_settings)
    sub.add_parser(
        "secret-key",
        help="print a new key for WM_SECRET_KEYS / WM_SECRET_KEYS_FILE "
        "(to rotate, put it first and keep the old keys after it)",
    ).set_defaults(handler=_secret_key)
    listen = sub.add_parser(
        "listen",
        help="a local receiver on 127.0.0.1 that prints each delivery and checks its signatures",
    )
    listen.add_argument("--port", type=int, default=9000, help="port (0: any free one)")
    listen.add_argument("--secret", help="the subscription's secret (whsec_...): verify with it")
    listen.add_argument(
        "--status",
        type=listen_mod.http_status,
        default=200,
        help="HTTP status to answer with (default 200)",
    )
    listen.set_defaults(handler=_listen)
    replay = sub.add_parser(
        "replay",
        help="deliver a subscription's webhooks of a time window again, from the ingest topic",
    )
    replay_command.add_arguments(replay)
    replay.set_defaults(handler=_replay)
    deadletters_cli.add_parser(sub, deadletters_cli.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for name in settings_mod.unknown_names():
        print(f"webhookmaster: warning: unknown setting {name}", file=sys.stderr)
    try:
        settings = settings_mod.load()
        status: int = args.handler(settings, args)
        return status
    except CommandError as exc:
        if exc.detail:
            print(exc.detail, file=sys.stderr)
        print(f"webhookmaster: error: {exc}", file=sys.stderr)
    except (SettingsError, kafka_clients.KafkaCheckError) as exc:
        print(f"webhookmaster: error: {exc}", file=sys.stderr)
    except KafkaException as exc:
        print(f"webhookmaster: error: Kafka: {exc.args[0].str()}", file=sys.stderr)
    except OSError as exc:
        print(f"webhookmaster: error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
