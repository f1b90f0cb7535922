"""Reading a device's metrics from its SNMP agent (pysnmp): the ``SnmpProbe``.

The metrics have the names the shell parsers give (``otto.monitor.parsers``),
read from the standard MIBs by numeric OID (no MIB is loaded):

- ``cpu.percent``: the busy share between two rounds from UCD-SNMP-MIB's raw
  CPU counters (``ssCpuRaw*``, as ``/proc/stat`` is read); an agent without
  them gives the mean of HOST-RESOURCES-MIB ``hrProcessorLoad`` instead.
  ``cpu.percent[cpuN]``: ``hrProcessorLoad`` of each processor (a one-minute
  average; net-snmp has none in its first minute).
- ``mem.*`` and ``swap.*``: ``hrStorageTable`` (RAM, net-snmp's "Available
  memory", buffers and cache, swap), in bytes; used memory is total less
  available, as from ``/proc/meminfo``.
- ``disk.used_percent[mount]`` and ``disk.used_percent`` (``/``): the disks of
  ``hrStorageTable`` (used / size: unlike ``df``, blocks reserved for root count
  as free).
- ``load.1m``, ``load.5m``, ``load.15m``: UCD-SNMP-MIB ``laLoad``.
- ``net.rx_bytes_per_s[if]``, ``net.tx_bytes_per_s[if]`` and their totals
  (loopbacks left out): IF-MIB ``ifHCInOctets``/``ifHCOutOctets``, or the
  32-bit ``ifInOctets``/``ifOutOctets`` where the 64-bit ones are missing.
- ``disk.read_bytes_per_s[disk]``, ``disk.write_bytes_per_s[disk]`` and totals:
  UCD-DISKIO-MIB, whole disks only.

Round trips: the first round walks the tables (GETBULK over every column at
once) to learn their indexes; every round then reads everything it needs in ONE
GET. The tables are walked again every ``refresh`` rounds, and at once when
an index has gone. A 32-bit counter that went down by a little is a wrap; one
that went down by more, a 64-bit one that went down, or an agent whose
``sysUpTime`` went back (it restarted) gives no rate that round
(``parsers.counter_delta``), never a negative or huge one.

The requests go through ``otto.transports.snmp_client.SnmpClient``: probes
on one event loop share a pysnmp engine (one UDP socket) per set of
credentials (all v2c probes one, v3 probes only with the same user and keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from otto.monitor.parsers import counter_delta, is_whole_disk
from otto.monitor.probe import HostRound, RoundCost
from otto.periodic import Clock
from otto.transports.snmp import SnmpSettings
from otto.transports.snmp_client import Oid, SnmpClient, SnmpFailure, SnmpValue

__all__ = ["SnmpPlan", "SnmpProbe", "SnmpValue", "plan_from_tables", "read_metrics"]

logger = logging.getLogger("otto.monitor")


def _oid(text: str) -> Oid:
    return tuple(int(part) for part in text.split("."))


# --- the OIDs ---------------------------------------------------------------------------

SYS_UPTIME = _oid("1.3.6.1.2.1.1.3.0")
LA_LOAD = _oid("1.3.6.1.4.1.2021.10.1.3")  # .1 .2 .3: 1, 5, 15 minutes (strings)
SS_CPU_RAW = {
    "user": _oid("1.3.6.1.4.1.2021.11.50.0"),
    "nice": _oid("1.3.6.1.4.1.2021.11.51.0"),
    "system": _oid("1.3.6.1.4.1.2021.11.52.0"),  # on Linux it holds irq and softirq too
    "idle": _oid("1.3.6.1.4.1.2021.11.53.0"),
    "wait": _oid("1.3.6.1.4.1.2021.11.54.0"),
    "steal": _oid("1.3.6.1.4.1.2021.11.64.0"),
}
HR_PROCESSOR_LOAD = _oid("1.3.6.1.2.1.25.3.3.1.2")
HR_STORAGE = _oid("1.3.6.1.2.1.25.2.3.1")
HR_STORAGE_TYPE = (*HR_STORAGE, 2)
HR_STORAGE_DESCR = (*HR_STORAGE, 3)
HR_STORAGE_UNITS = (*HR_STORAGE, 4)
HR_STORAGE_SIZE = (*HR_STORAGE, 5)
HR_STORAGE_USED = (*HR_STORAGE, 6)
HR_STORAGE_TYPES = _oid("1.3.6.1.2.1.25.2.1")
IF_DESCR = _oid("1.3.6.1.2.1.2.2.1.2")
IF_TYPE = _oid("1.3.6.1.2.1.2.2.1.3")
IF_IN_OCTETS = _oid("1.3.6.1.2.1.2.2.1.10")
IF_OUT_OCTETS = _oid("1.3.6.1.2.1.2.2.1.16")
IF_NAME = _oid("1.3.6.1.2.1.31.1.1.1.1")
IF_HC_IN_OCTETS = _oid("1.3.6.1.2.1.31.1.1.1.6")
IF_HC_OUT_OCTETS = _oid("1.3.6.1.2.1.31.1.1.1.10")
DISK_IO_DEVICE = _oid("1.3.6.1.4.1.2021.13.15.1.1.2")
DISK_IO_READ = _oid("1.3.6.1.4.1.2021.13.15.1.1.12")  # diskIONReadX (64-bit)
DISK_IO_WRITTEN = _oid("1.3.6.1.4.1.2021.13.15.1.1.13")  # diskIONWrittenX

IF_TYPE_LOOPBACK = 24  # softwareLoopback
_STORAGE_RAM = 2
_STORAGE_VIRTUAL = 3
_STORAGE_OTHER = 1
_STORAGE_DISKS = (4, 5, 9, 10)  # fixed, removable, flash memory, network disk

WALKED_COLUMNS: tuple[Oid, ...] = (
    HR_PROCESSOR_LOAD,
    HR_STORAGE_TYPE,
    HR_STORAGE_DESCR,
    HR_STORAGE_UNITS,
    IF_TYPE,
    IF_DESCR,
    IF_NAME,
    IF_HC_IN_OCTETS,
    DISK_IO_DEVICE,
)
"""The columns the discovery walk reads: what says which rows exist and what they are."""

_REWALK_AFTER = 10  # rounds between walks at least, when rows keep going missing


# --- the plan: which rows exist, and what one round reads ---------------------------------


@dataclass(frozen=True, slots=True)
class _Storage:
    index: int
    kind: str  # ram, available, buffers, cached, swap, disk
    name: str
    units: int


@dataclass(frozen=True, slots=True)
class _Interface:
    index: int
    name: str
    loopback: bool
    wide: bool  # 64-bit (ifHC*) counters


@dataclass(frozen=True, slots=True)
class SnmpPlan:
    """What an agent has, learnt from a walk: the rows each round reads.

    ``scalars`` are the single objects still worth asking for (the ones the
    agent answered ``noSuchObject`` to are dropped after the first GET).
    """

    processors: tuple[int, ...] = ()
    storages: tuple[_Storage, ...] = ()
    interfaces: tuple[_Interface, ...] = ()
    disks: tuple[tuple[int, str], ...] = ()
    scalars: tuple[Oid, ...] = field(
        default=(SYS_UPTIME, *((*LA_LOAD, i) for i in (1, 2, 3)), *SS_CPU_RAW.values())
    )

    def oids(self) -> list[Oid]:
        """Every OID one round reads, in one GET."""
        oids = list(self.scalars)
        oids += [(*HR_PROCESSOR_LOAD, i) for i in self.processors]
        for s in self.storages:
            oids += [(*HR_STORAGE_SIZE, s.index), (*HR_STORAGE_USED, s.index)]
        for i in self.interfaces:
            if i.wide:
                oids += [(*IF_HC_IN_OCTETS, i.index), (*IF_HC_OUT_OCTETS, i.index)]
            else:
                oids += [(*IF_IN_OCTETS, i.index), (*IF_OUT_OCTETS, i.index)]
        for index, _ in self.disks:
            oids += [(*DISK_IO_READ, index), (*DISK_IO_WRITTEN, index)]
        return oids

    def without_scalars(self, missing: Iterable[Oid]) -> SnmpPlan:
        """The plan without the scalars the agent does not have."""
        gone = set(missing)
        return replace(self, scalars=tuple(o for o in self.scalars if o not in gone))


def _storage_kind(type_oid: SnmpValue, descr: str) -> str | None:
    if not isinstance(type_oid, str):
        return None
    prefix = ".".join(map(str, HR_STORAGE_TYPES)) + "."
    kind = type_oid.removeprefix(prefix)
    if not kind.isdigit():
        return None
    number = int(kind)
    if number == _STORAGE_RAM:
        return "ram"
    if number == _STORAGE_VIRTUAL and "swap" in descr.lower():
        return "swap"
    if number == _STORAGE_OTHER:
        # net-snmp's extra memory rows, told apart by their description only.
        return {
            "available memory": "available",
            "memory buffers": "buffers",
            "cached memory": "cached",
        }.get(descr.lower())
    if number in _STORAGE_DISKS:
        return "disk"
    return None


def plan_from_tables(columns: Mapping[Oid, Mapping[Oid, SnmpValue]]) -> SnmpPlan:
    """The plan for an agent whose walked columns (``{column: {index: value}}``) are these."""

    def column(oid: Oid) -> Mapping[Oid, SnmpValue]:
        return columns.get(oid, {})

    processors = tuple(sorted(i[0] for i in column(HR_PROCESSOR_LOAD) if len(i) == 1))
    storages: list[_Storage] = []
    descrs = column(HR_STORAGE_DESCR)
    units = column(HR_STORAGE_UNITS)
    for index, type_oid in sorted(column(HR_STORAGE_TYPE).items()):
        descr = descrs.get(index)
        unit = units.get(index)
        if len(index) != 1 or not isinstance(descr, str) or not isinstance(unit, int):
            continue
        kind = _storage_kind(type_oid, descr)
        if kind is not None and unit > 0:
            storages.append(_Storage(index[0], kind, descr, unit))
    interfaces: list[_Interface] = []
    names = column(IF_NAME)
    wide = column(IF_HC_IN_OCTETS)
    types = column(IF_TYPE)
    seen: set[str] = set()
    for index, descr in sorted(column(IF_DESCR).items()):
        if len(index) != 1:
            continue
        name = names.get(index)
        label = name if isinstance(name, str) and name else str(descr or index[0])
        if label in seen:
            label = f"{label}#{index[0]}"
        seen.add(label)
        loopback = types.get(index) == IF_TYPE_LOOPBACK
        interfaces.append(_Interface(index[0], label, loopback, isinstance(wide.get(index), int)))
    disks = tuple(
        (index[0], name)
        for index, name in sorted(column(DISK_IO_DEVICE).items())
        if len(index) == 1 and isinstance(name, str) and is_whole_disk(name)
    )
    return SnmpPlan(tuple(processors), tuple(storages), tuple(interfaces), disks)


# --- one round's values -> metrics (pure) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Sample:
    """Counters of one round: ``{key: (value, 64-bit)}``, when and the agent's uptime."""

    t: float
    uptime: int | None
    counters: Mapping[str, tuple[int, bool]]


