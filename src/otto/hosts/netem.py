"""Link impairment: delay, loss, a rate cap and more on a host's interface, with tc netem.

``host.impair(interface, delay="100ms", loss="2%", expire=300)`` checks every
value first (``ValueError`` naming the bad one, before anything is sent), then
runs one shell script on the host, as root (through ``sudo`` for a login that
is not root, see ``otto.hosts.privilege``), that

- puts ``netem`` at the root of the interface (``tc qdisc replace``), or, with
  ``peer=``, an ``htb`` root with two classes, one for all other traffic and
  one holding ``netem``, and a ``u32`` filter that sends only packets for that
  address (and port) to the second;
- writes a state file (``/run/otto-netem/net<namespace>/<interface>``, or under
  ``/tmp`` where ``/run`` is not writable): what was applied and when it expires;
- schedules the revert on the host itself: a detached ``setsid sh -c 'sleep N;
  tc qdisc del ...'`` whose pid is in the state file. It holds if otto dies.

Clearing or applying again first cancels the pending revert (its pid is
killed only while its command line still names that state file). Impairment
acts on packets leaving the interface (egress); ``peer`` matches their
destination address and, with a port, their destination port.
"""

from __future__ import annotations

import ipaddress
import itertools
import math
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from otto.errors import OttoError, tail
from otto.result import CommandStatus

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = [
    "ActiveImpairment",
    "Impairment",
    "Peer",
    "Value",
    "apply",
    "apply_qdisc",
    "check_interface",
    "clear_impairment",
    "impair",
    "impairments",
    "parse_duration",
    "parse_percent",
    "parse_rate",
    "parse_time",
]

Value = str | int | float
"""A value as given: ``"100ms"``, ``"2%"``, ``"1mbit"``; a bare number is in the
unit the argument names (milliseconds, percent, bit/s, seconds)."""

DEFAULT_EXPIRE = 300
SCRIPT_TIMEOUT = 60.0
"""Seconds one script on the host may take (sudo, tc and the revert's start)."""

_IFACE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_TIME_RE = re.compile(rf"{_NUMBER}\s*(us|usec|ms|msec|s|sec)?", re.IGNORECASE)
_PERCENT_RE = re.compile(rf"{_NUMBER}\s*%?")
_RATE_RE = re.compile(rf"{_NUMBER}\s*([kmgt]i?)?(bit|bps)?", re.IGNORECASE)
_DURATION_RE = re.compile(rf"{_NUMBER}\s*(s|sec|m|min|h)?", re.IGNORECASE)

_TIME_UNITS = {"us": 1, "usec": 1, "ms": 1000, "msec": 1000, "s": 1_000_000, "sec": 1_000_000}
_DURATION_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
_RATE_PREFIX = {
    "": 1,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "t": 10**12,
    "ki": 2**10,
    "mi": 2**20,
    "gi": 2**30,
    "ti": 2**40,
}

_PEER_CLASS = "1:2"
# Scoped: an htb root whose default class 1:1 takes all other traffic at a rate no link
# reaches, and class 1:2, holding netem, what the filter sends there. htb, not prio:
# minimal kernels (VMs, containers' hosts) often have htb and u32 but not prio.
_UNLIMITED = ["htb", "rate", "100gbit", "quantum", "60000"]
_REVERT_TAG = "otto-netem-revert"
_FAILED = "otto-netem-failed: "
_BUSYBOX_TC = "otto-netem-busybox-tc"
"""What a script says when the only tc on the host is busybox's applet."""
TC_DIRS = ("/sbin", "/usr/sbin", "/bin", "/usr/bin")
"""Where the scripts look for iproute2's tc, before the folders of ``PATH``."""


# --- values ---------------------------------------------------------------------------


def _text(value: Value, what: str) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"{what}: expected a value like the examples, not {value!r}")
    return str(value).strip()


