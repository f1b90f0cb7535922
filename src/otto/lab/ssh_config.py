"""Labs from an OpenSSH client config (``--lab ~/.ssh/config``), read by asyncssh's parser.

Each concrete ``Host`` alias (not a pattern with ``*``, ``?`` or ``!``)
becomes an SSH host, with the options OpenSSH would use for it (``Host *``
defaults, ``Match`` blocks and ``Include`` files applied by asyncssh's
``SSHClientConfig`` as OpenSSH applies them):

- ``HostName`` -> ``address`` (the alias itself when not given),
- ``User`` -> ``user`` (the local user when not given, as ssh does),
- ``Port`` -> ``port``, ``ConnectTimeout`` -> ``connect_timeout``,
- ``IdentityFile`` -> ``key`` (the first that exists),
- ``UserKnownHostsFile`` -> ``known_hosts`` (the first); ``StrictHostKeyChecking
  no`` (or ``off``) -> ``known_hosts: null`` (host keys not checked, as by ssh),
- ``ProxyJump`` -> ``hop``: ``ProxyJump gw`` hops through ``gw``; a jump host
  that is not an alias (``ProxyJump admin@10.0.0.1:2222``) becomes a host of
  its own, named after it (``admin-10.0.0.1-2222``); ``ProxyJump a,b`` is the
  chain ``a`` -> ``b`` -> target, where ``b`` reached through ``a`` is a host of
  its own (``b-via-a``) unless ``b``'s own config already hops through ``a``.

What otto does with the rest, each case deliberately:

- ``Include``: followed, as OpenSSH does (relative paths from ``~/.ssh``).
- ``Match``: evaluated by asyncssh per alias, as OpenSSH does, except
  ``Match exec``: reading a lab runs no command, so it is an error naming the
  file and line.
- A keyword OpenSSH does not know: an error naming the file and line, as
  OpenSSH refuses it too, unless ``IgnoreUnknown`` lists it.
- Keywords OpenSSH knows but otto does not use (``ForwardAgent``,
  ``LocalForward``...): ignored.
- ``ProxyCommand``: otto cannot reach the host that way; the alias is left out
  of the lab with a warning naming the file and line.
"""

from __future__ import annotations

import fnmatch
import getpass
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from otto.lab.raw import NAME_RE, RawHost
from otto.transports.sshlib import asyncssh

ConfigParseError = asyncssh.config.ConfigParseError
SSHClientConfig = asyncssh.config.SSHClientConfig

__all__ = ["read_file"]

log = logging.getLogger("otto.lab")

# The client keywords of ssh_config(5), lowercased (OpenSSH 9, with the
# deprecated ones it still accepts).
_KEYWORDS_TEXT = """
    AddKeysToAgent AddressFamily BatchMode BindAddress BindInterface CanonicalDomains
    CanonicalizeFallbackLocal CanonicalizeHostname CanonicalizeMaxDots
    CanonicalizePermittedCNAMEs CASignatureAlgorithms CertificateFile ChannelTimeout
    ChallengeResponseAuthentication CheckHostIP Cipher Ciphers ClearAllForwardings
    Compression ConnectionAttempts ConnectTimeout ControlMaster ControlPath ControlPersist
    DynamicForward EnableEscapeCommandline EnableSSHKeysign EscapeChar ExitOnForwardFailure
    FingerprintHash ForkAfterAuthentication ForwardAgent ForwardX11 ForwardX11Timeout
    ForwardX11Trusted GatewayPorts GlobalKnownHostsFile GSSAPIAuthentication
    GSSAPIClientIdentity GSSAPIDelegateCredentials GSSAPIKeyExchange GSSAPIRenewalForcesRekey
    GSSAPIServerIdentity GSSAPITrustDns HashKnownHosts Host HostbasedAcceptedAlgorithms
    HostbasedAuthentication HostbasedKeyTypes HostKeyAlgorithms HostKeyAlias HostName
    IdentitiesOnly IdentityAgent IdentityFile IgnoreUnknown Include IPQoS
    KbdInteractiveAuthentication KbdInteractiveDevices KexAlgorithms KnownHostsCommand
    LocalCommand LocalForward LogLevel LogVerbose MACs Match NoHostAuthenticationForLocalhost
    NumberOfPasswordPrompts ObscureKeystrokeTiming PasswordAuthentication PermitLocalCommand
    PermitRemoteOpen PKCS11Provider Port PreferredAuthentications Protocol ProxyCommand
    ProxyJump ProxyUseFdpass PubkeyAcceptedAlgorithms PubkeyAcceptedKeyTypes
    PubkeyAuthentication PubkeyAuthOptions RefuseConnection RekeyLimit RemoteCommand
    RemoteForward RequestTTY RequiredRSASize RevokedHostKeys RhostsRSAAuthentication
    RSAAuthentication SecurityKeyProvider SendEnv ServerAliveCountMax ServerAliveInterval
    SessionType SetEnv SmartcardDevice StdinNull StreamLocalBindMask StreamLocalBindUnlink
    StrictHostKeyChecking SyslogFacility Tag TCPKeepAlive Tunnel TunnelDevice UpdateHostKeys
    UseBlacklistedKeys UsePrivilegedPort User UserKnownHostsFile UseRoaming VerifyHostKeyDNS
    VersionAddendum VisualHostKey WarnWeakCrypto XAuthLocation
"""
_OPENSSH_KEYWORDS = frozenset(_KEYWORDS_TEXT.lower().split())
_KEYWORD_RE = re.compile(r"\s*([^\s=]+)")
_ASYNCSSH_WHERE_RE = re.compile(r"^(.*) line (\d+): (.*)$", re.DOTALL)
_JUMP_RE = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@]+)@)?(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:@/\[\]]+))"
    r"(?::(?P<port>\d+))?/?$"
)


