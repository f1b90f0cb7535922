"""The lab model: validated host entries (``HostSpec``) and the ``Lab`` that builds hosts.

Validation is the same whatever source a lab comes from; the sources
(``json_source``, ``yaml_source``, ``ssh_config``, ``ansible_source``, chosen
in ``sources``) only read and merge. Every problem is collected
(``check_sources``), for ``Lab.load`` to raise them all at once and for
``otto lab check`` to list them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, cast

from otto.errors import LabError
from otto.lab.raw import HOST_FIELDS, RawHost, where_of
from otto.lab.schema import FIELDS, TERMS, not_used_message, value_problems
from otto.lab.sources import read_source
from otto.transports.snmp import SnmpSettings

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.hosts.power import PowerSpec

__all__ = [
    "DEFAULT_HOST_NAME",
    "KNOWN_HOSTS_DEFAULT",
    "HostSpec",
    "Lab",
    "StrPath",
    "Term",
    "check_sources",
]

log = logging.getLogger("otto.lab")

#: The one host of the lab used when no lab file is given.
DEFAULT_HOST_NAME = "local"

Term = Literal["ssh", "telnet", "local", "console", "serial", "none"]
StrPath: TypeAlias = str | os.PathLike[str]


class _KnownHostsDefault:
    """Marks a host whose lab entry does not mention ``known_hosts``."""

    def __repr__(self) -> str:
        return "DEFAULT"


#: ``HostSpec.known_hosts`` when the lab leaves it to the host's default.
KNOWN_HOSTS_DEFAULT = _KnownHostsDefault()


@dataclass(frozen=True)
class HostSpec:
    """One validated host entry of a lab. ``password`` is left out of the repr."""

    name: str
    term: Term = "ssh"
    address: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    key: Path | None = None
    port: int | None = None
    hop: str | None = None
    tags: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    """What the host offers a test (``usb``, ``wifi``...), for ``@pytest.mark.needs``."""
    known_hosts: Path | _KnownHostsDefault | None = KNOWN_HOSTS_DEFAULT
    connect_timeout: float | None = None
    become_password: str | None = field(default=None, repr=False)
    power: tuple[tuple[str, object], ...] | None = None
    """``(key, value)`` pairs: ``on``, ``off``, ``cycle`` commands, the controller ``via``."""
    console_protocol: Literal["telnet", "raw"] | None = None
    baud: int | None = None
    console_log: Path | None = None
    snmp: SnmpSettings | None = None
    """How to read the host over SNMP (its secrets stay out of the repr)."""
    boot: tuple[tuple[str, str | float], ...] | None = None
    """``(key, value)`` pairs of the lab field ``boot`` (see ``otto.hosts.lifecycle``)."""
    usb: tuple[tuple[str, str], ...] | None = None
    """``(key, value)`` pairs of the lab field ``usb``: a serial line found by its USB
    attributes (see ``otto.transports.serial_identity``)."""
    files: tuple[str, ...] = ()
    """The lab files that define this host, in merge order."""

    @property
    def destination(self) -> str:
        """``user@address:port`` (or ``local``), for listings."""
        if self.term == "local":
            return "local"
        address = self.address
        if address is None and self.usb is not None:
            address = _usb_text(self.usb)
        dest = f"{self.user}@{address}" if self.user else str(address)
        return f"{dest}:{self.port}" if self.port is not None else dest


# --- validation -------------------------------------------------------------------------


def _validate(name: str, raw: RawHost, problems: list[str]) -> HostSpec | None:
    """Check one merged host entry and turn it into a ``HostSpec``.

    Every problem found is added to ``problems`` (file, host, field); the
    entry is None when there was any.
    """
    values = {k: v for k, (v, _) in raw.fields.items() if v is not None or k == "known_hosts"}
    found = len(problems)

    def where(fld: str) -> str:
        file = raw.fields[fld][1] if fld in raw.fields else ", ".join(dict.fromkeys(raw.files))
        return where_of(file, name, fld)

    def got(fld: str, value: object) -> str:
        # A value taken from the environment may be a secret: name the variable instead.
        names = raw.variables.get(fld)
        if names:
            refs = ", ".join(f"${{{n}}}" for n in dict.fromkeys(names))
            return f"(got the value of {refs}, not shown)"
        return f"(got {value!r})"

    def bad(fld: str, message: str, value: object = None, *, show: bool = False) -> None:
        shown = f" {got(fld, value)}" if show and not FIELDS[fld].secret else ""
        problems.append(f"{where(fld)}: {message}{shown}")

    term = values.get("term", "ssh")
    if term not in TERMS:
        bad("term", cast(str, FIELDS["term"].value["_error"]), term, show=True)
        return None
    term = cast(Term, term)
    for fld, value in values.items():
        if term not in FIELDS[fld].terms:
            bad(fld, not_used_message(fld, term))
            continue
        messages = value_problems(fld, value)
        for message in messages:
            bad(fld, message, value, show=len(messages) == 1 and not isinstance(value, dict | list))
    shell = {"user", "password", "key", "port", "hop", "known_hosts", "become_password"}
    if "snmp" in values and "term" not in raw.fields and not shell & set(values):
        # Address and snmp only: a device read over SNMP, taken for an SSH host.
        bad(
            "term",
            "a host with 'snmp' and no shell settings has no shell to log in to: "
            'set "term": "none" (or give \'user\' to reach it over SSH too)',
        )
        return None
    for fld, rule in FIELDS.items():
        if term in rule.required_for and fld not in values:
            if fld == "address" and "usb" in values:
                continue  # a serial line found by its USB attributes
            bad(fld, f"required for term {term!r}")
    if "usb" in values and "address" in values:
        bad("usb", "give 'address' (the device) or 'usb' (its USB attributes), not both")
    if len(problems) > found:
        return None

    def path(fld: str) -> Path | None:
        given = values.get(fld)
        if given is None:
            return None
        found = Path(cast(str, given)).expanduser()
        return found if found.is_absolute() else Path(raw.fields[fld][1]).parent / found

    key = path("key")
    if key is not None and not key.is_file():
        shown = got("key", str(key)).removeprefix("(got ").removesuffix(")")
        bad("key", f"key file {shown} does not exist")
    port: int | None = None
    if "port" in values:
        port = int(cast("int | str", values["port"])) if str(values["port"]).isdigit() else 0
        if not 1 <= port <= 65535:
            bad("port", "must be a port number 1-65535", values["port"], show=True)
    snmp: SnmpSettings | None = None
    if "snmp" in values:
        given = dict(cast(dict[str, object], values["snmp"]))
        if term in ("console", "serial") and "address" not in given:
            bad("snmp", "'address' is required for a console host (its address is the console's)")
        else:
            try:
                snmp = SnmpSettings(**cast(dict[str, Any], given))
            except ValueError as exc:
                bad("snmp", str(exc))
    elif term == "none":
        bad("snmp", "required for term 'none' (a device with no shell is read over SNMP)")
    if isinstance(values.get("power"), dict):
        _check_power_value(raw, cast(dict[str, object], values["power"]), bad)
    boot_given = cast("dict[str, object]", values.get("boot") or {})
    for item in ("bootloader_prompt", "autoboot"):
        regex = boot_given.get(item)
        try:
            re.compile(regex if isinstance(regex, str) else "")
        except re.error as exc:
            bad("boot", f"{item!r} is not a valid regex: {exc}")
    if len(problems) > found:
        return None

    known_hosts: Path | _KnownHostsDefault | None = KNOWN_HOSTS_DEFAULT
    if "known_hosts" in values:
        known_hosts = path("known_hosts")
    timeout = values.get("connect_timeout")
    power = values.get("power")
    boot = cast("dict[str, str | float] | None", values.get("boot"))
    return HostSpec(
        name=name,
        term=term,
        address=cast("str | None", values.get("address")),
        user=cast("str | None", values.get("user")),
        password=cast("str | None", values.get("password")),
        key=key,
        port=port,
        hop=cast("str | None", values.get("hop")),
        tags=tuple(cast(list[str], values.get("tags", []))),
        features=tuple(dict.fromkeys(cast(list[str], values.get("features", [])))),
        known_hosts=known_hosts,
        connect_timeout=float(cast(float, timeout)) if timeout is not None else None,
        become_password=cast("str | None", values.get("become_password")),
        power=tuple(sorted(cast(dict[str, object], power).items())) if power else None,
        console_protocol=cast('Literal["telnet", "raw"] | None', values.get("console_protocol")),
        baud=cast("int | None", values.get("baud")),
        console_log=path("console_log"),
        snmp=snmp,
        boot=tuple(sorted(boot.items())) if boot else None,
        usb=_usb_pairs(values.get("usb")),
        files=tuple(dict.fromkeys(raw.files)),
    )


def _usb_text(usb: tuple[tuple[str, str], ...]) -> str:
    """``usb serial=A1 vendor=0403``: a serial line's USB attributes, for listings."""
    return " ".join(["usb", *(f"{k}={v}" for k, v in usb)])


