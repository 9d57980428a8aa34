"""Practice-management secrets at rest: encrypted with the platform's key, never stored or shown plain.

The key comes from ``PAYPOST_SECRET_KEY`` (or ``PAYPOST_SECRET_KEY_FILE``): 32 or more random
bytes, base64url-encoded (``python -c 'import secrets; print(secrets.token_urlsafe(32))'``). Several
keys may be listed, comma-separated, to rotate: the first encrypts, every one decrypts, and
``paypost secrets rotate`` re-encrypts every stored secret with the first, after which the old keys
can be dropped. Encryption is the ``cryptography`` package's Fernet (AES in CBC mode with an
HMAC-SHA256 tag: authenticated, so a changed ciphertext is refused, never decrypted to garbage);
each listed key is stretched to a Fernet key with HKDF-SHA256.
"""

from __future__ import annotations

import base64
import binascii

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from paypost.domain.integrations import SecretKeyError

__all__ = ["MIN_KEY_BYTES", "SecretBox", "SecretKeyError", "derived_key"]

MIN_KEY_BYTES = 32


def _raw(text: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise SecretKeyError("PAYPOST_SECRET_KEY: a key is not base64url text") from exc
    if len(raw) < MIN_KEY_BYTES:
        raise SecretKeyError(f"PAYPOST_SECRET_KEY: a key must hold at least {MIN_KEY_BYTES} random bytes "
                             f"(this one holds {len(raw)})")
    return raw


def _fernet(text: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"paypost secrets v1").derive(_raw(text))
    return Fernet(base64.urlsafe_b64encode(derived))


def derived_key(keys: str, purpose: str) -> bytes:
    """A 32-byte key for ``purpose`` (``"patient_ref"``, say), derived with HKDF-SHA256 from the
    first of ``PAYPOST_SECRET_KEY``'s keys: one secret to keep, and no derived key reveals another
    or the secret key itself."""
    first = next((k.strip() for k in keys.split(",") if k.strip()), "")
    if not first:
        raise SecretKeyError("PAYPOST_SECRET_KEY is empty")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                info=f"paypost {purpose} v1".encode()).derive(_raw(first))


class SecretBox:
    """Encrypts with the first key; decrypts with any of them."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise SecretKeyError("PAYPOST_SECRET_KEY is empty")
        self._keys = MultiFernet([_fernet(k) for k in parts])

    def seal(self, secret: str) -> str:
        return self._keys.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        try:
            return self._keys.decrypt(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored secret does not open with PAYPOST_SECRET_KEY (rotated away, or altered)") \
                from exc

    def reseal(self, sealed: str) -> str:
        """The same secret, encrypted with the first key (for a rotation)."""
        try:
            return self._keys.rotate(sealed.encode()).decode()
        except InvalidToken as exc:
            raise SecretKeyError("a stored secret does not open with PAYPOST_SECRET_KEY") from exc