def _grew(now: int, was: int, wide: bool) -> int | None:
    if now >= was:
        return now - was
    if wide:
        return None  # a 64-bit counter does not wrap in practice: it was reset
    return counter_delta(now, was)


def read_metrics(
    plan: SnmpPlan,
    values: Mapping[Oid, SnmpValue],
    t: float,
    previous: _Sample | None,
) -> tuple[dict[str, float], _Sample]:
    """The metrics in one GET's ``values`` taken at monotonic ``t``, and this round's sample.

    ``previous`` is the sample of the round before (None: no rates yet).
    """
    metrics: dict[str, float] = {}
    counters: dict[str, tuple[int, bool]] = {}
    uptime = values.get(SYS_UPTIME)
    uptime = uptime if isinstance(uptime, int) else None
    before: Mapping[str, tuple[int, bool]] = {}
    dt = 0.0
    if previous is not None and t > previous.t:
        restarted = uptime is not None and previous.uptime is not None and uptime < previous.uptime
        if not restarted:
            before, dt = previous.counters, t - previous.t

    def delta(key: str, oid: Oid, wide: bool) -> int | None:
        value = values.get(oid)
        if not isinstance(value, int):
            return None
        counters[key] = (value, wide)
        was = before.get(key)
        if was is None or was[1] != wide:
            return None
        return _grew(value, was[0], wide)

    # CPU: the busy share of the raw tick counters, as /proc/stat is read.
    ticks = {name: delta("cpu:" + name, oid, False) for name, oid in SS_CPU_RAW.items()}
    core = ("user", "nice", "system", "idle")
    if all(ticks[n] is not None for n in core):
        busy = sum(ticks[n] or 0 for n in ("user", "nice", "system", "steal"))
        total = busy + sum(ticks[n] or 0 for n in ("idle", "wait"))
        if total > 0:
            metrics["cpu.percent"] = 100.0 * busy / total
        else:
            # net-snmp refreshes these every few seconds: an unchanged reading is
            # its cache, so keep the older one for a rate over a longer span.
            for name in SS_CPU_RAW:
                if "cpu:" + name in before:
                    counters["cpu:" + name] = before["cpu:" + name]
    loads = [values.get((*HR_PROCESSOR_LOAD, i)) for i in plan.processors]
    per_cpu = [float(v) for v in loads if isinstance(v, int)]
    for number, value in enumerate(loads):
        if isinstance(value, int):
            metrics[f"cpu.percent[cpu{number}]"] = float(value)
    if (
        "cpu.percent" not in metrics
        and per_cpu
        and not any(isinstance(values.get(o), int) for o in SS_CPU_RAW.values())
    ):
        metrics["cpu.percent"] = sum(per_cpu) / len(per_cpu)

    # Memory and disks.
    amounts: dict[str, tuple[int, int]] = {}
    for s in plan.storages:
        size = values.get((*HR_STORAGE_SIZE, s.index))
        used = values.get((*HR_STORAGE_USED, s.index))
        if not isinstance(size, int) or not isinstance(used, int):
            continue
        size, used = size * s.units, used * s.units
        if s.kind == "disk":
            if size > 0:
                percent = 100.0 * used / size
                metrics[f"disk.used_percent[{s.name}]"] = percent
                if s.name == "/":
                    metrics["disk.used_percent"] = percent
        elif s.kind not in amounts:
            amounts[s.kind] = (size, used)
    if "ram" in amounts:
        total, used = amounts["ram"]
        if "available" in amounts:
            used = total - amounts["available"][0]
        elif "buffers" in amounts and "cached" in amounts:
            used -= amounts["buffers"][1] + amounts["cached"][1]
        used = min(max(used, 0), total)
        metrics["mem.total_bytes"] = float(total)
        metrics["mem.used_bytes"] = float(used)
        metrics["mem.percent"] = 100.0 * used / total if total else 0.0
    if "swap" in amounts:
        total, used = amounts["swap"]
        metrics["swap.total_bytes"] = float(total)
        metrics["swap.used_bytes"] = float(used)
        metrics["swap.percent"] = 100.0 * used / total if total else 0.0

    # Load.
    for minutes, i in (("1m", 1), ("5m", 2), ("15m", 3)):
        text = values.get((*LA_LOAD, i))
        if isinstance(text, str):
            with contextlib.suppress(ValueError):  # an agent's garbage: no load this round
                metrics[f"load.{minutes}"] = float(text)

    # Rates: network, then disk I/O.
    def rates(
        rows: Sequence[tuple[str, Oid, Oid, bool, bool]], rx_name: str, tx_name: str, tag: str
    ) -> None:
        rx_total = tx_total = 0.0
        for name, rx_oid, tx_oid, wide, counted in rows:
            for metric, oid, prefix in ((rx_name, rx_oid, "rx"), (tx_name, tx_oid, "tx")):
                grown = delta(f"{tag}{prefix}:{name}", oid, wide)
                if grown is None or dt <= 0:
                    continue
                rate = grown / dt
                metrics[f"{metric}[{name}]"] = rate
                if counted:
                    if prefix == "rx":
                        rx_total += rate
                    else:
                        tx_total += rate
        if before and rows:
            metrics[rx_name] = rx_total
            metrics[tx_name] = tx_total

    rates(
        [
            (
                i.name,
                (IF_HC_IN_OCTETS if i.wide else IF_IN_OCTETS) + (i.index,),
                (IF_HC_OUT_OCTETS if i.wide else IF_OUT_OCTETS) + (i.index,),
                i.wide,
                not i.loopback,
            )
            for i in plan.interfaces
        ],
        "net.rx_bytes_per_s",
        "net.tx_bytes_per_s",
        "net:",
    )
    rates(
        [
            (name, (*DISK_IO_READ, index), (*DISK_IO_WRITTEN, index), True, True)
            for index, name in plan.disks
        ],
        "disk.read_bytes_per_s",
        "disk.write_bytes_per_s",
        "disk:",
    )
    return metrics, _Sample(t, uptime, counters)


