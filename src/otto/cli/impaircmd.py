"""``otto host NAME impair IFACE --delay 100ms --loss 2% --for 5m``, ``--clear``, ``--list``.

Puts tc netem on each host's interface (``host.impair``), removes it
(``host.clear_impairment``) or lists what is in place (``host.impairments``).
Every value is checked before any host is contacted. The host reverts an
impairment by itself when its time is up (``--for``), even if otto is gone.
Exit status: 0 when every host did it, 255 otherwise (2 for a bad value).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from otto.cli.exits import fail

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.hosts.netem import ActiveImpairment, Impairment
    from otto.lab import Lab

__all__ = ["clear_hosts", "host_impair", "impair_hosts", "list_hosts"]


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    whole = int(seconds)
    if whole >= 3600:
        return f"in {whole // 3600}h{whole % 3600 // 60:02d}m"
    if whole >= 60:
        return f"in {whole // 60}m{whole % 60:02d}s"
    return f"in {whole}s"


def _problem(name: str, exc: BaseException) -> str:
    from otto import redact

    text = redact.redact(str(exc))
    return text if text.startswith(f"{name}:") else f"{name}: {text}"


async def _each(
    lab: Lab, names: Sequence[str], act: Callable[[Host], Awaitable[object]]
) -> dict[str, object]:
    """``act`` on each host at once; its result or the exception, by host name."""
    from otto.errors import OttoError

    async def one(name: str) -> object:
        try:
            return await act(lab.host(name))
        except (OttoError, ValueError, OSError) as exc:
            return exc

    outcomes = await asyncio.gather(*(one(n) for n in names))
    return dict(zip(names, outcomes, strict=True))


def _finish(
    outcomes: dict[str, object],
    *,
    as_json: bool,
    line: Callable[[str, object], str],
    record: Callable[[str, object], list[dict[str, object]]],
) -> int:
    from otto.cli.output import EXIT_ERROR

    code = 0
    document: list[dict[str, object]] = []
    for name, outcome in outcomes.items():
        failed = isinstance(outcome, BaseException)
        code = EXIT_ERROR if failed else code
        if as_json:
            if isinstance(outcome, BaseException):
                document.append({"host": name, "error": _problem(name, outcome)})
            else:
                document.extend(record(name, outcome))
        elif isinstance(outcome, BaseException):
            sys.stderr.write(f"otto: {_problem(name, outcome)}\n")
        else:
            sys.stdout.write(line(name, outcome))
    if as_json:
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    sys.stdout.flush()
    return code


def impair_hosts(
    lab: Lab,
    names: Sequence[str],
    interface: str,
    made: Impairment,
    expire: int | None,
    *,
    as_json: bool = False,
) -> int:
    """Put ``made`` on ``interface`` of each host; the exit status (0 or 255)."""
    from otto.cli.interrupt import run_interruptible

    async def act(host: Host) -> object:
        from otto.hosts import netem

        return await netem.apply(host, interface, made, expire=expire)

    def line(name: str, applied: object) -> str:
        ends = "until --clear" if expire is None else f"the host reverts it {_when(expire)}"
        return f"{name}: {interface}: {applied} ({ends})\n"

    def record(name: str, applied: object) -> list[dict[str, object]]:
        peer = made.peer
        return [
            {
                "host": name,
                "interface": interface,
                "settings": " ".join(made.netem_args()),
                "peer": None if peer is None else str(peer),
                "expires_in": expire,
            }
        ]

    async def main() -> int:
        outcomes = await _each(lab, names, act)
        return _finish(outcomes, as_json=as_json, line=line, record=record)

    return run_interruptible(main(), lab)


def clear_hosts(lab: Lab, names: Sequence[str], interface: str, *, as_json: bool = False) -> int:
    """Remove otto's impairment of ``interface`` on each host; the exit status."""
    from otto.cli.interrupt import run_interruptible

    async def act(host: Host) -> object:
        return await host.clear_impairment(interface)

    def line(name: str, cleared: object) -> str:
        return f"{name}: {interface}: {'cleared' if cleared else 'no impairment to clear'}\n"

    def record(name: str, cleared: object) -> list[dict[str, object]]:
        return [{"host": name, "interface": interface, "cleared": bool(cleared)}]

    async def main() -> int:
        outcomes = await _each(lab, names, act)
        return _finish(outcomes, as_json=as_json, line=line, record=record)

    return run_interruptible(main(), lab)


