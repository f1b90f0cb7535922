"""The lab field ``power`` turned into a driver, with every problem named.

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
from typing import Any, cast

from otto.hosts.power.base import PowerAction, PowerDriver

__all__ = ["COMMAND_KEYS", "DRIVERS", "HTTP_REQUEST_KEYS", "SNMP_KEYS", "driver_from"]

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


def driver_from(given: Mapping[str, object]) -> PowerDriver | None:
    """The driver of a lab ``power`` value; None for the command form (``PowerSpec``'s own).

    Raises:
        ValueError: a key the form does not use, a missing or bad value.
    """
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
        return None
    if driver == "snmp":
        return _snmp(given)
    return _http(given)


def _snmp(given: Mapping[str, object]) -> PowerDriver:
    from otto.hosts.power.snmp import SnmpOutlet
    from otto.transports.snmp import SnmpSettings

    _only(given, SNMP_KEYS, "driver 'snmp'")
    if "outlet" not in given or "address" not in given:
        raise ValueError("driver 'snmp' needs 'address' and 'outlet'")
    if ("community" in given) == ("v3" in given):
        raise ValueError("driver 'snmp' needs one of 'community' (v2c) or 'v3' (a user and keys)")
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
    return SnmpOutlet(made, cast(int, given["outlet"]), cast(str, given.get("oids", "apc")))


def _http(given: Mapping[str, object]) -> PowerDriver:
    from otto.hosts.power.http import HttpPower, HttpRequest

    _only(given, HTTP_KEYS, "driver 'http'")
    requests: dict[PowerAction, HttpRequest] = {}
    for action in HTTP_KEYS:
        template = given.get(action)
        if template is None:
            continue
        if not isinstance(template, dict):
            raise ValueError(f"{action!r}: must be a request object with 'url', 'method', ...")
        _only(template, HTTP_REQUEST_KEYS, f"{action!r}")
        if "url" not in template:
            raise ValueError(f"{action!r}: needs 'url'")
        for key in ("on_pattern", "off_pattern"):
            if key in template and action != "status":
                raise ValueError(f"{action!r}: {key!r} is for 'status' only")
            _regex(f"{action!r}: {key!r}", template.get(key))
        expect = template.get("expect", ())
        codes = tuple(cast(list[int], expect)) if isinstance(expect, list) else (expect,)
        headers = template.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise ValueError(f"{action!r}: 'headers' must be an object of strings")
        requests[cast(PowerAction, action)] = HttpRequest(
            url=cast(str, template["url"]),
            method=cast(str, template.get("method", "GET" if action == "status" else "POST")),
            body=cast("str | None", template.get("body")),
            headers=cast(dict[str, str], headers),
            expect=cast(tuple[int, ...], codes if expect != () else ()),
            verify=bool(template.get("verify", True)),
            on_pattern=cast("str | None", template.get("on_pattern")),
            off_pattern=cast("str | None", template.get("off_pattern")),
        )
    if not requests:
        raise ValueError("driver 'http' needs at least one of 'on', 'off', 'cycle', 'status'")
    return HttpPower(requests)
