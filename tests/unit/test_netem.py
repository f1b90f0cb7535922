"""Link impairment without a host: values, interface names, tc lines, the scripts' shell
logic (run by the local sh) and reading a listing back."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from otto.errors import OttoError
from otto.hosts import netem
from otto.hosts.netem import (
    Impairment,
    Peer,
    check_interface,
    parse_duration,
    parse_percent,
    parse_rate,
    parse_time,
)
from otto.result import CommandStatus

HOSTILE = [
    "$(reboot)",
    "`id`",
    "up0;reboot",
    "a'b",
    'a"b',
    "a\nb",
    "a b",
    "-x",
    "--help",
    ".hidden",
    "..",
    "a/b",
    "",
    "x" * 16,
    "eth0\x00",
]


@pytest.mark.parametrize(
    ("text", "micros"),
    [("100ms", 100_000), ("250us", 250), ("1.5s", 1_500_000), ("10", 10_000), (20, 20_000)],
)
def test_times(text: str | int, micros: int) -> None:
    assert parse_time(text) == micros


@pytest.mark.parametrize("bad", ["100 parsecs", "ms", "-5ms", "1e3ms", "2h", "", "0.0001us"])
def test_a_bad_time_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^delay: ") as caught:
        parse_time(bad, "delay")
    assert repr(bad.strip()) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_percentages() -> None:
    assert parse_percent("2%") == 2.0
    assert parse_percent("0.5 %") == 0.5
    assert parse_percent(10) == 10.0
    for bad in ("0%", "101%", "two%", "-1%", "2%%"):
        with pytest.raises(ValueError, match=r"^loss: "):
            parse_percent(bad, "loss")


def test_rates() -> None:
    assert parse_rate("1mbit") == 1_000_000
    assert parse_rate("500kbit") == 500_000
    assert parse_rate("1gbit") == 10**9
    assert parse_rate("1mibit") == 2**20
    assert parse_rate("100kbps") == 800_000  # tc's bps: bytes per second
    assert parse_rate("9600") == 9600
    for bad in ("1m", "fast", "1mbit/s", "4bit", "1 tb"):
        with pytest.raises(ValueError, match=r"^rate: "):
            parse_rate(bad)


def test_durations() -> None:
    assert parse_duration("5m") == 300
    assert parse_duration("30s") == 30
    assert parse_duration("1h") == 3600
    assert parse_duration(2.5) == 3
    assert parse_duration("90") == 90
    for bad in ("0s", "soon", "5 minutes", "-1s"):
        with pytest.raises(ValueError, match=r"^--for: "):
            parse_duration(bad, "--for")


def test_booleans_are_no_values() -> None:
    with pytest.raises(ValueError, match=r"^corrupt: "):
        Impairment.build(corrupt=True)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["eth0", "up0", "br-lan", "eth0.100", "wlan0_1", "x" * 15])
def test_interface_names(name: str) -> None:
    assert check_interface(name) == name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_interface_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"^interface: ") as caught:
        check_interface(name)
    assert repr(name) in str(caught.value)
    with pytest.raises(ValueError, match=r"^interface: "):
        Impairment.build(delay="1ms").tc_commands(name)
    with pytest.raises(ValueError, match=r"^interface: "):
        netem.clear_script(name)


def test_every_word_of_a_script_is_quoted() -> None:
    """A peer or setting never reaches the shell unquoted: each tc argument is shlex-quoted."""
    made = Impairment.build(delay="100ms", jitter="10ms", loss="2%", peer="[fd00::5]:8080")
    script = netem.apply_script(
        "up0", made.tc_commands("up0"), settings="a'b $(x)", peer=str(made.peer), expire=30
    )
    for command in made.tc_commands("up0"):
        assert command[0] == "tc"
        quoted = " ".join(shlex.quote(a) for a in command[1:])
        assert f'otto_run "$otto_tc" {quoted}\n' in script
    assert shlex.quote("interface=up0\\npeer=[fd00::5]:8080\\nroot=htb\\nsettings=a'b $(x)\\n") in (
        script
    )


def test_nothing_to_impair() -> None:
    with pytest.raises(ValueError, match=r"^nothing to impair"):
        Impairment.build()
    with pytest.raises(ValueError, match=r"^nothing to impair"):
        Impairment.build(peer="10.0.0.5")


def test_jitter_and_reorder_need_a_delay() -> None:
    with pytest.raises(ValueError, match=r"^jitter: needs a delay"):
        Impairment.build(jitter="10ms", loss="1%")
    with pytest.raises(ValueError, match=r"^reorder: needs a delay"):
        Impairment.build(reorder="25%")


def test_the_netem_line() -> None:
    made = Impairment.build(
        delay="100ms",
        jitter="250us",
        loss="2%",
        rate="1mbit",
        corrupt="0.1%",
        duplicate="1%",
        reorder="25%",
    )
    assert made.tc_commands("eth0") == [
        [
            *("tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay", "100ms", "250us"),
            *("loss", "2%", "corrupt", "0.1%", "duplicate", "1%", "reorder", "25%"),
            *("rate", "1mbit"),
        ]
    ]
    assert str(Impairment.build(rate=1_500_000)) == "rate 1500kbit"


def _words(text: str) -> list[str]:
    return text.split()


def test_a_peer_gets_its_own_class_and_a_filter() -> None:
    made = Impairment.build(delay="50ms", peer="10.0.0.5:8080")
    commands = made.tc_commands("up0")
    assert commands[0] == _words("tc qdisc add dev up0 root handle 1: htb default 1")
    assert [c[:3] for c in commands[1:3]] == [["tc", "class", "add"]] * 2
    assert commands[3][-3:] == ["netem", "delay", "50ms"]
    assert commands[4] == _words(
        "tc filter add dev up0 parent 1: protocol ip prio 1 u32 match ip dst 10.0.0.5/32 "
        "match ip dport 8080 0xffff flowid 1:2"
    )
    v6 = Impairment.build(loss="1%", peer="fd00::/64").tc_commands("up0")[-1]
    assert v6[v6.index("protocol") + 1] == "ipv6"
    assert v6[v6.index("match") : v6.index("match") + 4] == ["match", "ip6", "dst", "fd00::/64"]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("10.0.0.5", "10.0.0.5"),
        ("10.0.0.5:80", "10.0.0.5:80"),
        ("10.0.0.0/24", "10.0.0.0/24"),
        ("fd00::5", "fd00::5"),
        ("[fd00::5]:443", "[fd00::5]:443"),
    ],
)
def test_peers(text: str, shown: str) -> None:
    assert str(Peer.parse(text)) == shown


@pytest.mark.parametrize("bad", ["host.example", "10.0.0.5:http", "10.0.0.5:70000", "", "1.2.3"])
def test_a_bad_peer_is_named(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^peer: "):
        Peer.parse(bad)


# --- the scripts' shell logic, on this machine's sh -------------------------------------


def _sh(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, env=env, check=False, timeout=30
    )


def test_a_failing_command_fails_the_script_and_is_named(tmp_path: Path) -> None:
    """Regression: otto_run once exited 0 after a failure (the status of an ``if``)."""
    done = _sh(
        netem._PRELUDE + "otto_run sh -c 'echo broken; exit 3'\necho not-reached\n", tmp_path
    )
    assert done.returncode == 3
    assert "otto-netem-failed: sh -c echo broken; exit 3\nbroken" in done.stdout
    assert "not-reached" not in done.stdout


def test_a_missing_tc_is_said(tmp_path: Path) -> None:
    (tmp_path / "sh").symlink_to("/bin/sh")
    env = {"PATH": str(tmp_path)}
    done = subprocess.run(
        ["/bin/sh", "-c", netem._PRELUDE + "echo not-reached\n"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=30,
    )
    if done.returncode == 0:  # this machine's tc is in /usr/sbin or /sbin, which it adds
        assert "not-reached" in done.stdout
    else:
        assert done.returncode == 127
        assert "otto-netem-failed: tc\ntc: command not found" in done.stdout


BUSYBOX = shutil.which("busybox")
needs_busybox = pytest.mark.skipif(BUSYBOX is None, reason="no busybox on this machine")
IPROUTE_TC = next((f"{d}/tc" for d in netem.TC_DIRS if os.access(f"{d}/tc", os.X_OK)), None)


def test_no_script_runs_tc_by_name() -> None:
    """A busybox that prefers its applets runs its own tc for the bare name, whatever PATH."""
    made = Impairment.build(delay="100ms", peer="10.0.0.5:80")
    scripts = [
        netem.apply_script("up0", made.tc_commands("up0"), settings="x", expire=30),
        netem.apply_script(
            "up0", Impairment.build(loss="1%").tc_commands("up0"), settings="x", expire=None
        ),
        netem.clear_script("up0"),
        netem.LIST_SCRIPT,
    ]
    for script in scripts:
        for line in script.splitlines():
            words = line.replace("(", " ").replace("|", " ").replace(";", " ").split()
            # `command -v tc` runs nothing; `set -- tc` names it in an error message.
            ran = [w for i, w in enumerate(words) if w == "tc" and words[i - 1] not in ("-v", "--")]
            assert not ran, line
    assert f"otto_find_tc {' '.join(netem.TC_DIRS)}\n" in netem._PRELUDE
    assert netem.TC_DIRS == ("/sbin", "/usr/sbin", "/bin", "/usr/bin")


def _find(dirs: list[Path], path: str, shell: tuple[str, ...] = ("/bin/sh",)) -> str:
    done = subprocess.run(
        [*shell, "-c", netem.TC_FINDER + 'otto_find_tc "$@"; echo "tc=$otto_tc bb=$otto_bb"', "sh"]
        + [str(d) for d in dirs],
        capture_output=True,
        text=True,
        env={"PATH": path},
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _fake_tc(folder: Path, says: str) -> Path:
    folder.mkdir()
    tc = folder / "tc"
    tc.write_text(f"#!/bin/sh\necho {shlex.quote(says)}\n")
    tc.chmod(0o755)
    return tc


@needs_busybox
def test_busybox_tcs_are_passed_over_for_iproute2s(tmp_path: Path) -> None:
    assert BUSYBOX is not None
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "tc").symlink_to(BUSYBOX)
    copied = _fake_tc(tmp_path / "copied", "BusyBox v1.36.1 multi-call binary.")
    real = _fake_tc(tmp_path / "real", "tc utility, iproute2-6.1.0")
    on_path = _fake_tc(tmp_path / "on_path", "tc utility, iproute2-5.10.0")
    found = _find([linked, copied.parent, real.parent], str(on_path.parent))
    assert found == f"tc={real} bb=1"
    # The folders given first, then PATH's.
    assert _find([tmp_path / "none"], f"{linked}:{on_path.parent}") == f"tc={on_path} bb=1"


@needs_busybox
def test_only_busybox_s_tc_is_found_as_such(tmp_path: Path) -> None:
    assert BUSYBOX is not None
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "tc").symlink_to(BUSYBOX)
    assert _find([linked], str(tmp_path / "empty")) == "tc= bb=1"
    # busybox's own shell finds its applet for `tc` with no tc anywhere on PATH.
    assert _find([tmp_path / "none"], str(tmp_path / "empty"), (BUSYBOX, "sh")) == "tc= bb=1"
    assert _find([tmp_path / "none"], str(tmp_path / "empty")) == "tc= bb="


@needs_busybox
@pytest.mark.skipif(IPROUTE_TC is None, reason="no iproute2 tc on this machine")
def test_in_busybox_s_shell_the_scripts_run_iproute2s_tc(tmp_path: Path) -> None:
    """Regression: in a busybox sh that prefers applets, `tc` ran busybox's applet."""
    assert BUSYBOX is not None
    done = subprocess.run(
        [BUSYBOX, "sh", "-c", netem._PRELUDE + 'otto_run "$otto_tc" -V\necho "tc=$otto_tc"\n'],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        check=False,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout
    assert "iproute2" in done.stdout
    assert f"tc={IPROUTE_TC}" in done.stdout


@pytest.mark.skipif(IPROUTE_TC is None, reason="no iproute2 tc on this machine")
def test_a_failing_tc_is_named_tc_not_its_path(tmp_path: Path) -> None:
    done = _sh(netem._PRELUDE + 'otto_run "$otto_tc" qdisc show dev nosuch0\n', tmp_path)
    assert done.returncode != 0
    assert "otto-netem-failed: tc qdisc show dev nosuch0\n" in done.stdout


def test_a_busybox_only_tc_is_said_with_the_host() -> None:
    output = "otto-netem-failed: tc\notto-netem-busybox-tc\n"
    with pytest.raises(OttoError) as caught:
        netem._check(_Named("dut"), "impair eth0", _status(output, 127))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "dut: impair eth0: tc on dut is busybox's applet, which has no netem; install iproute2"
    )