def parse_time(value: Value, what: str = "delay") -> int:
    """``"100ms"``, ``"250us"``, ``"1.5s"`` (a bare number: milliseconds) -> microseconds."""
    text = _text(value, what)
    found = _TIME_RE.fullmatch(text)
    if found is None:
        raise ValueError(f"{what}: {text!r} is not a time (use e.g. 100ms, 250us, 1.5s)")
    number, unit = found.groups()
    micros = float(number) * _TIME_UNITS[(unit or "ms").lower()]
    if micros < 1 and float(number) != 0:
        raise ValueError(f"{what}: {text!r} is shorter than 1us")
    if micros > 3600 * 1_000_000:
        raise ValueError(f"{what}: {text!r} is longer than an hour")
    return round(micros)


def parse_percent(value: Value, what: str = "loss") -> float:
    """``"2%"``, ``"0.5%"`` (a bare number: percent) -> percent, above 0 and at most 100."""
    text = _text(value, what)
    found = _PERCENT_RE.fullmatch(text)
    if found is None:
        raise ValueError(f"{what}: {text!r} is not a percentage (use e.g. 2%, 0.5%)")
    percent = float(found.group(1))
    if not 0 < percent <= 100:
        raise ValueError(f"{what}: {text!r} is not above 0% and at most 100%")
    return percent


def parse_rate(value: Value, what: str = "rate") -> int:
    """``"1mbit"``, ``"500kbit"``, ``"1gbit"`` (tc's ``kbps``: kilobytes/s; a bare
    number: bit/s) -> bits per second."""
    text = _text(value, what)
    found = _RATE_RE.fullmatch(text)
    if found is None:
        raise ValueError(f"{what}: {text!r} is not a rate (use e.g. 1mbit, 500kbit, 1gbit)")
    number, prefix, unit = found.groups()
    bits = float(number) * _RATE_PREFIX[(prefix or "").lower()]
    if (unit or "bit").lower() == "bps":
        bits *= 8  # tc's bps is bytes per second
    elif prefix and not unit:
        raise ValueError(f"{what}: {text!r} has no unit (use e.g. 1mbit, 500kbit)")
    if bits < 8:
        raise ValueError(f"{what}: {text!r} is below 8bit")
    return round(bits)


def parse_duration(value: Value, what: str = "expire") -> int:
    """``"5m"``, ``"30s"``, ``"1h"`` (a bare number: seconds) -> whole seconds (at least 1)."""
    text = _text(value, what)
    found = _DURATION_RE.fullmatch(text)
    if found is None:
        raise ValueError(f"{what}: {text!r} is not a duration (use e.g. 30s, 5m, 1h)")
    number, unit = found.groups()
    seconds = math.ceil(float(number) * _DURATION_UNITS[(unit or "s").lower()])
    if seconds < 1:
        raise ValueError(f"{what}: {text!r} is shorter than 1s")
    return seconds


def check_interface(name: str) -> str:
    """``name`` if it can be a Linux interface name; ``ValueError`` otherwise.

    At most 15 characters of letters, digits, ``_``, ``.`` and ``-``, not
    starting with ``-`` or ``.``: nothing a shell or tc would read as more.
    """
    if not isinstance(name, str) or not _IFACE_RE.fullmatch(name):
        raise ValueError(
            f"interface: {name!r} is not an interface name (up to 15 letters, digits, "
            "'_', '.' or '-', not starting with '-' or '.')"
        )
    return name


@dataclass(frozen=True)
class Peer:
    """The far end an impairment is limited to: an address or network, maybe a port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    @classmethod
    def parse(cls, value: str) -> Peer:
        """``10.0.0.5``, ``10.0.0.0/24``, ``10.0.0.5:8080``, ``[fd00::5]:8080``, ``fd00::5``."""
        text = value.strip() if isinstance(value, str) else ""
        address, port = text, None
        bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
        if bracketed is not None:
            address = bracketed.group(1)
            port = int(bracketed.group(2)) if bracketed.group(2) else None
        elif text.count(":") == 1:
            address, _, digits = text.partition(":")
            if not digits.isdigit():
                raise ValueError(f"peer: {value!r} has no port number after ':'")
            port = int(digits)
        try:
            network = ipaddress.ip_network(address, strict=False)
        except ValueError:
            raise ValueError(
                f"peer: {value!r} is not an address (use e.g. 10.0.0.5, 10.0.0.5:8080, "
                "10.0.0.0/24, [fd00::5]:8080)"
            ) from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"peer: port {port} in {value!r} is not between 1 and 65535")
        return cls(network, port)

    def __str__(self) -> str:
        single = self.network.prefixlen == self.network.max_prefixlen
        address = str(self.network.network_address) if single else str(self.network)
        if self.port is None:
            return address
        return f"[{address}]:{self.port}" if self.network.version == 6 else f"{address}:{self.port}"

    def filter_args(self, interface: str) -> list[str]:
        """The ``tc filter`` sending packets for this peer to netem's band."""
        v6 = self.network.version == 6
        family = "ip6" if v6 else "ip"
        args = ["tc", "filter", "add", "dev", interface, "parent", "1:"]
        args += ["protocol", "ipv6" if v6 else "ip", "prio", "1", "u32"]
        args += ["match", family, "dst", str(self.network)]
        if self.port is not None:
            args += ["match", family, "dport", str(self.port), "0xffff"]
        return [*args, "flowid", _PEER_CLASS]