def _usb_pairs(given: object) -> tuple[tuple[str, str], ...] | None:
    """The lab field ``usb`` (checked), its ids as four hex digits, in the fields' order."""
    if not isinstance(given, dict):
        return None
    from otto.transports.serial_identity import USB_KEYS, UsbIdentity

    usb = UsbIdentity.from_mapping(given)
    return tuple((k, getattr(usb, k)) for k in USB_KEYS if getattr(usb, k) is not None)


def _check_power_value(
    raw: RawHost, given: dict[str, object], bad: Callable[[str, str], None]
) -> None:
    """The driver-specific problems of a ``power`` value; its environment values are
    registered as secrets (a command may hold a password: ``pdu --pw ${PW} on``)."""
    from otto import redact
    from otto.lab.power import check_power

    redact.register(*(os.environ.get(n) for n in raw.variables.get("power", [])))
    if value_problems("power", given):
        return  # already reported
    try:
        check_power(given)
    except ValueError as exc:
        bad("power", str(exc))


def _no_host(raw: RawHost, fld: str, value: str) -> str:
    """The "no host named ..." problem for ``value``.

    A value taken from the environment may be a secret: the variables it came
    from are named instead.
    """
    names = [n for n in raw.variables.get(fld, []) if os.environ.get(n) and os.environ[n] in value]
    if names:
        refs = ", ".join(f"${{{n}}}" for n in dict.fromkeys(names))
        return f"no host in the lab is named by the value of {refs} (not shown)"
    return f"no host named {value!r} in the lab"


