"""Talking to an SNMP agent (pysnmp): ``SnmpClient``, with GET, GETBULK walks and SET.

The monitor's ``SnmpProbe`` reads metrics with it and the power driver
switches a PDU's outlet with it. pysnmp is imported when a client first
opens, never when this module is.

Clients on one event loop share a pysnmp engine (one UDP socket) per set of
credentials: every v2c client shares one, and v3 clients share one only when
their user, keys and protocols are all the same. (An engine's USM table holds
one entry per user name: two devices with one user name and different keys on
one engine would replace each other's keys every request.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from otto.transports.snmp import SnmpSettings

__all__ = ["Oid", "SnmpClient", "SnmpFailure", "SnmpValue", "convert"]

logger = logging.getLogger("otto.transports.snmp")

Oid = tuple[int, ...]
SnmpValue = int | str | None
"""A value as otto keeps it: a number, a string, or None (no such object)."""

_MAX_WALK_REQUESTS = 64
_REPETITIONS = 24
_FIRST_BATCH = 200  # objects per GET until an agent says tooBig
_MIN_BATCH = 8
_TOO_BIG = 1  # error-status tooBig


class SnmpFailure(Exception):
    """A request that got no usable answer; the message is for the user."""


class _TooBig(SnmpFailure):
    """The agent's answer would not fit in one of its messages."""


def convert(value: object) -> SnmpValue:
    """A pysnmp value as a number, a string or None (noSuchObject, endOfMibView, ...)."""
    from pyasn1.type import univ  # type: ignore[import-untyped]

    if isinstance(value, univ.Null):
        return None
    if isinstance(value, univ.Integer):
        return int(value)
    if isinstance(value, univ.OctetString):
        return bytes(value.asOctets()).decode("utf-8", "replace").rstrip("\x00")
    if isinstance(value, univ.ObjectIdentifier):
        return ".".join(str(part) for part in value)
    return None


# --- one engine per event loop and set of credentials, shared ---------------------------------


def _engine_key(settings: SnmpSettings) -> tuple[str | None, ...]:
    """What clients must have in common to share an engine: all v2c, or the same v3 user."""
    if settings.version != "3":
        return ("2c",)
    return (
        "3",
        settings.user,
        settings.auth_protocol if settings.auth_key is not None else None,
        settings.auth_key,
        settings.priv_protocol if settings.priv_key is not None else None,
        settings.priv_key,
    )


class _Engine:
    """A pysnmp engine shared by the SNMP clients of one event loop with the same credentials.

    Closed with the last client that uses it.
    """

    _shared: ClassVar[dict[tuple[asyncio.AbstractEventLoop, tuple[str | None, ...]], _Engine]] = {}

    def __init__(self) -> None:
        from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

        self.engine: Any = SnmpEngine()
        self.users = 0
        self.received: dict[tuple[str, int], int] = {}
        self.engine.observer.register_observer(
            self._count, "rfc3412.receiveMessage:response", cbCtx=None
        )

    def _count(self, engine: object, point: str, variables: Mapping[str, Any], ctx: object) -> None:
        address = variables.get("transportAddress")
        message = variables.get("wholeMsg")
        if address is not None and message is not None:
            key = (str(address[0]), int(address[1]))
            self.received[key] = self.received.get(key, 0) + len(message)

    @classmethod
    def acquire(cls, settings: SnmpSettings) -> _Engine:
        key = (asyncio.get_running_loop(), _engine_key(settings))
        shared = cls._shared.get(key)
        if shared is None:
            shared = cls._shared[key] = _Engine()
        shared.users += 1
        return shared

    def release(self) -> None:
        self.users -= 1
        if self.users > 0:
            return
        for key, engine in list(self._shared.items()):
            if engine is self:
                del self._shared[key]
        try:
            self.engine.close_dispatcher()
        except Exception:  # closing what never opened a socket
            logger.debug("closing the SNMP engine failed", exc_info=True)