def list_hosts(lab: Lab, names: Sequence[str], *, as_json: bool = False) -> int:
    """Print the impairments in place on each host, and when each reverts."""
    from otto.cli.interrupt import run_interruptible

    async def act(host: Host) -> object:
        return await host.impairments()

    def active(outcome: object) -> list[ActiveImpairment]:
        assert isinstance(outcome, list)
        return outcome

    def line(name: str, outcome: object) -> str:
        found = active(outcome)
        if not found:
            return f"{name}: no impairment\n"
        text = ""
        for one in found:
            peer = f" to {one.peer}" if one.peer else ""
            ends = _when(one.expires_in) if one.by_otto else "never (not otto's)"
            text += f"{name}: {one.interface}: {one.settings}{peer} (reverts {ends})\n"
        return text

    def record(name: str, outcome: object) -> list[dict[str, object]]:
        return [{"host": name, **one.as_dict()} for one in active(outcome)]

    async def main() -> int:
        outcomes = await _each(lab, names, act)
        return _finish(outcomes, as_json=as_json, line=line, record=record)

    return run_interruptible(main(), lab)


def host_impair(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
    interface: Annotated[
        str | None,
        typer.Argument(
            metavar="IFACE",
            help="The host's interface whose outgoing packets are impaired.",
            show_default=False,
        ),
    ] = None,
    delay: Annotated[
        str | None,
        typer.Option("--delay", metavar="TIME", help="Added delay: 100ms, 250us, 1s."),
    ] = None,
    jitter: Annotated[
        str | None,
        typer.Option("--jitter", metavar="TIME", help="Variation of the delay: 10ms."),
    ] = None,
    loss: Annotated[
        str | None, typer.Option("--loss", metavar="PERCENT", help="Packets dropped: 2%.")
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", metavar="RATE", help="Throughput cap: 1mbit, 500kbit."),
    ] = None,
    corrupt: Annotated[
        str | None,
        typer.Option("--corrupt", metavar="PERCENT", help="Packets with a bit flipped: 0.1%."),
    ] = None,
    duplicate: Annotated[
        str | None, typer.Option("--duplicate", metavar="PERCENT", help="Packets sent twice.")
    ] = None,
    reorder: Annotated[
        str | None,
        typer.Option(
            "--reorder", metavar="PERCENT", help="Packets sent at once, ahead of the delayed."
        ),
    ] = None,
    peer: Annotated[
        str | None,
        typer.Option(
            "--peer",
            metavar="ADDR[:PORT]",
            help="Only packets to this address (or network), and port: the rest pass unharmed.",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        str,
        typer.Option(
            "--for",
            metavar="DURATION",
            help="The host reverts it by itself after this long (30s, 5m, 1h), even if "
            "otto is gone; 0: only --clear does.",
        ),
    ] = "5m",
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove otto's impairment of IFACE.")
    ] = False,
    listing: Annotated[
        bool,
        typer.Option("--list", help="List the impairments in place and when each reverts."),
    ] = False,
) -> None:
    """Impair a link with tc netem (delay, loss, rate...), remove it, or list what is on."""
    from otto.cli.guard import guard
    from otto.cli.hostcmds import apply_overrides, resolve_names
    from otto.errors import LabError
    from otto.hosts.netem import Impairment, check_interface, parse_duration
    from otto.lab import current_lab

    root = ctx.find_root().params
    as_json = bool(root.get("json_output"))
    values = (delay, jitter, loss, rate, corrupt, duplicate, reorder, peer)
    if clear and listing:
        fail("impair takes --clear or --list, not both")
    if (clear or listing) and any(v is not None for v in values):
        fail(f"impair {'--clear' if clear else '--list'} takes no impairment values")
    if interface is None and not listing:
        fail("impair needs IFACE (the interface), or --list")
    made: Impairment | None = None
    expire: int | None = None
    try:
        if interface is not None:
            check_interface(interface)
        if not (clear or listing):
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
            expire = None if duration.strip() in ("0", "0s") else parse_duration(duration, "--for")
    except ValueError as exc:
        fail(str(exc))
    if root.get("dry_run"):
        fail("--dry-run: impair has no dry run (it would contact the hosts)")
    assert ctx.parent is not None
    params = ctx.parent.params
    lab = current_lab()
    try:
        names = resolve_names(lab, str(params["name"]))
        apply_overrides(lab, names, {f: params.get(f) for f in ("user", "port", "hop", "term")})
    except LabError as exc:
        fail(str(exc))
    guard(lab, names, force=bool(root.get("force")))
    if listing:
        raise typer.Exit(list_hosts(lab, names, as_json=as_json))
    assert interface is not None
    if clear:
        raise typer.Exit(clear_hosts(lab, names, interface, as_json=as_json))
    assert made is not None
    raise typer.Exit(impair_hosts(lab, names, interface, made, expire, as_json=as_json))