def _check_power(
    specs: Mapping[str, HostSpec], raws: Mapping[str, RawHost], problems: list[str]
) -> None:
    for spec in specs.values():
        via = cast("str | None", dict(spec.power or ()).get("via"))
        if via is None or (via == DEFAULT_HOST_NAME and via not in raws):
            continue
        where = where_of(raws[spec.name].fields["power"][1], spec.name, "power")
        if via not in raws:
            problems.append(f"{where}: 'via': {_no_host(raws[spec.name], 'power', via)}")
        elif via == spec.name:
            problems.append(f"{where}: 'via': a host cannot be its own power controller")


def _check_hops(
    specs: Mapping[str, HostSpec], raws: Mapping[str, RawHost], problems: list[str]
) -> None:
    cycles: set[frozenset[str]] = set()
    for spec in specs.values():
        if spec.hop is None:
            continue
        file = raws[spec.name].fields["hop"][1]
        where = where_of(file, spec.name, "hop")
        if spec.hop not in raws:
            problems.append(f"{where}: {_no_host(raws[spec.name], 'hop', spec.hop)}")
            continue
        hop = specs.get(spec.hop)
        if hop is None:  # the hop's own entry is invalid: reported for it
            continue
        if hop.term != "ssh":
            problems.append(f"{where}: hop {spec.hop!r} must be an SSH host (it is {hop.term!r})")
            continue
        chain = [spec.name]
        current: HostSpec | None = spec
        while current is not None and current.hop is not None:
            if current.hop in chain:
                loop = chain[chain.index(current.hop) :]
                if frozenset(loop) not in cycles:  # each cycle once, not once per member
                    cycles.add(frozenset(loop))
                    cycle = " -> ".join([*loop, current.hop])
                    problems.append(f"{where}: hops form a cycle: {cycle}")
                break
            chain.append(current.hop)
            current = specs.get(current.hop)