def _percent(value: float) -> str:
    return f"{value:g}%"


def _time(micros: int) -> str:
    if micros % 1000 == 0:
        return f"{micros // 1000}ms"
    return f"{micros}us"


def _rate(bits: int) -> str:
    for unit, size in (("gbit", 10**9), ("mbit", 10**6), ("kbit", 10**3)):
        if bits % size == 0:
            return f"{bits // size}{unit}"
    return f"{bits}bit"


@dataclass(frozen=True)
class Impairment:
    """What netem does to a link's packets, checked; build it with ``Impairment.build``."""

    delay_us: int | None = None
    jitter_us: int | None = None
    loss: float | None = None
    rate_bits: int | None = None
    corrupt: float | None = None
    duplicate: float | None = None
    reorder: float | None = None
    peer: Peer | None = None

    @classmethod
    def build(
        cls,
        *,
        delay: Value | None = None,
        jitter: Value | None = None,
        loss: Value | None = None,
        rate: Value | None = None,
        corrupt: Value | None = None,
        duplicate: Value | None = None,
        reorder: Value | None = None,
        peer: str | Peer | None = None,
    ) -> Impairment:
        """Every value checked; ``ValueError`` names the first bad one."""
        made = cls(
            delay_us=None if delay is None else parse_time(delay, "delay"),
            jitter_us=None if jitter is None else parse_time(jitter, "jitter"),
            loss=None if loss is None else parse_percent(loss, "loss"),
            rate_bits=None if rate is None else parse_rate(rate, "rate"),
            corrupt=None if corrupt is None else parse_percent(corrupt, "corrupt"),
            duplicate=None if duplicate is None else parse_percent(duplicate, "duplicate"),
            reorder=None if reorder is None else parse_percent(reorder, "reorder"),
            peer=peer if isinstance(peer, Peer) or peer is None else Peer.parse(peer),
        )
        if made.jitter_us is not None and not made.delay_us:
            raise ValueError("jitter: needs a delay (jitter varies the delay)")
        if made.reorder is not None and not made.delay_us:
            raise ValueError("reorder: needs a delay (reordered packets skip it)")
        if not made.netem_args():
            raise ValueError(
                "nothing to impair: give delay, loss, rate, corrupt, duplicate or reorder"
            )
        return made

    def netem_args(self) -> list[str]:
        """What follows ``netem`` on tc's command line."""
        args: list[str] = []
        if self.delay_us:
            args += ["delay", _time(self.delay_us)]
            if self.jitter_us:
                args.append(_time(self.jitter_us))
        if self.loss is not None:
            args += ["loss", _percent(self.loss)]
        if self.corrupt is not None:
            args += ["corrupt", _percent(self.corrupt)]
        if self.duplicate is not None:
            args += ["duplicate", _percent(self.duplicate)]
        if self.reorder is not None:
            args += ["reorder", _percent(self.reorder)]
        if self.rate_bits is not None:
            args += ["rate", _rate(self.rate_bits)]
        return args

    def __str__(self) -> str:
        text = " ".join(self.netem_args())
        return f"{text} to {self.peer}" if self.peer is not None else text

    def tc_commands(self, interface: str) -> list[list[str]]:
        """The tc command lines that put this impairment on ``interface``."""
        interface = check_interface(interface)
        netem = ["netem", *self.netem_args()]
        if self.peer is None:
            return [["tc", "qdisc", "replace", "dev", interface, "root", *netem]]
        dev = ["dev", interface]
        return [
            ["tc", "qdisc", "add", *dev, "root", "handle", "1:", "htb", "default", "1"],
            ["tc", "class", "add", *dev, "parent", "1:", "classid", "1:1", *_UNLIMITED],
            ["tc", "class", "add", *dev, "parent", "1:", "classid", _PEER_CLASS, *_UNLIMITED],
            ["tc", "qdisc", "add", *dev, "parent", _PEER_CLASS, "handle", "20:", *netem],
            self.peer.filter_args(interface),
        ]