def _status(output: str, code: int) -> CommandStatus:
    return CommandStatus.finished("sh -c ...", output, code, started=(0.0, 0.0), host="web1")


def test_a_failure_names_host_command_and_what_tc_said() -> None:
    output = (
        "otto-netem-failed: tc qdisc replace dev eth9 root netem delay 100ms\n"
        'Cannot find device "eth9"'
    )
    with pytest.raises(OttoError) as caught:
        netem._check(_Named("web1"), "impair eth9", _status(output, 1))  # type: ignore[arg-type]
    text = str(caught.value)
    assert text.startswith("web1: impair eth9: `tc qdisc replace dev eth9 root netem delay 100ms`")
    assert 'Cannot find device "eth9"' in text
    assert "no such interface on the host" in text
    assert "\n" not in text


class _Named:
    def __init__(self, name: str) -> None:
        self.name = name


def test_the_kernel_without_netem_is_said() -> None:
    output = (
        "otto-netem-failed: tc qdisc replace dev up0 root netem loss 1%\n"
        "Error: Specified qdisc kind is unknown."
    )
    with pytest.raises(OttoError, match="sch_netem"):
        netem._check(_Named("h"), "impair up0", _status(output, 2))  # type: ignore[arg-type]


# --- reading a listing back -------------------------------------------------------------