def check_sources(
    paths: Sequence[StrPath],
    *,
    settings: dict[str, tuple[object, str]] | None = None,
    check_files: bool = False,
) -> tuple[dict[str, HostSpec], list[tuple[str, str]], list[str]]:
    """Read, merge and validate lab sources, collecting every problem.

    Returns the valid host entries, the instruction modules ``(module, file)``
    and the problems (each naming the file, and the host and field when it
    is about one). ``Lab.load`` and ``otto lab check`` both use it; with
    ``check_files`` (``otto lab check``), a ``known_hosts`` file that does not
    exist is a problem too (a key file always is).
    """
    raws: dict[str, RawHost] = {}
    instructions: list[tuple[str, str]] = []
    problems: list[str] = []
    for given in paths:
        read_source(given, raws, instructions, problems, settings=settings)
    specs: dict[str, HostSpec] = {}
    for name, raw in raws.items():
        spec = _validate(name, raw, problems)
        if spec is not None:
            specs[name] = spec
    _check_hops(specs, raws, problems)
    _check_power(specs, raws, problems)
    if check_files:
        for name, spec in specs.items():
            known = spec.known_hosts
            if isinstance(known, Path) and not known.is_file():
                where = where_of(raws[name].fields["known_hosts"][1], name, "known_hosts")
                problems.append(
                    f"{where}: file {str(known)!r} does not exist (fill it with "
                    'ssh-keyscan, or set "known_hosts": null to turn host key checking off)'
                )
    return specs, instructions, problems


def _raw_of(spec: HostSpec) -> RawHost:
    """A validated entry back as raw fields (each from the last file naming the host)."""
    file = spec.files[-1] if spec.files else "the default lab"
    fields: dict[str, tuple[object, str]] = {}
    for fld in HOST_FIELDS:
        value = getattr(spec, fld, None)
        if fld == "name" or (value is None and fld != "known_hosts"):
            continue
        if value is KNOWN_HOSTS_DEFAULT:
            continue
        if isinstance(value, Path):
            value = str(value)
        elif fld in ("power", "boot"):
            value = dict(cast("tuple[tuple[str, object], ...]", value))
        elif isinstance(value, SnmpSettings):
            value = value.as_dict()
        elif isinstance(value, tuple):
            value = list(value)
        fields[fld] = (value, file)
    return RawHost(fields=fields, files=list(spec.files) or [file])


# --- the lab ---------------------------------------------------------------------------