@dataclass(frozen=True)
class ActiveImpairment:
    """An impairment in place on a host, as ``host.impairments()`` reads it back."""

    interface: str
    settings: str
    """What tc shows for its netem qdisc (``delay 100ms loss 2%``...), or what otto applied."""
    peer: str | None = None
    expires_in: float | None = None
    """Seconds until the host reverts it (None: never, or not applied by otto)."""
    by_otto: bool = True
    """False: a netem qdisc otto did not put there (no state file of its own)."""

    @property
    def expires_at(self) -> float | None:
        """When it reverts, as ``time.time()`` here (from the host's own remaining time)."""
        return None if self.expires_in is None else time.time() + self.expires_in

    def as_dict(self) -> dict[str, object]:
        return {
            "interface": self.interface,
            "settings": self.settings,
            "peer": self.peer,
            "expires_in": self.expires_in,
            "by_otto": self.by_otto,
        }


# --- the scripts run on the host --------------------------------------------------------

# iproute2's tc, by its full path: a busybox built to prefer its applets runs its
# own tc (no netem) for the bare name `tc` in `sh -c`, whatever PATH says. The first
# tc in the folders given, then in PATH's, that is not busybox (a link to it, or a
# binary that says BusyBox) becomes $otto_tc; $otto_bb says a busybox tc was seen.
TC_FINDER = r"""otto_find_tc() {
  otto_tc=; otto_bb=; otto_ifs=$IFS; IFS=:
  for otto_dir in "$@" $PATH; do
    IFS=$otto_ifs
    [ -n "$otto_dir" ] && [ -f "$otto_dir/tc" ] && [ -x "$otto_dir/tc" ] || continue
    case $(readlink -f "$otto_dir/tc" 2>/dev/null) in */busybox*) otto_bb=1; continue ;; esac
    case $("$otto_dir/tc" -V 2>&1) in *BusyBox*) otto_bb=1; continue ;; esac
    otto_tc=$otto_dir/tc
    break
  done
  IFS=$otto_ifs
  if [ -z "$otto_tc" ] && command -v tc >/dev/null 2>&1; then otto_bb=1; fi
}
"""

# Every script starts here: iproute2's tc (see TC_FINDER), the state folder of this
# network namespace (hosts in namespaces of one machine share /run), and two
# helpers: cancel a pending revert, and run a command, saying which one failed.
_PRELUDE = (
    TC_FINDER
    + rf"""PATH="$PATH:/usr/sbin:/sbin"; export PATH
ns=$(readlink /proc/self/ns/net 2>/dev/null | tr -cd 0-9)
if [ -d /run ] && [ -w /run ]; then d=/run/otto-netem; else d=/tmp/otto-netem; fi
d="$d/net${{ns:-0}}"
otto_cancel() {{
  [ -f "$1" ] || return 0
  pid=$(sed -n 's/^pid=//p' "$1" | head -n 1)
  case "$pid" in ''|*[!0-9]*) ;; *)
    if tr '\0' '\n' < "/proc/$pid/cmdline" 2>/dev/null | grep -qxF "{_REVERT_TAG}:$1"; then
      kill -TERM -"$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
    fi ;;
  esac
  rm -f "$1"
}}
otto_run() {{
  out=$("$@" 2>&1)
  rc=$?
  if [ "$rc" -eq 0 ]; then [ -z "$out" ] || printf '%s\n' "$out"; return 0; fi
  [ -z "${{otto_undo:-}}" ] || "$otto_tc" qdisc del dev "$otto_undo" root >/dev/null 2>&1
  [ "$1" != "${{otto_tc:-}}" ] || {{ shift; set -- tc "$@"; }}
  printf '{_FAILED}%s\n%s\n' "$*" "$out"
  exit "$rc"
}}
otto_find_tc {" ".join(TC_DIRS)}
if [ -z "$otto_tc" ]; then
  [ -z "$otto_bb" ] || {{ printf '{_FAILED}tc\n{_BUSYBOX_TC}\n'; exit 127; }}
  printf '{_FAILED}tc\ntc: command not found\n'; exit 127
fi
"""
)