LISTING = """otto-netem-now=1000
otto-netem-state
interface=up0
peer=
root=netem
settings=delay 100ms
expires=1240
pid=77
otto-netem-state
interface=eth1
peer=10.0.0.5:80
root=htb
settings=loss 2%
expires=
pid=78
otto-netem-state
interface=gone0
peer=
root=netem
settings=delay 5ms
expires=1100
otto-netem-tc
qdisc noqueue 0: dev lo root refcnt 2
qdisc netem 8001: dev up0 root refcnt 2 limit 1000 delay 100ms  10ms loss 2% seed 42
qdisc htb 1: dev eth1 root refcnt 3 r2q 10 default 0x1 direct_packets_stat 0 direct_qlen 1000
qdisc netem 20: dev eth1 parent 1:2 limit 1000 loss 2%
qdisc noqueue 0: dev gone0 root refcnt 2
qdisc netem 8002: dev eth2 root refcnt 2 limit 1000 rate 1Mbit
"""


def test_a_listing_shows_what_is_in_place_and_when_it_ends() -> None:
    found = {a.interface: a for a in netem.parse_listing(LISTING)}
    assert sorted(found) == ["eth1", "eth2", "up0"]  # gone0 was reverted: its root is noqueue
    assert found["up0"].settings == "delay 100ms 10ms loss 2%"
    assert found["up0"].expires_in == 240.0
    assert found["eth1"].peer == "10.0.0.5:80"
    assert found["eth1"].expires_in is None
    assert found["eth2"].by_otto is False
    assert found["eth2"].settings == "rate 1Mbit"
    assert found["up0"].as_dict()["expires_in"] == 240.0


