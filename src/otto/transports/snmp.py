"""Where a device's SNMP agent is and how to talk to it: ``SnmpSettings``.

Plain data, with no SNMP library behind it, so that reading a lab costs
nothing; ``otto.transports.snmp_client`` does the talking (pysnmp). The secrets (a
community, v3 keys) are never shown in reprs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "SNMP_AUTH_PROTOCOLS",
    "SNMP_PRIV_PROTOCOLS",
    "SNMP_VERSIONS",
    "SnmpSettings",
    "SnmpVersion",
]

SnmpVersion = Literal["2c", "3"]

SNMP_VERSIONS: tuple[SnmpVersion, ...] = ("2c", "3")
"""SNMPv1 is left out: it has no GETBULK, and one missing object fails a whole GET."""
SNMP_AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
"""SNMPv3 authentication protocols (``auth_protocol``)."""
SNMP_PRIV_PROTOCOLS = ("DES", "3DES", "AES", "AES192", "AES256")
"""SNMPv3 privacy (encryption) protocols (``priv_protocol``)."""


@dataclass(frozen=True)
class SnmpSettings:
    """How to reach a device's SNMP agent (the lab field ``snmp``).

    Args:
        community: the v2c community (a secret: never shown).
        port: the agent's UDP port.
        version: ``"2c"`` (default) or ``"3"``.
        address: the agent's address; None means the host's own address.
            Requests go straight from this machine (never through a hop).
        user: the SNMPv3 user name.
        auth_key, priv_key: the SNMPv3 authentication and privacy pass
            phrases (secrets: never shown); no ``auth_key`` means noAuthNoPriv,
            no ``priv_key`` means authNoPriv.
        auth_protocol, priv_protocol: see ``SNMP_AUTH_PROTOCOLS`` and
            ``SNMP_PRIV_PROTOCOLS``.
        timeout: seconds to wait for one answer before asking again.
        retries: times a request is sent again; the round's deadline ends
            the waiting in any case.

    Raises:
        ValueError: a setting out of range, or one the version does not use.
    """

    community: str | None = field(default=None, repr=False)
    port: int = 161
    version: SnmpVersion = "2c"
    address: str | None = None
    user: str | None = None
    auth_key: str | None = field(default=None, repr=False)
    priv_key: str | None = field(default=None, repr=False)
    auth_protocol: str = "SHA"
    priv_protocol: str = "AES"
    timeout: float = 1.0
    retries: int = 1

    def __post_init__(self) -> None:
        if self.version not in SNMP_VERSIONS:
            raise ValueError(f"SNMP version must be '2c' or '3', not {self.version!r}")
        if isinstance(self.port, bool) or not 1 <= self.port <= 65535:
            raise ValueError(f"SNMP port must be 1-65535, not {self.port!r}")
        if self.version == "3":
            if not self.user:
                raise ValueError("SNMPv3 needs a 'user'")
            if self.priv_key is not None and self.auth_key is None:
                raise ValueError("SNMPv3: a 'priv_key' needs an 'auth_key' too")
            if self.auth_protocol not in SNMP_AUTH_PROTOCOLS:
                raise ValueError(
                    f"SNMPv3 auth_protocol must be one of {', '.join(SNMP_AUTH_PROTOCOLS)}, "
                    f"not {self.auth_protocol!r}"
                )
            if self.priv_protocol not in SNMP_PRIV_PROTOCOLS:
                raise ValueError(
                    f"SNMPv3 priv_protocol must be one of {', '.join(SNMP_PRIV_PROTOCOLS)}, "
                    f"not {self.priv_protocol!r}"
                )
            for key in (self.auth_key, self.priv_key):
                if key is not None and len(key) < 8:
                    raise ValueError("SNMPv3 pass phrases must be at least 8 characters")
        elif not self.community:
            raise ValueError("SNMP v2c needs a 'community'")
        if not self.timeout > 0:
            raise ValueError(
                f"SNMP timeout must be a positive number of seconds, not {self.timeout!r}"
            )
        if isinstance(self.retries, bool) or self.retries < 0:
            raise ValueError(f"SNMP retries must be 0 or more, not {self.retries!r}")

    def as_dict(self) -> dict[str, object]:
        """The settings as the lab field ``snmp`` writes them (secrets included)."""
        given: dict[str, object] = {"port": self.port, "version": self.version}
        for key in ("community", "address", "user", "auth_key", "priv_key"):
            value = getattr(self, key)
            if value is not None:
                given[key] = value
        if self.version == "3":
            given["auth_protocol"] = self.auth_protocol
            given["priv_protocol"] = self.priv_protocol
        given["timeout"] = self.timeout
        given["retries"] = self.retries
        return given

    @property
    def security(self) -> str:
        """What the requests carry, for messages: ``v2c``, ``v3 user 'mon' authPriv``."""
        if self.version != "3":
            return f"v{self.version}"
        level = "noAuthNoPriv"
        if self.auth_key is not None:
            level = "authPriv" if self.priv_key is not None else "authNoPriv"
        return f"v3 user {self.user!r} {level}"