# The revert: detached from otto's session (setsid), so it outlives the shell and
# the connection. It writes its own pid; it reverts only while the state file
# still names it (a later apply owns the interface otherwise).
_REVERT = (
    'echo "pid=$$" >> "$1"; sleep {seconds}; '
    'if grep -qx "pid=$$" "$1"; then "$3" qdisc del dev "$2" root; rm -f "$1"; fi'
)


def _line(argv: Sequence[str]) -> str:
    """A command line for the scripts: every word quoted, ``tc`` the one found."""
    words = [shlex.quote(a) for a in argv]
    if argv and argv[0] == "tc":
        words[0] = '"$otto_tc"'
    return " ".join(words)


def apply_script(
    interface: str,
    commands: Sequence[Sequence[str]],
    *,
    settings: str,
    peer: str = "",
    expire: int | None,
) -> str:
    """The shell script that applies ``commands`` (tc lines) and schedules the revert."""
    iface = shlex.quote(check_interface(interface))
    lines = [
        _PRELUDE,
        'otto_run mkdir -p "$d"',
        f'f="$d"/{iface}',
        # A failure below leaves the link unimpaired, never impaired without its revert.
        f'[ ! -f "$f" ] || otto_undo={iface}',
        'otto_cancel "$f"',
    ]
    if commands and "replace" not in commands[0]:
        # Built from scratch (a root with classes): whatever was there goes first.
        lines.append(f'"$otto_tc" qdisc del dev {iface} root >/dev/null 2>&1 || :')
        lines.append(f"otto_undo={iface}")
    lines += [f"otto_run {_line(c)}" for c in commands]
    root = commands[0][commands[0].index("root") + 1 :] if commands else []
    kind = next((a for a in root if a in ("netem", "prio", "htb", "tbf")), "netem")
    record = {
        "interface": interface,
        "peer": peer,
        "root": kind,
        "settings": settings,
    }
    fields = "".join(f"{k}={v}\\n" for k, v in record.items())
    lines += [
        "now=$(date +%s)",
        f"printf '%b' {shlex.quote(fields)} > \"$f.new\"",
    ]
    if expire is None:
        lines.append("echo 'expires=' >> \"$f.new\"")
        lines.append('mv "$f.new" "$f"')
        return "\n".join(lines) + "\n"
    revert = _REVERT.format(seconds=int(expire))
    lines += [
        f'echo "expires=$((now + {int(expire)}))" >> "$f.new"',
        'mv "$f.new" "$f"',
        f'setsid sh -c {shlex.quote(revert)} "{_REVERT_TAG}:$f" "$f" {iface} "$otto_tc" '
        "</dev/null >/dev/null 2>&1 &",
        "i=0",
        "while ! grep -q '^pid=' \"$f\" 2>/dev/null && [ $i -lt 500 ]; do "
        "sleep 0.01 2>/dev/null || sleep 1; i=$((i + 1)); done",
        "grep -q '^pid=' \"$f\" || { "
        f"printf '{_FAILED}setsid sh -c ...\\nthe revert did not start; the impairment "
        "was removed\\n'; "
        f'"$otto_tc" qdisc del dev {iface} root >/dev/null 2>&1; rm -f "$f"; exit 1; }}',
    ]
    return "\n".join(lines) + "\n"