#: ``HostRound.counters`` key of the 64-bit byte counters an SNMP probe read.
SNMP_COUNTERS = "snmp_octets"


def exported_counters(sample: _Sample) -> dict[str, int]:
    """The 64-bit byte counters of ``sample`` as ``/metrics`` exports them.

    Keys are ``rx:IF``/``tx:IF`` (IF-MIB ifHC*Octets) and ``r:DISK``/``w:DISK``
    (UCD-DISKIO); 32-bit counters are left out: they wrap within minutes on a
    busy link, and a wrap would read as a reset to Prometheus.
    """
    out: dict[str, int] = {}
    for key, (value, wide) in sample.counters.items():
        tag, _, rest = key.partition(":")
        if not wide or tag not in ("net", "disk"):
            continue
        direction, _, item = rest.partition(":")
        if tag == "disk":
            direction = {"rx": "r", "tx": "w"}.get(direction, "")
        if direction and item:
            out[f"{direction}:{item}"] = value
    return out


# --- the probe --------------------------------------------------------------------------------


class SnmpProbe:
    """A host read from its SNMP agent: the ``Probe`` of every host with ``snmp`` settings.

    Args:
        name: the host's name (in messages).
        settings: where the agent is and the credentials.
        address: the agent's address when ``settings.address`` is None.
        clock: the collector's clock.
        refresh: rounds between two walks of the tables (new interfaces,
            mounts and disks are seen then).
    """

    def __init__(
        self,
        name: str,
        settings: SnmpSettings,
        *,
        address: str | None = None,
        clock: Clock,
        refresh: int = 60,
    ) -> None:
        target = settings.address or address
        if not target:
            raise ValueError(f"{name}: SNMP needs an address (snmp.address)")
        if refresh < 1:
            raise ValueError(f"refresh must be at least 1 round, got {refresh!r}")
        self.name = name
        self.settings = settings
        self.address = target
        self.refresh = refresh
        self.where = f"SNMP {settings.security} at udp:{target}:{settings.port}"
        self._clock = clock
        self._client = SnmpClient(settings, target)
        self._plan: SnmpPlan | None = None
        self._walked_at = 0
        self._previous: _Sample | None = None

    def __repr__(self) -> str:
        return f"SnmpProbe({self.name!r}, {self.where!r})"

    # --- the round ---------------------------------------------------------------------

    async def poll(self, index: int, deadline: float) -> HostRound:
        """Read the agent: a walk if the tables are unknown (or old), then one GET."""
        clock = self._clock
        budget = deadline - clock.monotonic()
        if budget <= 0:
            return HostRound(False, {}, "no time left in the round")
        sent = clock.monotonic()
        began = asyncio.get_running_loop().time()
        client = self._client
        client.acquire()
        received = client.received
        doing = "GET"
        try:
            async with asyncio.timeout(budget):
                await client.open()
                if self._plan is None or index - self._walked_at >= self.refresh:
                    doing = "GETBULK walk"
                    self._plan = plan_from_tables(await client.walk(WALKED_COLUMNS))
                    self._walked_at = index
                    doing = "GET"
                plan = self._plan
                oids = plan.oids()
                values = await client.get(oids)
        except TimeoutError:
            waited = asyncio.get_running_loop().time() - began
            return HostRound(
                False,
                {},
                f"{self.name}: {self.where}: no answer to {doing} within {waited:.3g}s "
                "(the agent is down or unreachable, or refused the credentials: an "
                "agent ignores a wrong community)",
            )
        except SnmpFailure as exc:
            return HostRound(False, {}, f"{self.name}: {self.where}: {doing}: {exc}")
        except Exception as exc:
            logger.debug("%s: SNMP request failed", self.name, exc_info=True)
            return HostRound(
                False, {}, f"{self.name}: {self.where}: {doing}: {type(exc).__name__}: {exc}"
            )
        answered = clock.monotonic()
        missing = [oid for oid in oids if values.get(oid) is None]
        if missing:
            scalars = set(plan.scalars)
            gone_rows = [oid for oid in missing if oid not in scalars]
            self._plan = plan.without_scalars(missing)
            if gone_rows:
                # A row went away (an interface or a mount): walk again soon, but
                # not every round for a row the agent lists and never answers for.
                walk_at = max(index + 1, self._walked_at + min(self.refresh, _REWALK_AFTER))
                self._walked_at = min(self._walked_at, walk_at - self.refresh)
        metrics, self._previous = read_metrics(plan, values, (sent + answered) / 2, self._previous)
        cost = RoundCost(answered - sent, client.received - received, None)
        if not metrics:
            problem = f"{self.name}: {self.where}: the agent gave none of the metrics"
            return HostRound(False, {}, problem, cost)
        return HostRound(
            True, metrics, "", cost, {SNMP_COUNTERS: exported_counters(self._previous)}
        )

    async def close(self) -> None:
        """Let go of the shared engine (closed with its last client)."""
        await self._client.close()
