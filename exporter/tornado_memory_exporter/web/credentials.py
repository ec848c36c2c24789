"""Bearer-token and basic auth for our endpoints, compared in constant time."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from ..config import Config

REALM = "tornado-memory-exporter"


@dataclass(frozen=True)
class Credentials:
    """What our endpoints demand: a bearer ``token``, a ``basic`` (user, password) pair, either
    or none (every request is then authorized). ``Credentials.of(config)`` takes them from a
    validated ``Config``."""

    token: str | None = None
    basic: tuple[str, str] | None = None

    @classmethod
    def of(cls, config: Config) -> Credentials:
        return cls(token=config.auth_token, basic=config.basic_auth)

    @property
    def required(self) -> bool:
        """Whether requests must carry credentials."""
        return self.token is not None or self.basic is not None

    def authorize(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value satisfies these credentials.

        Both comparisons of a basic pair always run, so timing tells nothing about which half
        was wrong.
        """
        if not self.required:
            return True
        if not authorization:
            return False
        scheme, _, value = authorization.strip().partition(" ")
        scheme, value = scheme.lower(), value.strip()
        if scheme == "bearer" and self.token is not None:
            return same_secret(value.encode(), self.token.encode())
        if scheme == "basic" and self.basic is not None:
            try:
                decoded = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                return False
            user, sep, password = decoded.partition(b":")
            expected_user, expected_password = (s.encode() for s in self.basic)
            user_ok = same_secret(user, expected_user)
            password_ok = same_secret(password, expected_password)
            return bool(sep) and user_ok and password_ok
        return False

    def challenges(self) -> list[str]:
        """``WWW-Authenticate`` values for a 401, one per configured scheme."""
        values = []
        if self.token is not None:
            values.append(f'Bearer realm="{REALM}"')
        if self.basic is not None:
            values.append(f'Basic realm="{REALM}", charset="UTF-8"')
        return values

    def __repr__(self) -> str:  # never print a secret
        token = "<set>" if self.token else None
        basic = "<set>" if self.basic else None
        return f"Credentials(token={token}, basic={basic})"


def same_secret(given: bytes, expected: bytes) -> bool:
    """Whether ``given`` equals the secret ``expected``, in a time that tells nothing of it."""
    # compare_digest returns at once when lengths differ, telling the secret's length; digests
    # are always 32 bytes, so the time depends on the given value's length only.
    return hmac.compare_digest(hashlib.sha256(given).digest(), hashlib.sha256(expected).digest())