def clear_script(interface: str) -> str:
    """The shell script that cancels the revert and removes otto's qdisc from ``interface``."""
    iface = shlex.quote(check_interface(interface))
    return (
        "\n".join(
            [
                _PRELUDE,
                f'f="$d"/{iface}',
                'had=$(sed -n "s/^root=//p" "$f" 2>/dev/null)',
                'otto_cancel "$f"',
                f'otto_run "$otto_tc" qdisc show dev {iface}',
                f"root=$(\"$otto_tc\" qdisc show dev {iface} root | awk 'NR == 1 {{print $2}}')",
                'if [ -n "$had" ] && [ "$had" = "$root" ] || '
                f"\"$otto_tc\" qdisc show dev {iface} | grep -q ' netem '; then",
                f'  otto_run "$otto_tc" qdisc del dev {iface} root',
                "  echo otto-netem-cleared",
                "fi",
            ]
        )
        + "\n"
    )


LIST_SCRIPT = (
    "\n".join(
        [
            _PRELUDE,
            'echo "otto-netem-now=$(date +%s)"',
            'for f in "$d"/*; do',
            '  case "$f" in *.new) continue ;; esac',
            '  [ -f "$f" ] || continue',
            "  echo otto-netem-state",
            '  cat "$f"',
            "done",
            "echo otto-netem-tc",
            'otto_run "$otto_tc" qdisc show',
        ]
    )
    + "\n"
)

_QDISC_RE = re.compile(r"^qdisc (\S+) \S+ dev (\S+) (root|parent \S+)(?: refcnt \d+)?\s*(.*)$")


def parse_listing(text: str) -> list[ActiveImpairment]:
    """What ``LIST_SCRIPT`` printed -> the impairments in place, by interface."""
    now: int | None = None
    states: list[dict[str, str]] = []
    qdiscs: list[tuple[str, str, str, str]] = []
    section = ""
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if line.startswith("otto-netem-now="):
            value = line.partition("=")[2]
            now = int(value) if value.isdigit() else None
        elif line == "otto-netem-state":
            section = "state"
            states.append({})
        elif line == "otto-netem-tc":
            section = "tc"
        elif section == "state" and "=" in line:
            key, _, value = line.partition("=")
            states[-1].setdefault(key, value)
        elif section == "tc":
            found = _QDISC_RE.match(line.strip())
            if found is not None:
                kind, dev, where, rest = found.groups()
                qdiscs.append((kind, dev, where, rest.strip()))
    roots = {dev: kind for kind, dev, where, _ in qdiscs if where == "root"}
    netems = {dev: rest for kind, dev, _, rest in qdiscs if kind == "netem"}
    found_list: list[ActiveImpairment] = []
    seen: set[str] = set()
    for state in states:
        dev = state.get("interface", "")
        if not dev or roots.get(dev) != state.get("root") or dev in seen:
            continue  # reverted or replaced by someone else since
        seen.add(dev)
        expires = state.get("expires", "")
        left = None
        if expires.isdigit() and now is not None:
            left = float(max(0, int(expires) - now))
        found_list.append(
            ActiveImpairment(
                interface=dev,
                settings=_settings(netems.get(dev)) or state.get("settings", ""),
                peer=state.get("peer") or None,
                expires_in=left,
            )
        )
    for dev, rest in netems.items():
        if dev not in seen:
            found_list.append(ActiveImpairment(dev, _settings(rest), by_otto=False))
    return sorted(found_list, key=lambda a: a.interface)


def _settings(rest: str | None) -> str:
    """tc's netem line without its queue limit and seed: what it does to packets."""
    if rest is None:
        return ""
    text = re.sub(r"\blimit \d+\s*", "", rest)
    text = re.sub(r"\bseed \d+\s*", "", text)
    return " ".join(text.split())


# --- running them ---------------------------------------------------------------------

_sessions = itertools.count(1)


