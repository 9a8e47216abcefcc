"""Kafka client settings, broker-free: the security settings and the pass-through become the
librdkafka properties of every client config, bad combinations stop the load with one line
naming the variable, secrets come from files and are masked when shown."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.support.kafka_tls import CLIENT_KEY_PASSWORD, make_pki
from tests.support.ports import free_port
from webhookmaster import kafka_clients, kafka_security
from webhookmaster import settings as settings_mod
from webhookmaster.kafka_clients import admin_config, consumer_config, producer_config
from webhookmaster.ops import cli
from webhookmaster.settings import SettingsError

SASL = {
    "WM_KAFKA_BOOTSTRAP": "broker-1.example:9096",
    "WM_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
    "WM_KAFKA_SASL_MECHANISM": "scram-sha-512",
    "WM_KAFKA_SASL_USERNAME": "alice",
    "WM_KAFKA_SASL_PASSWORD": "s3cret-pw",
}


def load(**env: str) -> settings_mod.Settings:
    return settings_mod.load(env)


def error(**env: str) -> str:
    with pytest.raises(SettingsError) as caught:
        load(**env)
    return str(caught.value)


@pytest.mark.parametrize(
    ("variable", "prop"),
    [
        ("WM_KAFKA_CONFIG_CLIENT_RACK", "client.rack"),
        ("WM_KAFKA_CONFIG_LOG__LEVEL", "log_level"),
        ("WM_KAFKA_CONFIG_SSL_CIPHER_SUITES", "ssl.cipher.suites"),
        ("wm_kafka_config_linger_ms", "linger.ms"),
    ],
)
def test_pass_through_names_map_to_librdkafka_properties(variable: str, prop: str) -> None:
    assert kafka_security.property_name(variable.upper()) == prop
    assert kafka_security.env_name(prop) == variable.upper()


def test_pass_through_reaches_every_client_and_is_no_unknown_setting() -> None:
    env = {"WM_KAFKA_CONFIG_CLIENT_RACK": "use1-az1", "WM_KAFKA_CONFIG_LINGER_MS": "20"}
    settings = settings_mod.load(env)
    for config in (
        producer_config(settings),
        consumer_config(settings, "g"),
        admin_config(settings),
    ):
        assert config["client.rack"] == "use1-az1"
        assert config["linger.ms"] == "20"  # over the producer's own default
    assert settings_mod.unknown_names({**env, "WM_KAFKA_RACK": "x"}) == ["WM_KAFKA_RACK"]
    assert settings_mod.load(settings_mod.to_env(settings)) == settings


def test_sasl_scram_over_tls_in_every_config(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("from-a-secret\n")
    env = {**SASL, "WM_KAFKA_SASL_PASSWORD": "", "WM_KAFKA_SASL_PASSWORD_FILE": str(password)}
    settings = settings_mod.load(env)
    config = consumer_config(settings, "g")
    assert config["bootstrap.servers"] == "broker-1.example:9096"
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("alice", "from-a-secret")
    assert config["group.id"] == "g" and config["enable.auto.commit"] is False
    assert "ssl.endpoint.identification.algorithm" not in config  # librdkafka's default: https


def test_mutual_tls_properties_with_an_encrypted_key(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    env = {
        "WM_KAFKA_SECURITY_PROTOCOL": "SSL",
        "WM_KAFKA_SSL_CA_FILE": str(pki.ca_file),
        "WM_KAFKA_SSL_CERT_FILE": str(pki.client_cert),
        "WM_KAFKA_SSL_KEY_FILE": str(pki.client_key),
        "WM_KAFKA_SSL_KEY_PASSWORD_FILE": str(pki.client_key_password_file),
        "WM_KAFKA_SSL_VERIFY_HOSTNAME": "false",
    }
    assert kafka_security.named(settings_mod.load(env)) == {
        "security.protocol": "SSL",
        "ssl.ca.location": str(pki.ca_file),
        "ssl.certificate.location": str(pki.client_cert),
        "ssl.key.location": str(pki.client_key),
        "ssl.key.password": CLIENT_KEY_PASSWORD,  # the file's trailing newline dropped
        "ssl.endpoint.identification.algorithm": "none",
    }
    # librdkafka decrypts the key at load: a wrong password names the key's variables
    pki.client_key_password_file.write_text("wrong\n")
    assert error(**env).startswith("WM_KAFKA_SSL_KEY_"), error(**env)
    del env["WM_KAFKA_SSL_KEY_FILE"], env["WM_KAFKA_SSL_KEY_PASSWORD_FILE"]
    assert error(**env).startswith("WM_KAFKA_SSL_KEY_FILE: needed with the other half")


def test_oauthbearer_uses_librdkafkas_oidc_client() -> None:
    settings = load(
        WM_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        WM_KAFKA_SASL_MECHANISM="OAUTHBEARER",
        WM_KAFKA_OAUTH_TOKEN_URL="https://idp.example/oauth2/token",
        WM_KAFKA_OAUTH_CLIENT_ID="webhookmaster",
        WM_KAFKA_OAUTH_CLIENT_SECRET="cs",
        WM_KAFKA_OAUTH_SCOPE="kafka",
    )
    props = kafka_security.properties(settings)
    assert props["sasl.oauthbearer.method"] == "oidc"
    assert props["sasl.oauthbearer.token.endpoint.url"] == "https://idp.example/oauth2/token"
    assert props["sasl.oauthbearer.client.id"] == "webhookmaster"
    assert props["sasl.oauthbearer.client.secret"] == "cs"
    assert props["sasl.oauthbearer.scope"] == "kafka"


def test_properties_file_then_variables(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text(
        "# from the provider\n"
        "security.protocol=SASL_SSL\n"
        "sasl.mechanisms=PLAIN\n"
        "sasl.username = KEY\n"
        "sasl.password=SECRET\n"
        "client.rack=a\n"
    )
    settings = load(WM_KAFKA_CONFIG_FILE=str(path), WM_KAFKA_CONFIG_CLIENT_RACK="b")
    props = kafka_security.properties(settings)
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "PLAIN"
    assert props["sasl.username"] == "KEY"
    assert props["client.rack"] == "b"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "WM_KAFKA_SECURITY_PROTOCOL: expected one of"),
        ({"WM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "WM_KAFKA_SASL_MECHANISM: needed with"),
        (
            {**SASL, "WM_KAFKA_SASL_PASSWORD": ""},
            "WM_KAFKA_SASL_PASSWORD: needed with SCRAM-SHA-512",
        ),
        (
            {**SASL, "WM_KAFKA_SASL_PASSWORD_FILE": "/nonexistent"},
            "WM_KAFKA_SASL_PASSWORD_FILE: set WM_KAFKA_SASL_PASSWORD or "
            "WM_KAFKA_SASL_PASSWORD_FILE, not both",
        ),
        (
            {**SASL, "WM_KAFKA_SASL_PASSWORD": "", "WM_KAFKA_SASL_PASSWORD_FILE": "/nonexistent"},
            "WM_KAFKA_SASL_PASSWORD_FILE: cannot read /nonexistent",
        ),
        (
            {"WM_KAFKA_SECURITY_PROTOCOL": "SSL", "WM_KAFKA_SSL_CA_FILE": "/nonexistent/ca.pem"},
            "WM_KAFKA_SSL_CA_FILE: no such file: /nonexistent/ca.pem",
        ),
        (
            {"WM_KAFKA_SASL_MECHANISM": "PLAIN"},
            "WM_KAFKA_SASL_MECHANISM: needs WM_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {"WM_KAFKA_SSL_VERIFY_HOSTNAME": "off"},
            "WM_KAFKA_SSL_VERIFY_HOSTNAME: needs WM_KAFKA_SECURITY_PROTOCOL=SSL or SASL_SSL",
        ),
        (
            {
                "WM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "WM_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
                "WM_KAFKA_OAUTH_TOKEN_URL": "https://idp.example/token",
            },
            "WM_KAFKA_OAUTH_CLIENT_ID: needed with OAUTHBEARER",
        ),
        ({"WM_KAFKA_CONFIG_GROUP_ID": "x"}, "WM_KAFKA_CONFIG_GROUP_ID: group.id cannot be set"),
        (
            {"WM_KAFKA_CONFIG_BOOTSTRAP_SERVERS": "x:1"},
            "WM_KAFKA_CONFIG_BOOTSTRAP_SERVERS: bootstrap.servers cannot be set here: "
            "set WM_KAFKA_BOOTSTRAP instead",
        ),
        ({"WM_KAFKA_CONFIG_A___B": "x"}, "WM_KAFKA_CONFIG_A___B: not a librdkafka property name"),
        (
            {"WM_KAFKA_CONFIG_LINGER_MS": "soon"},
            "WM_KAFKA_CONFIG_LINGER_MS: librdkafka rejects it: ",
        ),
        (
            {"WM_KAFKA_CONFIG_CLIENT_RACKK": "a"},
            "WM_KAFKA_CONFIG_CLIENT_RACKK: librdkafka rejects it: No such configuration property",
        ),
        (
            {**SASL, "WM_KAFKA_CONFIG_SASL_USERNAME": "bob"},
            "WM_KAFKA_CONFIG_SASL_USERNAME: sets sasl.username, which WM_KAFKA_SASL_USERNAME "
            "sets already",
        ),
    ],
)
def test_a_bad_kafka_setting_names_its_variable(env: dict[str, str], expected: str) -> None:
    assert error(**env).startswith(expected)


def test_a_properties_file_line_that_is_no_property(tmp_path: Path) -> None:
    path = tmp_path / "client.properties"
    path.write_text("client.rack=a\nthis is not a property\n")
    assert error(WM_KAFKA_CONFIG_FILE=str(path)) == (
        f"WM_KAFKA_CONFIG_FILE: {path} line 2: expected name=value"
    )


def test_librdkafka_reads_the_tls_files_at_load(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    message = error(WM_KAFKA_SECURITY_PROTOCOL="SSL", WM_KAFKA_SSL_CA_FILE=str(ca))
    assert message.startswith("WM_KAFKA_SSL_CA_FILE: librdkafka rejects it: "), message


def test_settings_command_masks_kafka_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {**SASL, "WM_KAFKA_CONFIG_SASL_OAUTHBEARER_CONFIG": "x=y"}.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["settings"]) == 0
    captured = capsys.readouterr()
    rows = dict(line.split(None, 1) for line in captured.out.splitlines() if " " in line)
    assert rows["WM_KAFKA_SASL_PASSWORD"] == settings_mod.MASK
    assert rows["WM_KAFKA_CONFIG_SASL_OAUTHBEARER_CONFIG"] == settings_mod.MASK
    assert rows["WM_KAFKA_SASL_USERNAME"] == "alice"
    assert "s3cret-pw" not in captured.out + captured.err
    assert "unknown setting" not in captured.err


def test_a_bad_kafka_setting_is_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert cli.main(["settings"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "webhookmaster: error: WM_KAFKA_SASL_MECHANISM: needed with SASL_SSL"
    ]


def test_the_start_up_check_gives_up_on_a_silent_address_with_one_message() -> None:
    settings = load(WM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}", WM_KAFKA_CHECK_TIMEOUT="1")
    with pytest.raises(kafka_clients.KafkaCheckError) as caught:
        kafka_clients.check_cluster(settings)
    message = str(caught.value)
    assert message.startswith(f"Kafka: no broker answered at {settings.bootstrap} within 1 s")
    assert "\n" not in message
    kafka_clients.check_cluster(dataclasses.replace(settings, kafka_check_timeout_s=0.0))
