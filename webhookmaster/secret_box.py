"""Subscription secrets at rest: Fernet tokens (AES-128-CBC and HMAC-SHA256, authenticated)
under a ring of keys.

In memory, the subscription table keeps each secret sealed (:func:`seal`, ChaCha20-Poly1305 under
a key made at process start and never stored) and opens it only when used (:func:`reveal`, with a
small LRU cache of recent plain texts).

The keys come from ``WM_SECRET_KEYS`` (comma-separated) or ``WM_SECRET_KEYS_FILE`` (one per line;
blank lines and ``#`` comments ignored), newest first: the first key encrypts, every key
decrypts. A rotation puts a new key first and keeps the old ones until the gateway has rewritten
the records under the new key (it does so at start-up, ``ingest_gateway/secret_migration.py``).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from webhookmaster.settings import Settings, SettingsError

__all__ = [
    "InvalidToken",
    "SecretBox",
    "SecretKeyError",
    "ensure_key_file",
    "from_settings",
    "new_key",
    "read_keys",
    "reveal",
    "seal",
]

HOW_TO = (
    "create one with 'webhookmaster secret-key' and put it in WM_SECRET_KEYS, or in the "
    "file WM_SECRET_KEYS_FILE names"
)


class SecretKeyError(SettingsError):
    """No usable subscription secret key is configured; the message says how to make one."""


def new_key() -> str:
    """A fresh Fernet key (32 random bytes, URL-safe base64)."""
    return Fernet.generate_key().decode()


def read_keys(settings: Settings) -> list[str]:
    """The configured keys, newest first; :class:`SecretKeyError` when there are none."""
    if settings.secret_keys.strip() and settings.secret_keys_file:
        raise SecretKeyError("set WM_SECRET_KEYS or WM_SECRET_KEYS_FILE, not both")
    if settings.secret_keys_file:
        try:
            parts = Path(settings.secret_keys_file).read_text().splitlines()
        except OSError as exc:
            raise SecretKeyError(
                f"WM_SECRET_KEYS_FILE={settings.secret_keys_file}: "
                f"cannot read it ({exc.strerror or exc})"
            ) from None
        where = f"the file {settings.secret_keys_file} (WM_SECRET_KEYS_FILE)"
    else:
        parts = settings.secret_keys.split(",")
        where = "WM_SECRET_KEYS"
    keys = [p.strip() for p in parts if p.strip() and not p.strip().startswith("#")]
    if not keys:
        if settings.secret_keys_file:
            raise SecretKeyError(f"{where} holds no key: {HOW_TO}")
        raise SecretKeyError("no key to encrypt subscription secrets: " + HOW_TO)
    return keys


class SecretBox:
    """Encrypts under the newest key, decrypts under any of them."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError("no key to encrypt subscription secrets: " + HOW_TO)
        fernets = []
        for number, key in enumerate(keys, 1):
            try:
                fernets.append(Fernet(key))
            except (ValueError, TypeError):
                raise SecretKeyError(
                    f"secret key number {number} is not a Fernet key (32 bytes in URL-safe "
                    f"base64, 44 characters): {HOW_TO}"
                ) from None
        self._fernets = tuple(fernets)

    def encrypt(self, plain: str) -> str:
        """``plain`` as a token under the newest key."""
        return self._fernets[0].encrypt(plain.encode()).decode("ascii")

    def decrypt(self, token: str) -> tuple[str, bool]:
        """The plain text of ``token`` and whether it was encrypted under the newest key;
        :class:`InvalidToken` when no key opens it (or it was tampered with)."""
        data = token.encode()
        for index, fernet in enumerate(self._fernets):
            try:
                return fernet.decrypt(data).decode(), index == 0
            except InvalidToken:
                continue
        raise InvalidToken


_IN_MEMORY = ChaCha20Poly1305(ChaCha20Poly1305.generate_key())
_NONCE = 12
REVEAL_CACHE = 1024  # plain texts of the most recently used sealed secrets


def seal(plain: str) -> bytes:
    """``plain`` encrypted for this process's memory (nonce, ciphertext and tag: 28 bytes more
    than the text); only this process can :func:`reveal` it."""
    nonce = os.urandom(_NONCE)
    return nonce + _IN_MEMORY.encrypt(nonce, plain.encode(), None)


@functools.lru_cache(maxsize=REVEAL_CACHE)
def reveal(sealed: bytes) -> str:
    """The plain text of :func:`seal`'s output."""
    return _IN_MEMORY.decrypt(sealed[:_NONCE], sealed[_NONCE:], None).decode()


def from_settings(settings: Settings) -> SecretBox:
    return SecretBox(read_keys(settings))


def ensure_key_file(path: Path) -> Path:
    """``path`` holding a key: written with a new key (mode 0600) unless it exists; its mode is
    set to 0600 either way."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            out.write(new_key() + "\n")
    path.chmod(0o600)
    return path