async def run_as_root(host: Host, script: str, *, timeout: float = SCRIPT_TIMEOUT) -> CommandStatus:
    """Run ``script`` with ``sh`` on ``host`` as root: directly for a root login, else in
    a session through sudo (the host's ``become_password`` answers its prompt)."""
    command = f"sh -c {shlex.quote(script)}"
    who = await host.oneshot("id -u", timeout=timeout)
    if not who.is_ok:
        raise OttoError(
            f"{host.name}: could not tell who otto logs in as (id -u): "
            f"{who.error or tail(who.output.strip())}"
        )
    if who.output.strip() == "0":
        return await host.oneshot(command, timeout=timeout)
    name = f"otto-netem-{next(_sessions)}"
    async with host.open_session(name, as_user="root") as session:
        result = await session.run(command, timeout=timeout)
    return result.statuses[0]


_HINTS = (
    ("qdisc kind is unknown", "the kernel has no sch_netem (load the module: modprobe sch_netem)"),
    ("Cannot find device", "no such interface on the host"),
    ("Operation not permitted", "tc needs root (CAP_NET_ADMIN) there"),
    ("command not found", "install iproute2 on the host"),
)


def _check(host: Host, what: str, status: CommandStatus) -> str:
    """The output of a script that succeeded; otherwise one ``OttoError`` saying what failed."""
    if status.is_ok:
        return status.output
    output = status.output.replace("\r\n", "\n")
    command, said = what, status.error or output.strip()
    marker = output.rfind(_FAILED)
    if marker >= 0:
        first, _, rest = output[marker + len(_FAILED) :].partition("\n")
        command, said = first.strip(), rest.strip()
    if said.strip() == _BUSYBOX_TC:
        raise OttoError(
            f"{host.name}: {what}: tc on {host.name} is busybox's applet, which has no netem; "
            "install iproute2"
        )
    hint = next((h for needle, h in _HINTS if needle in said), "")
    how = f"exit status {status.retcode}" if status.retcode >= 0 else "did not finish"
    message = f"{host.name}: {what}: `{command}` failed ({how}): {tail(said) or 'no output'}"
    raise OttoError(message + (f" ({hint})" if hint else ""))


async def apply_qdisc(
    host: Host,
    interface: str,
    commands: Sequence[Sequence[str]],
    *,
    settings: str,
    peer: str = "",
    expire: Value | None = DEFAULT_EXPIRE,
) -> None:
    """Put ``commands`` (tc lines building a root qdisc) on ``interface``, with the
    state file and the revert on the host, as ``impair`` does for netem."""
    seconds = None if expire is None else parse_duration(expire, "expire")
    script = apply_script(interface, commands, settings=settings, peer=peer, expire=seconds)
    _check(host, f"impair {interface}", await run_as_root(host, script))


async def impair(
    host: Host,
    interface: str,
    *,
    delay: Value | None = None,
    jitter: Value | None = None,
    loss: Value | None = None,
    rate: Value | None = None,
    corrupt: Value | None = None,
    duplicate: Value | None = None,
    reorder: Value | None = None,
    peer: str | None = None,
    expire: Value | None = DEFAULT_EXPIRE,
) -> Impairment:
    """See ``Host.impair``."""
    check_interface(interface)
    made = Impairment.build(
        delay=delay,
        jitter=jitter,
        loss=loss,
        rate=rate,
        corrupt=corrupt,
        duplicate=duplicate,
        reorder=reorder,
        peer=peer,
    )
    return await apply(host, interface, made, expire=expire)


async def apply(
    host: Host, interface: str, made: Impairment, *, expire: Value | None = DEFAULT_EXPIRE
) -> Impairment:
    """Put ``made`` (already checked) on ``interface``; see ``Host.impair``."""
    if expire is not None:
        parse_duration(expire, "expire")
    await apply_qdisc(
        host,
        interface,
        made.tc_commands(interface),
        settings=" ".join(made.netem_args()),
        peer="" if made.peer is None else str(made.peer),
        expire=expire,
    )
    return made


async def clear_impairment(host: Host, interface: str) -> bool:
    """See ``Host.clear_impairment``."""
    script = clear_script(interface)
    output = _check(host, f"clear impairment of {interface}", await run_as_root(host, script))
    return "otto-netem-cleared" in output


async def impairments(host: Host) -> list[ActiveImpairment]:
    """See ``Host.impairments``."""
    output = _check(host, "list impairments", await run_as_root(host, LIST_SCRIPT))
    return parse_listing(output)
