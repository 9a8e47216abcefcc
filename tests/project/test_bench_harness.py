"""The bench's settings environment: its defaults, the caller's WM_* and WM_BENCH_* over them."""

from __future__ import annotations

from bench.harness import BENCH_ENV, bench_env
from webhookmaster import settings as settings_mod


def test_defaults_are_the_bench_stack() -> None:
    env = bench_env({"PATH": "/bin"})
    settings = settings_mod.load(env)
    assert (settings.kafka_port, settings.kafka_controller_port, settings.pg_port) == (
        18092,
        18093,
        18432,
    )
    assert settings.state_dir == BENCH_ENV["WM_STATE_DIR"]
    assert settings.topic_partitions == 6
    assert settings.allowed_cidrs == "127.0.0.0/8" and settings.api_keys == ""
    assert env["PATH"] == "/bin"


def test_wm_variables_override_the_defaults_but_not_the_bench_conditions() -> None:
    env = bench_env(
        {
            "WM_KAFKA_PORT": "31100",
            "WM_KAFKA_CONTROLLER_PORT": "31101",
            "WM_PG_PORT": "31102",
            "WM_STATE_DIR": "/tmp/other-bench",
            "WM_TOPIC_PARTITIONS": "3",
            "WM_API_KEYS": "dev-key",
            "WM_ALLOWED_CIDRS": "10.0.0.0/8",
        }
    )
    settings = settings_mod.load(env)
    assert (settings.kafka_port, settings.kafka_controller_port, settings.pg_port) == (
        31100,
        31101,
        31102,
    )
    assert settings.state_dir == "/tmp/other-bench"
    assert settings.topic_partitions == 3
    # load generators send no key and receivers are on loopback
    assert settings.api_keys == "" and settings.allowed_cidrs == "127.0.0.0/8"


def test_bench_variables_override_everything() -> None:
    env = bench_env(
        {
            "WM_KAFKA_PORT": "19092",  # a running dev stack's broker
            "WM_BENCH_KAFKA_PORT": "31110",
            "WM_BENCH_PG_PORT": "31111",
            "WM_BENCH_STATE_DIR": "/tmp/bench-2",
            "WM_BENCH_ALLOWED_CIDRS": "127.0.0.1/32",
        }
    )
    assert not any(k.startswith("WM_BENCH_") for k in env)
    settings = settings_mod.load(env)
    assert (settings.kafka_port, settings.pg_port) == (31110, 31111)
    assert settings.kafka_controller_port == 18093
    assert settings.state_dir == "/tmp/bench-2"
    assert settings.allowed_cidrs == "127.0.0.1/32"
