"""The lab field ``power``: checked with every problem named (nothing imported from
``otto.hosts``: reading a lab stays cheap), and turned into a driver for the host.

Forms (see the lab schema): commands ``{"on": CMD, "off": CMD, "cycle": CMD,
"status": CMD, "on_pattern": RE, "off_pattern": RE, "via": HOST}``;
``{"driver": "snmp", "address": ..., "outlet": N, "community": ... | "v3":
{"user", "auth_key", "priv_key", "auth_protocol", "priv_protocol"}, "oids":
"apc" | "raritan", "port": 161, "timeout": S, "retries": N}``; ``{"driver":
"http", "on": {"method", "url", "body", "headers", "expect", "verify"},
"off": {...}, "cycle": {...}, "status": {..., "on_pattern", "off_pattern"}}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from otto.transports.snmp import SnmpSettings

if TYPE_CHECKING:
    from otto.hosts.power import PowerAction, PowerDriver

__all__ = [
    "COMMAND_KEYS",
    "DRIVERS",
    "HTTP_REQUEST_KEYS",
    "SNMP_KEYS",
    "check_power",
    "driver_from",
]

OIDS = ("apc", "raritan")

DRIVERS = ("command", "snmp", "http")
COMMAND_KEYS = ("on", "off", "cycle", "status", "on_pattern", "off_pattern", "via")
SNMP_KEYS = ("address", "port", "outlet", "community", "v3", "oids", "timeout", "retries")
SNMP_V3_KEYS = ("user", "auth_key", "priv_key", "auth_protocol", "priv_protocol")
HTTP_KEYS = ("on", "off", "cycle", "status")
HTTP_REQUEST_KEYS = (
    "method",
    "url",
    "body",
    "headers",
    "expect",
    "verify",
    "on_pattern",
    "off_pattern",
)


def _regex(where: str, value: object) -> None:
    if value is None:
        return
    try:
        re.compile(cast(str, value))
    except (re.error, TypeError) as exc:
        raise ValueError(f"{where}: not a valid regex: {exc}") from exc


def _only(given: Mapping[str, object], allowed: tuple[str, ...], what: str) -> None:
    extra = [k for k in given if k not in allowed and k != "driver"]
    if extra:
        raise ValueError(
            f"{', '.join(repr(k) for k in extra)} not used by {what} "
            f"(it takes {', '.join(repr(k) for k in allowed)})"
        )


def check_power(given: Mapping[str, object]) -> None:
    """Raise ``ValueError`` naming what is wrong with a lab ``power`` value."""
    driver = given.get("driver", "command")
    if driver not in DRIVERS:
        raise ValueError(f"'driver' must be one of {', '.join(DRIVERS)}, not {driver!r}")
    if driver == "command":
        _only(given, COMMAND_KEYS, "the command form")
        bad = [k for k in ("on", "off", "cycle", "status") if not isinstance(given.get(k, ""), str)]
        if bad:
            raise ValueError(
                f"{', '.join(repr(k) for k in bad)}: a command is a string "
                '(a request object needs "driver": "http")'
            )
        if not any(k in given for k in ("on", "off", "cycle", "status")):
            raise ValueError("needs at least one of 'on', 'off', 'cycle', 'status'")
        for key in ("on_pattern", "off_pattern"):
            _regex(repr(key), given.get(key))
    elif driver == "snmp":
        _snmp(given)
    else:
        _http(given)


def driver_from(given: Mapping[str, object]) -> PowerDriver | None:
    """The driver of a lab ``power`` value; None for the command form (``PowerSpec``'s own).

    Raises:
        ValueError: as ``check_power``.
    """
    check_power(given)
    driver = given.get("driver", "command")
    if driver == "snmp":
        from otto.hosts.power.snmp import SnmpOutlet

        return SnmpOutlet(*_snmp(given))
    if driver == "http":
        from otto.hosts.power.http import HttpPower, HttpRequest

        return HttpPower(
            {
                cast("PowerAction", action): HttpRequest(**kwargs)
                for action, kwargs in _http(given).items()
            }
        )
    return None


def _snmp(given: Mapping[str, object]) -> tuple[SnmpSettings, int, str]:
    """The agent's settings, the outlet and the OID set of an SNMP ``power`` value."""
    _only(given, SNMP_KEYS, "driver 'snmp'")
    if "outlet" not in given or "address" not in given:
        raise ValueError("driver 'snmp' needs 'address' and 'outlet'")
    if ("community" in given) == ("v3" in given):
        raise ValueError("driver 'snmp' needs one of 'community' (v2c) or 'v3' (a user and keys)")
    outlet = given["outlet"]
    if isinstance(outlet, bool) or not isinstance(outlet, int) or outlet < 1:
        raise ValueError(f"'outlet' must be an outlet number from 1, not {outlet!r}")
    oids = given.get("oids", "apc")
    if oids not in OIDS:
        raise ValueError(f"'oids' must be one of {', '.join(OIDS)}, not {oids!r}")
    settings: dict[str, Any] = {"address": given["address"]}
    for key in ("port", "timeout", "retries", "community"):
        if key in given:
            settings[key] = given[key]
    v3 = given.get("v3")
    if v3 is not None:
        if not isinstance(v3, dict):
            raise ValueError("'v3' must be an object of " + ", ".join(SNMP_V3_KEYS))
        _only(v3, SNMP_V3_KEYS, "'v3'")
        settings.update(v3, version="3")
    try:
        made = SnmpSettings(**settings)
    except TypeError as exc:
        raise ValueError(str(exc)) from exc
    return made, outlet, oids


def _http(given: Mapping[str, object]) -> dict[str, dict[str, Any]]:
    """Each action's ``HttpRequest`` arguments of an HTTP ``power`` value."""
    _only(given, HTTP_KEYS, "driver 'http'")
    requests: dict[str, dict[str, Any]] = {}
    for action in HTTP_KEYS:
        template = given.get(action)
        if template is None:
            continue
        if not isinstance(template, dict):
            raise ValueError(f"{action!r}: must be a request object with 'url', 'method', ...")
        _only(template, HTTP_REQUEST_KEYS, f"{action!r}")
        url = template.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"{action!r}: needs an http(s):// 'url'")
        for key in ("on_pattern", "off_pattern"):
            if key in template and action != "status":
                raise ValueError(f"{action!r}: {key!r} is for 'status' only")
            _regex(f"{action!r}: {key!r}", template.get(key))
        expect = template.get("expect", [])
        codes = tuple(expect) if isinstance(expect, list) else (expect,)
        for code in codes:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(f"{action!r}: 'expect' must be HTTP status codes, not {code!r}")
        headers = template.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError(f"{action!r}: 'headers' must be an object of strings")
        requests[action] = {
            "url": url,
            "method": template.get("method", "GET" if action == "status" else "POST"),
            "body": template.get("body"),
            "headers": headers,
            "expect": codes,
            "verify": bool(template.get("verify", True)),
            "on_pattern": template.get("on_pattern"),
            "off_pattern": template.get("off_pattern"),
        }
    if not requests:
        raise ValueError("driver 'http' needs at least one of 'on', 'off', 'cycle', 'status'")
    return requests