class Lab:
    """A validated set of hosts; each host object is built on first use and kept."""

    def __init__(
        self,
        specs: Sequence[HostSpec],
        *,
        files: Sequence[str] = (),
        instructions: Sequence[tuple[str, str]] = (),
        reservations: str | None = None,
    ) -> None:
        self._specs = {s.name: s for s in specs}
        self._hosts: dict[str, Host] = {}
        self.files: tuple[str, ...] = tuple(files)
        """The lab files merged into this lab, in order (empty for the default lab)."""
        self.instruction_modules: tuple[tuple[str, str], ...] = tuple(instructions)
        """Instruction modules named by the lab settings, as ``(module, lab file)``."""
        self.reservations = reservations
        """The reservation store's URL from ``settings.reservations`` (None: not set)."""

    @classmethod
    def default(cls) -> Lab:
        """The lab used when no lab file is given: one ``LocalHost`` named ``local``."""
        return cls([HostSpec(name=DEFAULT_HOST_NAME, term="local")])

    @classmethod
    def load(cls, paths: StrPath | Sequence[StrPath]) -> Lab:
        """Read, merge and validate lab files; no paths gives the default lab.

        Raises:
            LabError: a file is missing or invalid; the message names the file,
                the host and the field.
        """
        if isinstance(paths, str | os.PathLike):
            paths = [paths]
        if not paths:
            return cls.default()
        files = [str(Path(p)) for p in paths]
        settings: dict[str, tuple[object, str]] = {}
        specs, instructions, problems = check_sources(paths, settings=settings)
        if problems:
            raise LabError("\n".join(problems))
        named: dict[str, str] = {}
        for module, file in instructions:
            named.setdefault(module, file)  # the first file to name a module is its base
        unique = list(named.items())
        store = settings.get("reservations", (None, ""))[0]
        return cls(
            list(specs.values()),
            files=files,
            instructions=unique,
            reservations=store if isinstance(store, str) else None,
        )

    @property
    def names(self) -> list[str]:
        """Host names, in the order the lab files list them."""
        return list(self._specs)

    @property
    def specs(self) -> list[HostSpec]:
        """Every host's validated entry."""
        return list(self._specs.values())

    def spec(self, name: str) -> HostSpec:
        """The entry for ``name``; ``LabError`` if the lab has no such host."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(self._specs) or "none"
            raise LabError(
                f"no host named {name!r} in {self._describe()} (hosts: {known})"
            ) from None

    def override(self, names: Sequence[str], fields: Mapping[str, tuple[object, str]]) -> None:
        """Change fields of the hosts ``names`` in this lab object, checked as a lab file's.

        ``fields`` maps a lab field to ``(value, where it came from)``, such as
        ``{"user": ("root", "--user")}``; problems name that origin, the host
        and the field. A new ``term`` drops the fields the new term does not
        use, and the port (it belongs to the old way in), unless ``fields``
        gives them. The changed hosts and those they go through (hops, power
        controller) are checked; other hosts are left as they are. Call it
        before any host is built (the CLI's one-off ``--user``, ``--port``,
        ``--hop``, ``--term``).

        Raises:
            LabError: every problem found (a bad value, a hop that names no
                SSH host of the lab, a cycle of hops).
            RuntimeError: hosts were built from this lab already.
        """
        if self._hosts:
            raise RuntimeError("Lab.override: hosts were built from this lab already")
        raws = {name: _raw_of(spec) for name, spec in self._specs.items()}
        term = fields.get("term", (None, ""))[0]
        for name in names:
            raw = raws[self.spec(name).name]
            if term is not None and term != self._specs[name].term and term in TERMS:
                for fld in list(raw.fields):
                    if fld == "port" or term not in FIELDS[fld].terms:
                        del raw.fields[fld]
            raw.fields.update(fields)
        problems: list[str] = []
        specs = dict(self._specs)
        for name in dict.fromkeys(names):
            spec = _validate(name, raws[name], problems)
            if spec is not None:
                specs[name] = spec
        if problems:
            raise LabError("\n".join(problems))
        # The changed hosts and the hosts they go through; other hosts are not used.
        reached: dict[str, HostSpec] = {}
        todo = list(names)
        while todo:
            spec = specs.get(todo.pop())
            if spec is not None and spec.name not in reached:
                reached[spec.name] = spec
                todo.extend(
                    h
                    for h in (spec.hop, cast("str | None", dict(spec.power or ()).get("via")))
                    if h
                )
        _check_hops(reached, raws, problems)
        _check_power(reached, raws, problems)
        if problems:
            raise LabError("\n".join(problems))
        self._specs = specs

    def select(self, pattern: str | re.Pattern[str] | None = None) -> list[str]:
        """Names of the hosts that ``pattern`` (a regex, searched) matches; all if None."""
        if pattern is None:
            return self.names
        regex = re.compile(pattern)
        return [n for n in self._specs if regex.search(n)]

    def host(self, name: str) -> Host:
        """The host object for ``name``, built (without connecting) on first use."""
        built = self._hosts.get(name)
        if built is None:
            spec = self.spec(name)
            built = self._build(spec)
            if spec.snmp is not None:
                built.snmp = spec.snmp
            if spec.boot is not None:
                from otto.hosts.lifecycle import BootSpec

                built.boot_spec = BootSpec.from_lab(dict(spec.boot))
            self._hosts[name] = built
        return built

    def hosts(self, pattern: str | re.Pattern[str] | None = None) -> list[Host]:
        """Host objects for every host, or those whose name ``pattern`` matches."""
        return [self.host(n) for n in self.select(pattern)]

    async def close(self, timeout: float | None = None) -> None:
        """Close every host built so far (sessions, repeats, connections), all at once.

        A host whose close fails is logged and the others are still closed.

        Args:
            timeout: seconds to wait; a host still closing then is abandoned
                (its local processes are killed) and the call returns.
        """
        built = list(self._hosts.values())
        self._hosts.clear()
        if not built:
            return
        closing = {asyncio.ensure_future(host.close()): host for host in built}
        done, pending = await asyncio.wait(closing, timeout=timeout)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                log.warning("closing host %s failed: %s", closing[task].name, error)
        for task in pending:
            log.warning("host %s did not close within %gs: abandoned", closing[task].name, timeout)
            closing[task].abandon()
            task.cancel()

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[HostSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"Lab(files={list(self.files)!r}, hosts={self.names!r})"

    def _describe(self) -> str:
        return "lab " + ", ".join(self.files) if self.files else "the default lab"

    def _power(self, spec: HostSpec) -> PowerSpec | None:
        if spec.power is None:
            return None
        from otto.hosts.power import PowerSpec
        from otto.lab.power import driver_from

        given = dict(spec.power)
        driver = driver_from(given)
        if driver is not None:
            return PowerSpec(driver=driver)
        commands = cast(dict[str, str], given)
        via_name = commands.get("via")
        via = None
        if via_name is not None and (via_name != DEFAULT_HOST_NAME or via_name in self._specs):
            via = self.host(via_name)
        return PowerSpec(
            on=commands.get("on"),
            off=commands.get("off"),
            cycle=commands.get("cycle"),
            status=commands.get("status"),
            on_pattern=commands.get("on_pattern"),
            off_pattern=commands.get("off_pattern"),
            via=via,
        )

    def _build(self, spec: HostSpec) -> Host:
        # Imported here: reading a lab (``otto --help``, ``--list-hosts``) must not
        # pay for the transports.
        from otto.hosts.local import LocalHost

        power = self._power(spec)
        if spec.term == "local":
            return LocalHost(name=spec.name, become_password=spec.become_password, power=power)
        if spec.term == "none":
            from otto.hosts.device import DeviceHost

            assert spec.address is not None
            return DeviceHost(spec.address, name=spec.name, snmp=spec.snmp, power=power)
        from otto.hosts.remote import RemoteHost

        hop = self.host(spec.hop) if spec.hop is not None else None
        assert hop is None or isinstance(hop, RemoteHost), "hops are SSH hosts"
        address = spec.address
        if address is None and spec.usb is not None:
            address = _usb_text(spec.usb)  # the host's name is spec.name
        assert address is not None
        make = functools.partial(
            RemoteHost,
            address,
            user=spec.user,
            password=spec.password,
            key=str(spec.key) if spec.key is not None else None,
            port=spec.port,
            term=spec.term,
            hop=hop,
            name=spec.name,
            become_password=spec.become_password,
            power=power,
        )
        if spec.connect_timeout is not None:
            make = functools.partial(make, connect_timeout=spec.connect_timeout)
        if spec.console_protocol is not None:
            make = functools.partial(make, console_protocol=spec.console_protocol)
        if spec.baud is not None:
            make = functools.partial(make, baud=spec.baud)
        if spec.console_log is not None:
            make = functools.partial(make, console_log=str(spec.console_log))
        if spec.usb is not None:
            make = functools.partial(make, usb=dict(spec.usb))
        # Only a lab that mentions known_hosts overrides the host's own default.
        if isinstance(spec.known_hosts, Path):
            return make(known_hosts=str(spec.known_hosts))
        if spec.known_hosts is None:
            return make(known_hosts=None)
        return make()
