"""The shell probe's footprint: builtin reads, df every N rounds, rounds' measured cost."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from otto.cli.monitorcmd import cost_lines
from otto.monitor import Collector, MonitorTarget, gauge_parser
from otto.monitor.parsers import DEFAULT_PARSERS
from otto.monitor.probe import CostTally, RoundCost
from otto.monitor.shell_probe import (
    DF_COMMAND,
    ShellProbe,
    _cost_marks,
    builtin_path,
    monitor_script,
    round_processes,
    split_output,
)
from otto.periodic import FakeClock
from otto.result import CommandStatus, Status
from tests.fakes import FakeHost

SEP = "__otto_test_sep__"
SHELLS = [["bash"], ["dash"], ["busybox", "sh"]]

TRICKY = {
    "blanks": "  leading blanks\n\ttab\ttrailing  \n\n",
    "backslashes": "a\\nb \\\\ c\\\n",
    "no-newline": "first\nlast line without newline",
    "empty": "",
    "options": "-n\n-e\n--\n%s %d %%\n",
    "only-newlines": "\n\n\n",
}


def installed(shell: list[str]) -> bool:
    return shutil.which(shell[0]) is not None


def run_script(shell: list[str], script: str, arg: str) -> str:
    ran = subprocess.run(
        [*shell, "-c", f"{script}\n__t_m {arg}"], capture_output=True, text=True, check=True
    )
    return ran.stdout


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_builtin_reads_print_each_file_byte_for_byte(shell: list[str], tmp_path: Path) -> None:
    if not installed(shell):
        pytest.skip(f"{shell[0]} is not installed")
    files = []
    for name, text in TRICKY.items():
        path = tmp_path / name
        path.write_text(text)
        files.append(path)
    sections = [(f"cat {p}", False) for p in files]
    out = run_script(shell, monitor_script(sections, SEP, "__t_m"), "0")
    got = split_output(out, SEP, len(files))
    assert got == [(0, text) for text in TRICKY.values()]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_a_missing_file_or_program_loses_only_its_section(shell: list[str], tmp_path: Path) -> None:
    if not installed(shell):
        pytest.skip(f"{shell[0]} is not installed")
    present = tmp_path / "present"
    present.write_text("here\n")
    sections = [
        (f"cat {tmp_path}/missing", False),
        (f"cat {present}", False),
        ("no_such_program_otto", False),
        ("echo sub; cd /; exit 4", False),
        ("pwd", False),
    ]
    out = run_script(shell, monitor_script(sections, SEP, "__t_m"), "1")
    assert split_output(out, SEP, len(sections)) == [
        (1, ""),
        (0, "here\n"),
        (127, ""),
        (4, "sub\n"),
        (0, f"{Path.cwd()}\n"),
    ]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_sometimes_sections_run_only_when_asked(shell: list[str]) -> None:
    if not installed(shell):
        pytest.skip(f"{shell[0]} is not installed")
    sections = [("echo always", False), ("echo sometimes", True), ("echo last", False)]
    script = monitor_script(sections, SEP, "__t_m")
    assert split_output(run_script(shell, script, "1"), SEP, 3) == [
        (0, "always\n"),
        (0, "sometimes\n"),
        (0, "last\n"),
    ]
    assert split_output(run_script(shell, script, "0"), SEP, 3) == [
        (0, "always\n"),
        (None, ""),
        (0, "last\n"),
    ]


@pytest.mark.parametrize("shell", SHELLS, ids=lambda s: s[0])
def test_the_round_prints_its_cost_lines_first_and_last(shell: list[str]) -> None:
    if not installed(shell) or not Path("/proc/loadavg").exists():
        pytest.skip(f"{shell[0]} is not installed, or no /proc")
    out = run_script(shell, monitor_script([("true", False)], SEP, "__t_m"), "1")
    lines = re.findall(rf"^{SEP} c (\d+)$", out, re.MULTILINE)
    assert len(lines) == 2
    # The subshell of `true` took at least one PID in between.
    assert int(lines[1]) > int(lines[0])
    assert out.startswith(f"\n{SEP} c ")


def test_only_plain_cat_commands_are_read_by_builtins() -> None:
    assert builtin_path("cat /proc/stat") == "/proc/stat"
    assert builtin_path("cat /sys/class/thermal/thermal_zone0/temp") == (
        "/sys/class/thermal/thermal_zone0/temp"
    )
    for command in (
        "cat /proc/stat /proc/meminfo",
        "cat relative/path",
        "cat '/tmp/a b'",
        "cat /tmp/$(reboot)",
        "cat /tmp/x; reboot",
        "cat -A /proc/stat",
        "df -P",
    ):
        assert builtin_path(command) is None, command


def test_no_default_command_but_df_starts_a_process() -> None:
    script = monitor_script([(c, c == DF_COMMAND) for c in DEFAULT_PARSERS], SEP, "__t_m")
    body = script.split("__t_m() {", 1)[1]
    assert body.count("( ") == 1 and "( df -P\n)" in body
    assert "cat " not in body


def test_hostile_separator_or_name_is_refused() -> None:
    with pytest.raises(ValueError, match="plain shell word"):
        monitor_script([("true", False)], "sep; reboot", "__t_m")
    with pytest.raises(ValueError, match="plain shell word"):
        monitor_script([("true", False)], SEP, "f$(x)")


def test_round_processes_is_the_last_pid_moving_on() -> None:
    assert round_processes([50, 51]) == 1
    assert round_processes([50, 50]) == 0
    assert round_processes([32767, 301]) is None  # the PIDs wrapped around
    assert round_processes([None, 51]) is None
    assert round_processes([50]) is None
    assert round_processes([]) is None


def test_cost_marks_are_read_at_both_ends_only() -> None:
    text = f"\n{SEP} c 40\nbody\n{SEP} c 99\nmore\n\n{SEP} c 42"
    assert _cost_marks(text, SEP) == [40, 42]
    assert _cost_marks(f"\n{SEP} c \n", SEP) == [None]
    assert _cost_marks("no marks", SEP) == []


def test_cost_tally_sums_rounds_and_takes_the_slowest_probe() -> None:
    tally = CostTally()
    tally.add(())
    assert tally.rounds == 0 and tally.last is None
    tally.add((RoundCost(0.002, 4000, 1), RoundCost(0.005, 300, None)))
    assert tally.last == RoundCost(0.005, 4300, 1)
    before = tally.copy()
    tally.add((RoundCost(0.001, 1000, 0),))
    tally.add((RoundCost(0.003, 1000, None),))
    window = tally.since(before)
    assert (window.rounds, window.received, window.processes, window.counted) == (2, 2000, 0, 1)
    assert window.seconds == pytest.approx(0.004)
    assert tally.most_processes == 1 and tally.processes == 1 and tally.counted == 2


def test_cost_lines_say_per_host_what_a_round_cost() -> None:
    tally = CostTally()
    for processes in (1, 0, 0, 0):
        tally.add((RoundCost(0.004, 5000, processes),))
    lines = cost_lines({"h1": tally, "h2": CostTally()}, {})
    assert lines == [
        "cost h1: 4 rounds, per round 4.0 ms, 5.0 kB, 0.25 processes started "
        "(most in one round: 1)",
        "cost h2: no answered round",
    ]


# --- the probe's rounds on a fake shell ---------------------------------------------------

_CALL = re.compile(r"(\S+) ([01])\Z")


class Shell:
    """Answers the probe's round like a shell: the definition is remembered per session."""

    def __init__(self, forget_after: int | None = None) -> None:
        self.script = ""
        self.calls: list[str] = []
        self.forget_after = forget_after

    def __call__(self, cmds: str) -> CommandStatus:
        if "() {" in cmds:
            self.script = cmds
        if self.forget_after is not None and len(self.calls) == self.forget_after:
            self.script = ""  # the shell lost the function (replaced by another one)
        call = _CALL.search(cmds)
        assert call is not None
        self.calls.append(call.group(2) + ("d" if "() {" in cmds else ""))
        if not self.script:
            return CommandStatus(cmds, f"sh: {call.group(1)}: not found", Status.Success, 0)
        found = re.search(r"\$\{__otto_n\}(\w+) \$1 \$2", self.script)
        assert found is not None
        sep = found.group(1)
        out = [f"\n{sep} c 10\n"]
        sections = re.findall(
            r"(if \[ \"\$1\" = 1 \]; then )?(?:\S+_f; )?(?:\( )?echo (\w+)", self.script
        )
        for i, (sometimes, word) in enumerate(sections):
            if sometimes and call.group(2) == "0":
                continue
            out.append(f"{word}\n\n{sep} {i} 0\n")
        out.append(f"\n{sep} c {11 if call.group(2) == '1' else 10}\n")
        return CommandStatus(cmds, "".join(out).removesuffix("\n"), Status.Success, 0)


