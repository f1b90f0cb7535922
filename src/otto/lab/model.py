"""The lab model: validated host entries (``HostSpec``) and the ``Lab`` that builds hosts.

Validation is the same whatever source a lab comes from; the sources
(``json_source``, and YAML, ssh_config or Ansible next) only read and merge.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

from otto.errors import LabError
from otto.lab.json_source import read_file
from otto.lab.raw import RawHost, where_of

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.hosts.power import PowerSpec

__all__ = ["DEFAULT_HOST_NAME", "KNOWN_HOSTS_DEFAULT", "HostSpec", "Lab", "StrPath", "Term"]

log = logging.getLogger("otto.lab")

#: The one host of the lab used when no lab file is given.
DEFAULT_HOST_NAME = "local"

Term = Literal["ssh", "telnet", "local", "console", "serial"]
StrPath: TypeAlias = str | os.PathLike[str]

_TERMS: tuple[Term, ...] = ("ssh", "telnet", "local", "console", "serial")
_CONSOLES = ("console", "serial")
_CONSOLE_ONLY = ("console_protocol", "baud", "console_log")
_REMOTE_ONLY = ("address", "user", "password", "key", "port", "hop", "known_hosts")
_SSH_ONLY = ("key", "known_hosts")
_POWER_KEYS = ("on", "off", "cycle", "via")


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
    known_hosts: Path | _KnownHostsDefault | None = KNOWN_HOSTS_DEFAULT
    connect_timeout: float | None = None
    become_password: str | None = field(default=None, repr=False)
    power: tuple[tuple[str, str], ...] | None = None
    """``(key, value)`` pairs: ``on``, ``off``, ``cycle`` commands, the controller ``via``."""
    console_protocol: Literal["telnet", "raw"] | None = None
    baud: int | None = None
    console_log: Path | None = None
    files: tuple[str, ...] = ()
    """The lab files that define this host, in merge order."""

    @property
    def destination(self) -> str:
        """``user@address:port`` (or ``local``), for listings."""
        if self.term == "local":
            return "local"
        dest = f"{self.user}@{self.address}" if self.user else str(self.address)
        return f"{dest}:{self.port}" if self.port is not None else dest


# --- validation -------------------------------------------------------------------------


def _path(value: object, file: str, where: str) -> Path:
    if not isinstance(value, str) or not value:
        raise LabError(f"{where}: must be a file path")
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = Path(file).parent / path
    return path


def _validate(name: str, raw: RawHost) -> HostSpec:
    """Check one merged host entry and turn it into a ``HostSpec``."""
    values = {k: v for k, (v, _) in raw.fields.items() if v is not None or k == "known_hosts"}

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

    term = values.get("term", "ssh")
    if term not in _TERMS:
        raise LabError(
            f"{where('term')}: must be one of 'ssh', 'telnet', 'local', 'console', 'serial' "
            f"{got('term', term)}"
        )

    if term == "local":
        for fld in _REMOTE_ONLY:
            if fld in values:
                raise LabError(f"{where(fld)}: not used by term 'local'")
    else:
        for fld in ("address",) if term in _CONSOLES else ("address", "user"):
            if fld not in values:
                raise LabError(f"{where(fld)}: required for term {term!r}")
            if not isinstance(values[fld], str) or not values[fld]:
                raise LabError(f"{where(fld)}: must be a non-empty string")
    if term == "telnet":
        for fld in _SSH_ONLY:
            if fld in values:
                raise LabError(f"{where(fld)}: not used by term 'telnet'")
    if term in _CONSOLES:
        for fld in (*_SSH_ONLY, "hop"):
            if fld in values:
                raise LabError(f"{where(fld)}: not used by term {term!r}")
        user = values.get("user")
        if user is not None and (not isinstance(user, str) or not user):
            raise LabError(f"{where('user')}: must be a non-empty string")
    else:
        for fld in _CONSOLE_ONLY:
            if fld in values:
                raise LabError(f"{where(fld)}: only for term 'console' or 'serial'")
    console_protocol = values.get("console_protocol")
    if console_protocol is not None:
        if term != "console":
            raise LabError(f"{where('console_protocol')}: only for term 'console'")
        if console_protocol not in ("telnet", "raw"):
            raise LabError(
                f"{where('console_protocol')}: must be 'telnet' or 'raw' "
                f"{got('console_protocol', console_protocol)}"
            )
    baud = values.get("baud")
    if baud is not None:
        if term != "serial":
            raise LabError(f"{where('baud')}: only for term 'serial'")
        if isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0:
            raise LabError(f"{where('baud')}: must be a positive integer {got('baud', baud)}")
    console_log: Path | None = None
    if "console_log" in values:
        console_log = _path(
            values["console_log"], raw.fields["console_log"][1], where("console_log")
        )

    password = values.get("password")
    if password is not None and not isinstance(password, str):
        raise LabError(f"{where('password')}: must be a string")

    key: Path | None = None
    if "key" in values:
        key = _path(values["key"], raw.fields["key"][1], where("key"))
        if not key.is_file():
            shown = got("key", str(key)).removeprefix("(got ").removesuffix(")")
            raise LabError(f"{where('key')}: key file {shown} does not exist")

    port: int | None = None
    if "port" in values:
        given = values["port"]
        if isinstance(given, str) and given.isdigit():
            port = int(given)
        elif isinstance(given, int) and not isinstance(given, bool):
            port = given
        if port is None or not 1 <= port <= 65535:
            raise LabError(f"{where('port')}: must be a port number 1-65535 {got('port', given)}")

    hop = values.get("hop")
    if hop is not None and (not isinstance(hop, str) or not hop):
        raise LabError(f"{where('hop')}: must be the name of another host")

    tags = values.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise LabError(f"{where('tags')}: must be a list of strings")

    known_hosts: Path | _KnownHostsDefault | None = KNOWN_HOSTS_DEFAULT
    if "known_hosts" in values:
        given = values["known_hosts"]
        known_hosts = (
            None
            if given is None
            else _path(given, raw.fields["known_hosts"][1], where("known_hosts"))
        )

    timeout: float | None = None
    if "connect_timeout" in values:
        given = values["connect_timeout"]
        if isinstance(given, bool) or not isinstance(given, int | float) or given <= 0:
            raise LabError(f"{where('connect_timeout')}: must be a positive number of seconds")
        timeout = float(given)

    become_password = values.get("become_password")
    if become_password is not None and not isinstance(become_password, str):
        raise LabError(f"{where('become_password')}: must be a string")

    power: tuple[tuple[str, str], ...] | None = None
    if "power" in values:
        given = values["power"]
        if not isinstance(given, dict) or not given:
            raise LabError(f"{where('power')}: must be an object of 'on', 'off', 'cycle', 'via'")
        for item, command in given.items():
            if item not in _POWER_KEYS:
                raise LabError(
                    f"{where('power')}: unknown key {item!r} (expected 'on', 'off', 'cycle', 'via')"
                )
            if not isinstance(command, str) or not command:
                raise LabError(f"{where('power')}: {item!r} must be a non-empty string")
        if not ({"on", "off", "cycle"} & set(given)):
            raise LabError(f"{where('power')}: needs at least one of 'on', 'off', 'cycle'")
        power = tuple(sorted(cast(dict[str, str], given).items()))

    return HostSpec(
        name=name,
        term=term,
        address=cast("str | None", values.get("address")),
        user=cast("str | None", values.get("user")),
        password=password,
        key=key,
        port=port,
        hop=hop,
        tags=tuple(cast(list[str], tags)),
        known_hosts=known_hosts,
        connect_timeout=timeout,
        become_password=become_password,
        power=power,
        console_protocol=console_protocol,
        baud=baud,
        console_log=console_log,
        files=tuple(dict.fromkeys(raw.files)),
    )


def _check_power(specs: Mapping[str, HostSpec], raws: Mapping[str, RawHost]) -> None:
    for spec in specs.values():
        via = dict(spec.power or ()).get("via")
        if via is None or (via == DEFAULT_HOST_NAME and via not in specs):
            continue
        where = where_of(raws[spec.name].fields["power"][1], spec.name, "power")
        if via not in specs:
            raise LabError(f"{where}: 'via': no host named {via!r} in the lab")
        if via == spec.name:
            raise LabError(f"{where}: 'via': a host cannot be its own power controller")


def _check_hops(specs: Mapping[str, HostSpec], raws: Mapping[str, RawHost]) -> None:
    for spec in specs.values():
        if spec.hop is None:
            continue
        file = raws[spec.name].fields["hop"][1]
        where = where_of(file, spec.name, "hop")
        hop = specs.get(spec.hop)
        if hop is None:
            raise LabError(f"{where}: no host named {spec.hop!r} in the lab")
        if hop.term != "ssh":
            raise LabError(f"{where}: hop {spec.hop!r} must be an SSH host (it is {hop.term!r})")
        chain = [spec.name]
        current: HostSpec | None = spec
        while current is not None and current.hop is not None:
            if current.hop in chain:
                cycle = " -> ".join([*chain[chain.index(current.hop) :], current.hop])
                raise LabError(f"{where}: hops form a cycle: {cycle}")
            chain.append(current.hop)
            current = specs.get(current.hop)


# --- the lab ---------------------------------------------------------------------------


class Lab:
    """A validated set of hosts; each host object is built on first use and kept."""

    def __init__(
        self,
        specs: Sequence[HostSpec],
        *,
        files: Sequence[str] = (),
        instructions: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._specs = {s.name: s for s in specs}
        self._hosts: dict[str, Host] = {}
        self.files: tuple[str, ...] = tuple(files)
        """The lab files merged into this lab, in order (empty for the default lab)."""
        self.instruction_modules: tuple[tuple[str, str], ...] = tuple(instructions)
        """Instruction modules named by the lab settings, as ``(module, lab file)``."""

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
        raws: dict[str, RawHost] = {}
        instructions: list[tuple[str, str]] = []
        files = [str(Path(p)) for p in paths]
        for file in files:
            read_file(Path(file), raws, instructions)
        specs = {name: _validate(name, raw) for name, raw in raws.items()}
        _check_hops(specs, raws)
        _check_power(specs, raws)
        named: dict[str, str] = {}
        for module, file in instructions:
            named.setdefault(module, file)  # the first file to name a module is its base
        unique = list(named.items())
        return cls(list(specs.values()), files=files, instructions=unique)

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
            built = self._build(self.spec(name))
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

        given = dict(spec.power)
        via_name = given.get("via")
        via = None
        if via_name is not None and (via_name != DEFAULT_HOST_NAME or via_name in self._specs):
            via = self.host(via_name)
        return PowerSpec(
            on=given.get("on"),
            off=given.get("off"),
            cycle=given.get("cycle"),
            via=via,
        )

    def _build(self, spec: HostSpec) -> Host:
        # Imported here: reading a lab (``otto --help``, ``--list-hosts``) must not
        # pay for the transports.
        from otto.hosts import LocalHost

        power = self._power(spec)
        if spec.term == "local":
            return LocalHost(name=spec.name, become_password=spec.become_password, power=power)
        from otto.hosts import RemoteHost

        hop = self.host(spec.hop) if spec.hop is not None else None
        assert hop is None or isinstance(hop, RemoteHost), "hops are SSH hosts"
        assert spec.address is not None
        make = functools.partial(
            RemoteHost,
            spec.address,
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
        # Only a lab that mentions known_hosts overrides the host's own default.
        if isinstance(spec.known_hosts, Path):
            return make(known_hosts=str(spec.known_hosts))
        if spec.known_hosts is None:
            return make(known_hosts=None)
        return make()
