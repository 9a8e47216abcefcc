"""TLS material for a secured test broker, made with the real ``openssl``: a CA, the broker's
certificate (names 127.0.0.1 and localhost) in a PKCS12 keystore, and a client certificate
whose private key is encrypted with a password."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

KEYSTORE_PASSWORD = "broker-store-pw"
CLIENT_KEY_PASSWORD = "client-key-pw"


@dataclass(frozen=True)
class Pki:
    ca_file: Path  # PEM: the CA certificate (signs the broker's and the client's)
    keystore: Path  # PKCS12: the broker's key and certificate chain
    client_cert: Path  # PEM
    client_key: Path  # PEM, PKCS#8 encrypted with CLIENT_KEY_PASSWORD
    client_key_password_file: Path
    other_ca_file: Path  # PEM: a CA that signed nothing here (a client that trusts it fails)


def _openssl(folder: Path, *args: str) -> None:
    run = subprocess.run(
        ["openssl", *args], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, f"openssl {' '.join(args)}:\n{run.stderr}"


def _ca(folder: Path, name: str) -> None:
    _openssl(
        folder,
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign"),
    )


def _signed(folder: Path, name: str, subject: str, extensions: str) -> None:
    """``name``.key and ``name``.pem, signed by the CA ``ca``."""
    _openssl(
        folder,
        *("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key"),
        *("-out", f"{name}.csr", "-subj", subject),
    )
    (folder / f"{name}.ext").write_text(extensions)
    _openssl(
        folder,
        *("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-days", "2", "-out", f"{name}.pem", "-extfile", f"{name}.ext"),
    )


def make_pki(folder: Path) -> Pki:
    """Every file a broker with TLS listeners and its clients need, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    _ca(folder, "ca")
    _ca(folder, "other-ca")
    _signed(
        folder,
        "broker",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    _openssl(
        folder,
        *("pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key"),
        *("-certfile", "ca.pem", "-name", "broker", "-out", "broker.p12"),
        "-passout",
        f"pass:{KEYSTORE_PASSWORD}",
    )
    _signed(folder, "client", "/CN=webhookmaster-client", "extendedKeyUsage=clientAuth\n")
    _openssl(
        folder,
        *("pkcs8", "-topk8", "-v2", "aes-256-cbc", "-in", "client.key"),
        *("-out", "client-encrypted.key", "-passout", f"pass:{CLIENT_KEY_PASSWORD}"),
    )
    password_file = folder / "client-key-password"
    password_file.write_text(CLIENT_KEY_PASSWORD + "\n")  # as a Kubernetes Secret may hold it
    return Pki(
        ca_file=folder / "ca.pem",
        keystore=folder / "broker.p12",
        client_cert=folder / "client.pem",
        client_key=folder / "client-encrypted.key",
        client_key_password_file=password_file,
        other_ca_file=folder / "other-ca.pem",
    )