def probe_on(shell: Shell, df_every: int) -> tuple[ShellProbe, FakeHost]:
    clock = FakeClock(start=10.0)
    host = FakeHost(clock, shell, name="h")
    commands = {
        "echo mem": gauge_parser(lambda text: {"mem": float(len(text))}),
        DF_COMMAND: gauge_parser(lambda text: {"disk": 42.0}),
    }
    # The fake shell echoes each section's own word; df is "echo df" in disguise.
    probe = ShellProbe(
        host, commands, separator=SEP, session_name="m", clock=clock, df_every=df_every
    )
    probe.script = probe.script.replace("( df -P", "( echo df")
    return probe, host


async def test_the_function_is_defined_once_and_df_runs_every_nth_round() -> None:
    shell = Shell()
    probe, _ = probe_on(shell, df_every=3)
    seen = []
    for index in range(7):
        outcome = await probe.poll(index, 1000.0)
        assert outcome.up and outcome.error == ""
        # df's last reading stands in on the rounds without it.
        assert outcome.metrics["disk"] == 42.0
        assert outcome.cost is not None
        seen.append(outcome.cost.processes)
    assert shell.calls == ["1d", "0", "0", "1", "0", "0", "1"]
    assert seen == [1, 0, 0, 1, 0, 0, 1]


