"""``otto -n ...`` (``--dry-run``): what a command would do, with no host contacted.

- ``host NAMES run/put/get``: per host, how it would be reached (term,
  ``user@address:port``, the hops, outermost first), the reservation check,
  and each command or transfer;
- ``host NAMES power/reboot``: the power steps (commands and their controller, SNMP
  SETs, HTTP requests; a status is not read);
- ``run INSTRUCTION``: the instruction runs, on ``DryRunHost`` objects that
  print what they would do (see ``otto.hosts.dryrun``), then the hosts it
  used are checked for reservations;
- ``test``: pytest collects the tests (``--collect-only``), and each test is
  listed with the lab hosts it would run on, or why it would be skipped (it
  ``needs`` features no lab host has; with ``--strict-lab``, an error).

Exit status: 0 when the plan is valid; otherwise non-zero with the reason
(2 for an unknown host, a bad lab or a bad argument; 3 when a host is held
by someone else, but for ``test --wait-hosts``, which says it would wait for it;
pytest's status when collection fails).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from typer import _click as click

from otto.cli.exits import fail
from otto.errors import LabError, OttoError
from otto.lab import Lab

if TYPE_CHECKING:
    import pytest

    from otto.hosts import Host
    from otto.hosts.power import PowerAction
    from otto.instructions import Instruction
    from otto.lab import HostSpec

__all__ = [
    "DryRunLab",
    "connection",
    "is_dry_run",
    "is_forced",
    "plan_commands",
    "plan_power",
    "plan_reboot",
    "plan_tests",
    "plan_transfer",
    "run_instruction",
]

_DEFAULT_PORTS = {"ssh": 22, "telnet": 23}
_HEADER = "otto: dry run: no host is contacted, nothing is run or copied"


def is_dry_run(ctx: click.Context) -> bool:
    """Whether ``otto -n`` (``--dry-run``) was given."""
    return bool(ctx.find_root().params.get("dry_run"))


def is_forced(ctx: click.Context) -> bool:
    """Whether ``otto --force`` (act on hosts someone else holds) was given."""
    return bool(ctx.find_root().params.get("force"))


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _shown(text: str) -> str:
    """A command or path on one line: as it is, or as a Python literal if it holds controls."""
    return text if text.isprintable() else repr(text)


# --- how a host is reached ----------------------------------------------------------------


def _where(spec: HostSpec) -> str:
    if spec.term == "local":
        return "local (this machine)"
    if spec.term == "serial":
        baud = f" at {spec.baud} baud" if spec.baud is not None else ""
        return f"serial {spec.address}{baud}"
    if spec.term == "console":
        protocol = spec.console_protocol or "telnet"
        user = f" as {spec.user}" if spec.user else ""
        return f"console {spec.address} ({protocol}){user}"
    port = spec.port if spec.port is not None else _DEFAULT_PORTS[spec.term]
    return f"{spec.term} {spec.user}@{spec.address}:{port}"


def connection(lab: Lab, name: str) -> str:
    """How ``name`` would be reached: ``ssh user@address:22 via gw -> bastion``.

    Hops are listed in the order the connection goes through them (outermost first).
    """
    spec = lab.spec(name)
    chain: list[str] = []
    hop = spec.hop
    while hop is not None and hop not in chain:
        chain.insert(0, hop)
        hop = lab.spec(hop).hop
    via = f" via {' -> '.join(chain)}" if chain else ""
    return _where(spec) + via


# --- the reservation check ----------------------------------------------------------------


def _check_reservations(lab: Lab, names: Sequence[str], force: bool) -> dict[str, str]:
    """The reservation check of ``names``, by host; exits 3 if one is held by someone else.

    Lines the check gives that name no host of ``names`` are printed at once.
    """
    if not names:
        return {}
    from otto.cli.guard import guard

    found: dict[str, str] = {}
    for line in guard(lab, names, force=force, dry_run=True):
        name, _, text = line.partition(": ")
        if name in names and text and name not in found:
            found[name] = text
        else:
            _say(line)
    return found


def _check_waits(lab: Lab, names: Sequence[str], wait: float) -> dict[str, str]:
    """The reservation check of a run with ``--wait-hosts``: a host someone else holds
    would be waited for in the queue (up to ``wait`` seconds), not refused."""
    if not names:
        return {}
    from otto.cli.guard import EXIT_STORE, leases_of
    from otto.errors import ReservationStoreError
    from otto.reservations import format_time, holder_identity, open_store
    from otto.reservations.base import printable
    from otto.reservations.queue import span

    try:
        leases = {lease.host: lease for lease in leases_of(open_store(lab=lab), names)}
    except ReservationStoreError as exc:
        fail(str(exc), code=EXIT_STORE)
    me = holder_identity()
    found: dict[str, str] = {}
    for name in names:
        lease = leases.get(name)
        if lease is None:
            found[name] = "not reserved"
        elif lease.holder == me:
            found[name] = f"reserved by you until {format_time(lease.until)}"
        else:
            found[name] = (
                f"reserved by {printable(lease.holder)} until {format_time(lease.until)}; "
                f"would wait up to {span(wait)} in the queue for it (--wait-hosts)"
            )
    return found


def _say_reservation(name: str, checks: dict[str, str]) -> None:
    if name in checks:
        _say(f"[{name}] reservation: {checks[name]}")


# --- host NAMES run / put / get -----------------------------------------------------------


def plan_commands(
    lab: Lab,
    names: Sequence[str],
    commands: Sequence[str],
    timeout: float | None,
    *,
    force: bool = False,
) -> int:
    """Print what ``otto host NAMES run`` would do; 0 (a bad plan exits before)."""
    _say(_HEADER)
    checks = _check_reservations(lab, names, force)
    limit = f"  (timeout {timeout:g}s)" if timeout is not None else "  (no timeout)"
    for name in names:
        _say(f"[{name}] would connect: {connection(lab, name)}")
        _say_reservation(name, checks)
        for command in commands:
            _say(f"[{name}] would run: {_shown(command)}{limit}")
    if len(commands) > 1:
        _say("otto: dry run: on each host the commands would run in order, up to the first failure")
    return 0


def plan_transfer(
    lab: Lab,
    names: Sequence[str],
    verb: str,
    sources: Sequence[str],
    dest: str,
    *,
    force: bool = False,
) -> int:
    """Print what ``otto host NAMES put|get`` would copy; 2 with the reason if it cannot."""
    if verb == "put":
        missing = [s for s in sources if not os.path.lexists(s)]
        if missing:
            fail(f"put: no such local file or folder: {missing[0]}")
    else:
        local = Path(dest)
        if local.exists() and not local.is_dir():
            fail(f"get: {dest} exists and is not a folder")
    _say(_HEADER)
    checks = _check_reservations(lab, names, force)
    for name in names:
        _say(f"[{name}] would connect: {connection(lab, name)}")
        _say_reservation(name, checks)
        for source in sources:
            if verb == "put":
                _say(f"[{name}] would put: {_shown(source)} -> {name}:{_shown(dest)}")
            else:
                target = Path(dest) / name if len(names) > 1 else Path(dest)
                _say(f"[{name}] would get: {name}:{_shown(source)} -> {_shown(str(target))}")
    return 0


# --- the dry-run lab ----------------------------------------------------------------------


class DryRunLab(Lab):
    """A lab whose host objects are ``DryRunHost``: they print what they would do.

    ``used`` lists the hosts built so far (the hosts an instruction asked for).
    """

    used: list[str]

    @classmethod
    def of(cls, lab: Lab) -> DryRunLab:
        """The same lab (hosts, files, settings), building dry-run hosts."""
        dry = cls.__new__(cls)
        dry.__dict__.update(vars(lab))
        dry._hosts = {}
        dry.used = []
        return dry

    def _build(self, spec: HostSpec) -> Host:
        from otto.hosts.dryrun import DryRunHost

        self.used.append(spec.name)
        return DryRunHost(
            spec.name, reaches=connection(self, spec.name), say=_say, power=self._power(spec)
        )


def _make_current(lab: Lab) -> None:
    from otto.lab import use_lab

    use_lab(lab)


# --- host NAMES power / reboot ------------------------------------------------------------


def _each(
    lab: Lab, names: Sequence[str], act: Callable[[Host], Awaitable[None]], force: bool
) -> int:
    import asyncio

    dry = DryRunLab.of(lab)
    _say(_HEADER)
    checks = _check_reservations(lab, names, force)

    async def main() -> int:
        code = 0
        for name in names:
            _say_reservation(name, checks)
            try:
                await act(dry.host(name))
            except (OttoError, ValueError) as exc:
                text = str(exc)
                sys.stderr.write(
                    f"otto: error: {text if text.startswith(name) else f'{name}: {text}'}\n"
                )
                code = 2
        return code

    return asyncio.run(main())


def plan_power(lab: Lab, names: Sequence[str], action: PowerAction, *, force: bool = False) -> int:
    """Print the power commands ``otto host NAMES power`` would run, and where."""

    async def act(host: Host) -> None:
        await host.power(action)

    return _each(lab, names, act, force)


def plan_reboot(
    lab: Lab,
    names: Sequence[str],
    *,
    hard: bool,
    wait: bool,
    timeout: float,
    force: bool = False,
) -> int:
    """Print how ``otto host NAMES reboot`` would restart each host."""

    async def act(host: Host) -> None:
        await host.reboot(hard=hard, wait=wait, timeout=timeout)

    return _each(lab, names, act, force)


# --- run INSTRUCTION ----------------------------------------------------------------------


def run_instruction(
    instruction: Instruction, options: dict[str, object], *, force: bool = False
) -> int:
    """Run ``instruction`` on dry-run hosts, then check the reservations of those it used.

    Returns 0 when it ran to its end, or stopped where a dry run cannot go on
    (waiting for output); an unknown host is a usage error (2); another error
    of otto's is 1.
    """
    from otto.cli.interrupt import run_interruptible
    from otto.hosts.dryrun import DryRunStop
    from otto.lab import current_lab

    dry = DryRunLab.of(current_lab())
    _make_current(dry)
    _say(_HEADER)
    _say(f"otto: dry run of instruction {instruction.name!r}: its hosts say what they would do")

    async def main() -> object:
        return await instruction(**options)

    stopped = ""
    try:
        run_interruptible(main(), dry)
    except DryRunStop as exc:
        stopped = str(exc)
    except LabError as exc:
        fail(f"instruction {instruction.name!r}: {exc}")
    except OttoError as exc:
        fail(f"instruction {instruction.name!r}: {exc}", code=1)
    except Exception as exc:
        fail(
            f"instruction {instruction.name!r} raised {type(exc).__name__}: {exc} (in a dry "
            "run every command's result is Status.NotRun, with no output: nothing ran)",
            code=1,
            cause=exc,
        )
    used = list(dict.fromkeys(dry.used))
    checks = _check_reservations(dry, used, force)
    for name in used:
        _say_reservation(name, checks)
    if stopped:
        _say(f"otto: dry run stopped here: {stopped}")
    _say(f"otto: dry run of {instruction.name!r} done; hosts used: {', '.join(used) or 'none'}")
    return 0


# --- test ----------------------------------------------------------------------------------


class _Plan:
    """A pytest plugin that notes, after collection, the lab hosts each test would use."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.rows: list[tuple[str, str]] = []
        self.hosts: list[str] = []
        self.skipped = 0
        self.strict = False
        self.wait: float | None = None
        """``--wait-hosts``: held hosts would be waited for, not refused."""

    def pytest_configure(self, config: pytest.Config) -> None:
        self.wait = config.getoption("otto_wait_hosts", None)

    def _note(self, names: Sequence[str]) -> None:
        self.hosts.extend(n for n in names if n in self.lab and n not in self.hosts)

    def _pick(self, item: pytest.Item, one: bool) -> tuple[list[str], str]:
        """The hosts the plugin would give a test (as its ``_pick``), and how to show them."""
        from otto.lab import DEFAULT_HOST_NAME
        from otto.testing.marks import hosts_mark
        from otto.testing.needs import needed
        from otto.testing.plugin import _mark_pool

        lab = self.lab
        mark = hosts_mark(item, one=one)
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("host") if callspec is not None else None
        if mark is None:
            if not one or len(lab) == 1:
                return lab.names, ", ".join(lab.names)
            if DEFAULT_HOST_NAME in lab:
                return [DEFAULT_HOST_NAME], DEFAULT_HOST_NAME
            return [], "local (this machine, outside the lab)"
        if isinstance(param, str):
            return [param], param
        pool, count = _mark_pool(lab, mark, features=needed(item))
        if count is not None:
            return pool, f"any {count} free of: {', '.join(pool)}"
        names = pool[:1] if one else pool
        return names, ", ".join(names)

    def _which(self, item: pytest.Item) -> str:
        from otto.testing.plugin import OTTO_FIXTURES

        info = getattr(item, "_fixtureinfo", None)
        fixtures = set(getattr(item, "fixturenames", ()))
        used: set[str] = set()
        for name in OTTO_FIXTURES & fixtures:
            defs = info.name2fixturedefs.get(name) if info is not None else None
            if defs and getattr(defs[-1].func, "__module__", "") == "otto.testing.plugin":
                used.add(name)
        picks: list[tuple[list[str], str]] = []
        if "host" in used:
            picks.append(self._pick(item, one=True))
        if "hosts" in used:
            picks.append(self._pick(item, one=False))
        if "monitor" in used:
            marked = item.get_closest_marker("hosts") is not None
            picks.append(self._pick(item, one="host" in fixtures or not marked))
        if not picks and "lab" in used:
            picks.append((self.lab.names, f"any of the lab: {', '.join(self.lab.names)}"))
        if not picks:
            return "(no lab host)"
        shown: list[str] = []
        for names, text in picks:
            self._note(names)
            if text not in shown:
                shown.append(text)
        return "; ".join(shown)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from otto.testing.needs import unfit

        self.strict = bool(getattr(session.config.option, "otto_strict_lab", False))
        for item in session.items:
            reason = unfit(item)
            if reason is not None:
                self.skipped += 1
                shown = "error (--strict-lab)" if self.strict else "skipped"
                self.rows.append((item.nodeid, f"{shown}: {reason}"))
                continue
            self.rows.append((item.nodeid, self._which(item)))