def test_an_empty_listing() -> None:
    assert (
        netem.parse_listing(
            "otto-netem-now=5\notto-netem-tc\nqdisc noqueue 0: dev lo root refcnt 2\n"
        )
        == []
    )


# --- the command line: values are checked before any host is contacted ----------------


def _otto(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    lab = tmp_path / "lab.json"
    lab.write_text('{"hosts": [{"name": "far", "address": "192.0.2.1", "user": "x"}]}')
    env = {**os.environ, "OTTO_LAB": str(lab)}
    return subprocess.run(
        [sys.executable, "-m", "otto", "host", "far", "impair", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["$(reboot)", "--delay", "10ms"], "interface: '$(reboot)' is not an interface name"),
        (["--delay", "10ms", "--", "-eth0"], "interface: '-eth0' is not an interface name"),
        (["up0", "--delay", "10parsecs"], "delay: '10parsecs' is not a time"),
        (["up0", "--loss", "200%"], "loss: '200%' is not above 0% and at most 100%"),
        (["up0", "--rate", "fast"], "rate: 'fast' is not a rate"),
        (["up0", "--delay", "1ms", "--for", "soon"], "--for: 'soon' is not a duration"),
        (["up0", "--delay", "1ms", "--peer", "nowhere"], "peer: 'nowhere' is not an address"),
        (["up0"], "nothing to impair"),
        (["up0", "--clear", "--delay", "1ms"], "impair --clear takes no impairment values"),
        ([], "impair needs IFACE"),
    ],
)
def test_the_command_line_refuses_a_bad_value_before_contacting(
    args: list[str], said: str, tmp_path: Path
) -> None:
    done = _otto(*args, tmp_path=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert said in lines[0]