async def test_a_shell_that_lost_the_function_gets_it_again() -> None:
    shell = Shell(forget_after=2)
    probe, _ = probe_on(shell, df_every=1)
    outcomes = [await probe.poll(index, 1000.0) for index in range(4)]
    assert [o.up for o in outcomes] == [True, True, False, True]
    assert "no output" in outcomes[2].error
    assert shell.calls == ["1d", "1", "1", "1d"]


async def test_a_new_session_defines_the_function_again() -> None:
    shell = Shell()
    probe, host = probe_on(shell, df_every=2)
    await probe.poll(0, 1000.0)
    host.plan = ["raise"]
    assert not (await probe.poll(1, 1000.0)).up
    await probe.poll(2, 1000.0)
    assert shell.calls == ["1d", "1d"]
    assert len(host.sessions) == 2


def test_df_every_is_checked_and_a_target_may_set_its_own() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="df_every"):
        Collector([FakeHost(clock, name="h")], df_every=0, clock=clock)
    own = MonitorTarget(FakeHost(clock, name="own"), df_every=5)
    collector = Collector([own, FakeHost(clock, name="other")], df_every=2, clock=clock)
    everies = {
        name: [p.df_every for p in track.probes if isinstance(p, ShellProbe)]
        for name, track in collector._tracks.items()
    }
    assert everies == {"own": [5], "other": [2]}


async def test_the_collector_reports_each_rounds_cost() -> None:
    clock = FakeClock(start=10.0)
    host = FakeHost(clock, Shell(), name="h")
    mem = gauge_parser(lambda text: {"mem": float(len(text))})
    target = MonitorTarget(host, parsers={"echo mem": mem}, replace_defaults=True)
    collector = Collector([target], interval=1.0, clock=clock)
    stream = collector.subscribe()
    async with collector:
        update = await anext(stream)
        while update["type"] != "round":
            update = await anext(stream)
        polled = await collector.poll_round()
    cost = polled["h"].cost
    assert cost is not None and cost.processes == 1 and cost.received > 0
    assert update["costs"] == {"h": {"seconds": 0.0, "received": cost.received, "processes": 1}}
    tally = collector.round_costs()["h"]
    assert (tally.rounds, tally.processes, tally.counted) == (2, 2, 2)
    assert tally.received == 2 * cost.received and tally.last == cost