def _no_workers() -> list[str]:
    """``-n 0`` when pytest-xdist is there: workers would collect, and the plan see nothing."""
    import importlib.util

    return ["-n", "0"] if importlib.util.find_spec("xdist") is not None else []


def plan_tests(
    pytest_args: Sequence[str],
    labs: Sequence[str],
    *,
    force: bool = False,
    iterations: int | None = None,
    duration: float | None = None,
) -> int:
    """Collect the tests with pytest and print which lab hosts each would run on.

    ``iterations`` and ``duration`` (stability runs) are only said in the summary.
    """
    try:
        import pytest
    except ModuleNotFoundError:
        fail("`otto test` runs pytest, which is not installed: pip install 'otto-shell[test]'")
    from otto.lab import current_lab

    lab = current_lab()
    plan = _Plan(lab)
    captured = io.StringIO()
    # The run folder the plugin makes when a lab is given lives only as long as this call.
    with tempfile.TemporaryDirectory(prefix="otto-dry-run-") as scratch:
        # One token: a separate folder argument would count in pytest's rootdir as a test
        # path would, and the tests' node ids (a shard's split) would not be the run's.
        argv = [f"--otto-output={scratch}"]
        for file in labs:
            argv += ["--lab", file]
        argv += ["--collect-only", "-q", "-p", "no:cacheprovider", *pytest_args, *_no_workers()]
        with contextlib.redirect_stdout(captured):
            code = int(pytest.main(argv, plugins=[plan]))
    if code != 0:
        sys.stdout.write(captured.getvalue())
        sys.stderr.write(
            f"otto: error: dry run: pytest could not collect the tests (status {code})\n"
        )
        return code
    _say(_HEADER)
    if plan.wait is not None and not force:
        checks = _check_waits(lab, plan.hosts, plan.wait)
    else:
        checks = _check_reservations(lab, plan.hosts, force)
    width = max((len(nodeid) for nodeid, _ in plan.rows), default=0)
    for nodeid, where in plan.rows:
        _say(f"{nodeid.ljust(width)}  {where}")
    for name in plan.hosts:
        _say(f"[{name}] would connect: {connection(lab, name)}")
        _say_reservation(name, checks)
    count = len(plan.rows) - plan.skipped
    repeat = ""
    if iterations is not None and iterations > 1:
        repeat = f", each {iterations} times"
    if duration is not None:
        repeat += f", again and again for {duration:g}s"
    if plan.skipped:
        fate = "would be errors (--strict-lab)" if plan.strict else "would be skipped"
        repeat += f"; {plan.skipped} {fate}: the lab has no host with the features they need"
    _say(f"otto: dry run: {count} test{'s' if count != 1 else ''} would run{repeat}")
    return 0