# --- the client -------------------------------------------------------------------------------


class SnmpClient:
    """Requests to one agent: ``settings.address`` (or ``address``) at ``settings.port``.

    ``open()`` takes the engine shared by this event loop's clients with the
    same credentials and resolves the address; ``close()`` lets go of the
    engine (closed with its last client). A request that gets no answer
    within ``settings.timeout`` (asked ``settings.retries`` more times)
    raises ``TimeoutError``; one the agent refuses, ``SnmpFailure``.

    Args:
        settings: where the agent is and the credentials.
        address: the agent's address when ``settings.address`` is None.

    Raises:
        ValueError: no address.
    """

    def __init__(self, settings: SnmpSettings, address: str | None = None) -> None:
        target = settings.address or address
        if not target:
            raise ValueError("SNMP needs the agent's address (snmp.address)")
        self.settings = settings
        self.address = target
        self._engine: _Engine | None = None
        self._target: Any = None
        self._auth: Any = None
        self._context: Any = None
        self._objects: dict[Oid, Any] = {}
        self._batch = _FIRST_BATCH

    def __repr__(self) -> str:
        return f"SnmpClient({self.settings.security} at udp:{self.address}:{self.settings.port})"

    def acquire(self) -> None:
        """Take the shared engine now (``open()`` does it too), so that ``received`` counts."""
        if self._engine is None:
            self._engine = _Engine.acquire(self.settings)

    @property
    def received(self) -> int:
        """Bytes of answers from this agent on the shared engine so far (0 before ``acquire``)."""
        if self._engine is None:
            return 0
        return self._engine.received.get(self._peer, 0)

    @property
    def _peer(self) -> tuple[str, int]:
        # Answers are counted by the address they came from: the resolved one.
        if self._target is not None:
            resolved = self._target.transport_address
            return (str(resolved[0]), int(resolved[1]))
        return (self.address, self.settings.port)

    async def open(self) -> None:
        """Take the shared engine and resolve the agent's address (once)."""
        self.acquire()
        if self._target is None:
            from pysnmp.hlapi.v3arch.asyncio import ContextData, UdpTransportTarget

            self._auth = self._credentials()
            self._context = ContextData()
            self._target = await UdpTransportTarget.create(
                (self.address, self.settings.port),
                timeout=self.settings.timeout,
                retries=self.settings.retries,
            )

    def _credentials(self) -> Any:
        import pysnmp.hlapi.v3arch.asyncio as hlapi

        s = self.settings
        if s.version != "3":
            return hlapi.CommunityData(s.community, mpModel=1)
        auth = {
            "MD5": hlapi.usmHMACMD5AuthProtocol,
            "SHA": hlapi.usmHMACSHAAuthProtocol,
            "SHA224": hlapi.usmHMAC128SHA224AuthProtocol,
            "SHA256": hlapi.usmHMAC192SHA256AuthProtocol,
            "SHA384": hlapi.usmHMAC256SHA384AuthProtocol,
            "SHA512": hlapi.usmHMAC384SHA512AuthProtocol,
        }[s.auth_protocol]
        priv = {
            "DES": hlapi.usmDESPrivProtocol,
            "3DES": hlapi.usm3DESEDEPrivProtocol,
            "AES": hlapi.usmAesCfb128Protocol,
            "AES192": hlapi.usmAesCfb192Protocol,
            "AES256": hlapi.usmAesCfb256Protocol,
        }[s.priv_protocol]
        return hlapi.UsmUserData(
            s.user,
            authKey=s.auth_key,
            privKey=s.priv_key,
            authProtocol=auth if s.auth_key is not None else hlapi.usmNoAuthProtocol,
            privProtocol=priv if s.priv_key is not None else hlapi.usmNoPrivProtocol,
        )

    def _object(self, oid: Oid) -> Any:
        # Built and resolved once: pysnmp resolves an ObjectType only the first time.
        made = self._objects.get(oid)
        if made is None:
            from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType

            made = self._objects[oid] = ObjectType(ObjectIdentity(oid))
        return made

    async def _call(self, request: Callable[..., Any], *args: Any) -> list[tuple[Oid, Any]]:
        if self._engine is None or self._target is None:
            raise RuntimeError("SnmpClient: open() it before a request")
        indication, status, where, varbinds = await request(
            self._engine.engine, self._auth, self._target, self._context, *args, lookupMib=False
        )
        if indication:
            if type(indication).__name__ == "RequestTimedOut":
                raise TimeoutError
            raise SnmpFailure(f"{indication}")
        if status:
            at = ""
            if where and int(where) <= len(varbinds):
                at = " at " + ".".join(map(str, varbinds[int(where) - 1][0]))
            kind = _TooBig if int(status) == _TOO_BIG else SnmpFailure
            raise kind(f"the agent answered {status.prettyPrint()}{at}")
        return [(tuple(vb[0]), vb[1]) for vb in varbinds]

    async def get(self, oids: Sequence[Oid]) -> dict[Oid, SnmpValue]:
        """The values of ``oids``: as few GETs as the agent's message size allows.

        An agent that answers tooBig is asked for half as many objects at once
        (remembered for the next calls).
        """
        from pysnmp.hlapi.v3arch.asyncio import get_cmd

        values: dict[Oid, SnmpValue] = {}
        start = 0
        while start < len(oids):
            batch = oids[start : start + self._batch]
            try:
                got = await self._call(get_cmd, *(self._object(o) for o in batch))
            except _TooBig:
                if self._batch <= _MIN_BATCH:
                    raise
                # The answer would not fit the agent's largest message: ask for less.
                self._batch = max(_MIN_BATCH, self._batch // 2)
                continue
            values.update((oid, convert(value)) for oid, value in got)
            start += len(batch)
        return values

    async def walk(self, columns: Sequence[Oid]) -> dict[Oid, dict[Oid, SnmpValue]]:
        """Every row of ``columns`` (``{column: {index: value}}``), walked side by side with
        GETBULK."""
        from pysnmp.hlapi.v3arch.asyncio import ObjectIdentity, ObjectType, bulk_cmd

        tables: dict[Oid, dict[Oid, SnmpValue]] = {c: {} for c in columns}
        cursor: dict[Oid, Oid] = {c: c for c in columns}
        for _ in range(_MAX_WALK_REQUESTS):
            if not cursor:
                break
            asked = list(cursor)
            got = await self._call(
                bulk_cmd,
                0,
                _REPETITIONS,
                *(ObjectType(ObjectIdentity(cursor[c])) for c in asked),
            )
            done: set[Oid] = set()
            moved: set[Oid] = set()
            for position, (oid, raw) in enumerate(got):
                column = asked[position % len(asked)]
                if column in done:
                    continue
                value = convert(raw)
                # Past the column's end, endOfMibView, or an agent going backwards.
                if oid[: len(column)] != column or oid <= cursor[column] or value is None:
                    done.add(column)
                    continue
                tables[column][oid[len(column) :]] = value
                cursor[column] = oid
                moved.add(column)
            for column in asked:
                if column in done or column not in moved:
                    del cursor[column]
        return tables

    async def set(self, oid: Oid, value: int) -> SnmpValue:
        """SET ``oid`` to the INTEGER ``value``; the value the agent answered with."""
        from pysnmp.hlapi.v3arch.asyncio import Integer32, ObjectIdentity, ObjectType, set_cmd

        answer = await self._call(set_cmd, ObjectType(ObjectIdentity(oid), Integer32(value)))
        return convert(answer[0][1]) if answer else None

    async def close(self) -> None:
        """Let go of the shared engine (closed with its last client)."""
        engine, self._engine = self._engine, None
        self._target = None
        if engine is not None:
            engine.release()
