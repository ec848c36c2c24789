"""Bearer-token and basic auth for our endpoints, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from ..config import Config

REALM = "tornado-memory-exporter"


def authorized(config: Config, authorization: str | None) -> bool:
    """Whether an ``Authorization`` header value satisfies ``config``'s credentials.

    With no credentials configured every request is authorized. Both comparisons of a basic
    pair always run, so timing tells nothing about which half was wrong.
    """
    if not config.auth_required:
        return True
    if not authorization:
        return False
    scheme, _, value = authorization.strip().partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and config.auth_token is not None:
        return _same(value.encode(), config.auth_token.encode())
    if scheme == "basic" and config.basic_auth is not None:
        try:
            decoded = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return False
        user, sep, password = decoded.partition(b":")
        expected_user, expected_password = (s.encode() for s in config.basic_auth)
        user_ok = _same(user, expected_user)
        password_ok = _same(password, expected_password)
        return bool(sep) and user_ok and password_ok
    return False


def _same(given: bytes, expected: bytes) -> bool:
    # compare_digest returns at once when lengths differ, telling the secret's length; digests
    # are always 32 bytes, so the time depends on the given value's length only.
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())


def challenges(config: Config) -> list[str]:
    """``WWW-Authenticate`` values for a 401, one per configured scheme."""
    values = []
    if config.auth_token is not None:
        values.append(f'Bearer realm="{REALM}"')
    if config.basic_auth is not None:
        values.append(f'Basic realm="{REALM}", charset="UTF-8"')
    return values
