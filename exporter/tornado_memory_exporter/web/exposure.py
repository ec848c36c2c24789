"""Where the explorer may be served without credentials: loopback only."""

from __future__ import annotations

import ipaddress

from .credentials import Credentials

_LOOPBACK_NAMES = {"localhost"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``, optionally bracketed) is loopback."""
    host = host.strip("[]").lower()
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def require_safe_exposure(credentials: Credentials, address: str | None) -> None:
    """``ValueError`` unless the server of the explorer demands ``credentials`` or is
    bound to loopback only.

    ``address`` is where it is served; ``None`` means the application's own server, whose
    addresses ``install()`` cannot see, so it needs credentials.
    """
    if credentials.required:
        return
    if address is not None and is_loopback(address):
        return
    where = (
        f"address={address!r}" if address is not None else "the application's server (install())"
    )
    raise ValueError(
        f"explorer_enabled=True on {where} needs Config(auth_token=...) or basic_auth=...: the "
        "explorer shows what the process holds. Without credentials it is served only from "
        "exporter.serve(port, address='127.0.0.1')."
    )