#: How deeply ``Include`` files may nest (OpenSSH's own limit).
MAX_INCLUDE_DEPTH = 16


@dataclass
class _Alias:
    name: str
    file: Path
    line: int


class _Scan(SSHClientConfig):
    """One pass over the config and its includes, every block taken: aliases and problems."""

    aliases: list[_Alias]
    problems: list[str]
    ignore: list[str]

    _depth = 0

    def parse(self, path: Path) -> None:
        # Called again by asyncssh for each Include, with _path and _line_no
        # still those of the Include line.
        if self._depth > MAX_INCLUDE_DEPTH:  # the top file is 0, as in OpenSSH's readconf.c
            raise ConfigParseError(
                f"{self._path} line {self._line_no}: Include nested more than "
                f"{MAX_INCLUDE_DEPTH} deep (ssh stops there too): an Include loop?"
            )
        self._depth += 1
        try:
            self._check_keywords(path)
            super().parse(path)
        finally:
            self._depth -= 1

    def _check_keywords(self, path: Path) -> None:
        with open(path, encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                text = line.strip()
                m = _KEYWORD_RE.match(text)
                if not text or text.startswith("#") or m is None:
                    continue
                word = m.group(1).lower()
                if word == "ignoreunknown":
                    rest = text[m.end() :].lstrip(" \t=")
                    self.ignore.extend(p.lower() for p in re.split(r"[,\s]+", rest) if p)
                elif word not in _OPENSSH_KEYWORDS and not any(
                    fnmatch.fnmatchcase(word, p) for p in self.ignore
                ):
                    self.problems.append(
                        f"{path}:{number}: unknown keyword {m.group(1)!r} (ssh refuses it "
                        f"too; list it in IgnoreUnknown to have it ignored)"
                    )

    def _scan_host(self, option: str, args: list[str]) -> None:
        for given in ",".join(args).split(","):
            pattern = given.strip()
            if pattern and not any(c in pattern for c in "*?!"):
                self.aliases.append(_Alias(pattern, self._path, self._line_no))
        args.clear()
        self._matching = True

    def _scan_match(self, option: str, args: list[str]) -> None:
        if any(a.lower().lstrip("!") == "exec" for a in args):
            self.problems.append(
                f"{self._path}:{self._line_no}: 'Match exec' is not supported: otto runs "
                f"no command to read a lab (use Host or Match host/user instead)"
            )
        args.clear()
        self._matching = True

    _handlers = {  # noqa: RUF012 (asyncssh's table of keyword handlers, two replaced)
        **SSHClientConfig._handlers,
        "host": ("Host", _scan_host),
        "match": ("Match", _scan_match),
    }


class _Lookup(SSHClientConfig):
    """asyncssh's client config, also reading ``StrictHostKeyChecking`` (asyncssh skips it)."""

    _handlers = {  # noqa: RUF012 (asyncssh's table of keyword handlers, one added)
        **SSHClientConfig._handlers,
        "stricthostkeychecking": ("StrictHostKeyChecking", SSHClientConfig._set_bool_or_str),
    }


def _where(exc: Exception) -> str:
    """An asyncssh parse error as ``FILE:LINE: reason``."""
    text = str(exc)
    m = _ASYNCSSH_WHERE_RE.match(text)
    return f"{m.group(1)}:{m.group(2)}: {m.group(3)}" if m else text


@dataclass
class _Reader:
    path: Path
    aliases: dict[str, _Alias]
    problems: list[str]
    local_user: str = field(default_factory=getpass.getuser)
    out: dict[str, dict[str, object]] = field(default_factory=dict)
    resolving: set[str] = field(default_factory=set)

    def lookup(self, host: str, user: str | None = None, port: int | None = None) -> Any:
        return _Lookup.load(
            None,
            [self.path],
            False,
            False,
            False,
            self.local_user,
            user if user is not None else (),
            host,
            port if port is not None else (),
        )

    def fields(self, host: str, user: str | None, port: int | None) -> dict[str, object]:
        config = self.lookup(host, user, port)
        found: dict[str, object] = {
            "address": config.get("Hostname") or host,
            "user": config.get("User") or self.local_user,
        }
        if config.get("Port") is not None:
            found["port"] = config.get("Port")
        for key in config.get("IdentityFile") or []:
            if Path(key).expanduser().is_file():
                found["key"] = str(Path(key).expanduser())
                break
        known = config.get("UserKnownHostsFile") or []
        if known:
            found["known_hosts"] = str(Path(known[0]).expanduser())
        if config.get("StrictHostKeyChecking") in (False, "off"):
            found["known_hosts"] = None  # ssh does not check this host's key: neither does otto
        if config.get("ConnectTimeout"):
            found["connect_timeout"] = config.get("ConnectTimeout")
        found["_jump"] = config.get("ProxyJump")
        found["_command"] = config.get("ProxyCommand")
        return found

    def alias(self, name: str) -> str | None:
        """Resolve the alias ``name`` into ``out``; its name, or None when left out."""
        if name in self.out or name in self.resolving:
            return name
        self.resolving.add(name)
        try:
            spec = self.fields(name, None, None)
            where = self.aliases[name]
            if spec["_jump"] is None and spec["_command"] is not None:
                log.warning(
                    "%s:%d: host %r uses ProxyCommand, which otto cannot follow: left out "
                    "of the lab (use ProxyJump)",
                    where.file,
                    where.line,
                    name,
                )
                return None
            hop = self.jumps(str(spec["_jump"]), name) if spec["_jump"] else None
            self.out[name] = {**spec, "hop": hop}
            return name
        finally:
            self.resolving.discard(name)

    def jumps(self, text: str, target: str) -> str | None:
        """The host names for a ProxyJump chain; the last one (the target's hop)."""
        prev: str | None = None
        for index, element in enumerate(e.strip() for e in text.split(",")):
            m = _JUMP_RE.match(element)
            if m is None:
                where = self.aliases.get(target)
                at = f"{where.file}:{where.line}" if where else str(self.path)
                self.problems.append(
                    f"{at}: host {target!r}: ProxyJump {element!r} is not [user@]host[:port]"
                )
                return None
            user, host = m.group("user"), m.group("v6") or m.group("host")
            port = int(m.group("port")) if m.group("port") else None
            plain = user is None and port is None
            if index == 0 and plain and host in self.aliases:
                prev = self.alias(host)
                if prev is None:
                    return None
                continue
            spec = self.fields(host, user, port)
            own = prev
            if index == 0 and spec["_jump"]:
                key = f"jump {element}"
                if key in self.resolving:  # a pattern's ProxyJump that matches itself
                    self.problems.append(
                        f"{self.path}: ProxyJump {element!r} jumps through itself "
                        f"(add 'Host {host}' with 'ProxyJump none' before the pattern)"
                    )
                    return None
                self.resolving.add(key)
                try:
                    own = self.jumps(str(spec["_jump"]), element)
                finally:
                    self.resolving.discard(key)
            spec["hop"] = own
            base = host if plain else re.sub(r"[^A-Za-z0-9_.-]+", "-", element).strip("-")
            if index > 0 and plain and host in self.aliases:
                resolved = self.alias(host)
                if resolved is not None and self.out.get(resolved, {}).get("hop") == own:
                    prev = resolved
                    continue
            name = base
            taken = name in self.out or name in self.aliases
            if taken and self.out.get(name) != spec:
                name = f"{base}-via-{prev}" if prev else f"{base}-jump"
            self.out.setdefault(name, spec)
            prev = name
        return prev


def read_file(path: Path, hosts: dict[str, RawHost], problems: list[str]) -> None:
    """Merge the hosts of an OpenSSH client config into ``hosts`` (see the module docs)."""
    file = str(path)
    if not path.is_file():
        problems.append(
            f"{file}: lab file not found" if not path.exists() else f"{file}: not a file"
        )
        return
    nothing: Any = ()  # asyncssh's "not given" for the user and the port
    scan = _Scan(cast(Any, None), False, False, False, getpass.getuser(), nothing, "", nothing)
    scan.aliases, scan.problems, scan.ignore = [], [], []
    try:
        scan.parse(path)
    except (ConfigParseError, ValueError) as exc:
        problems.append(_where(exc))
        return
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(f"{file}: cannot read the ssh config: {exc}")
        return
    if scan.problems:
        problems.extend(scan.problems)
        return
    aliases: dict[str, _Alias] = {}
    for alias in scan.aliases:
        if not NAME_RE.fullmatch(alias.name):
            log.warning(
                "%s:%d: Host %r is not a valid otto host name (letters, digits, '_', '.', "
                "'-'): left out of the lab",
                alias.file,
                alias.line,
                alias.name,
            )
            continue
        aliases.setdefault(alias.name, alias)
    reader = _Reader(path, aliases, problems)
    try:
        for name in aliases:
            reader.alias(name)
    except (ConfigParseError, ValueError) as exc:
        problems.append(_where(exc))
        return
    for name, spec in reader.out.items():
        raw = hosts.setdefault(name, RawHost())
        raw.files.append(file)
        raw.fields["term"] = ("ssh", file)
        for key, value in spec.items():
            if not key.startswith("_") and (value is not None or key == "known_hosts"):
                raw.fields[key] = (value, file)
