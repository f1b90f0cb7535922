"""Every example in README.md, docs/ and examples/ runs as printed, on the test lab.

Each fenced block is one example, decided by its language and by an optional
marker, an HTML comment on the line just above the fence:

- ```python: run as a script (``python3 FILE``) in a fresh process.
  ``<!-- example: pytest -->``: a test module, run with ``otto test FILE``.
  ``<!-- example: with-previous -->``: appended to the previous python block of
  the same section, the two (or more) running as one script.
- ```sh: must be marked. ``<!-- example: run -->``: each line runs in one
  ``bash -e`` script.
- ```json: a lab file, checked with ``otto lab check``.
- ``<!-- example: skip, REASON -->``: not run; the reason says why (rare).
- Blocks with no language (output, layouts) are not code.

Every run asserts exit status 0 and nothing on stderr (but the lines
``EXPECTED_STDERR`` names for its section). Hosts are the lab's:
the literals in ``STAND_INS`` (the addresses and user names the examples show)
are replaced by the lab's real ones, and nothing else of the text changes.
Credentials come from the environment (``BOARD_PW``, ...) and from the
process's ``HOME``, whose ``~/.ssh`` holds the lab's key and known_hosts. An
example runs in a work directory of its own holding ``lab.json`` (from
``_lab_files``: lab hosts under the names the examples use; the same lab as
``~/.ssh/config``, ``inventory.ini`` and ``secrets.yaml``), ``myproject/``
(examples/myproject: the instruction ``otto run deploy`` runs) and the
user's own files the examples name (``USER_FILES``). ``examples/`` is linked
there, so ``otto test examples/tests`` runs the project's example suite.

A section of ``BOARD_SECTIONS`` ("From power-off to a test") shows one board,
``board``, from power-off to a test. Its lab.json holds that board alone, a
QEMU board whose power is switched through QEMU's monitor
(tests/lab/qemu_power.py): QEMU's U-Boot for a block that uses the bootloader
(``goto``, ``deploy``: it has no system to boot), the Linux target of
tests/lab/linuxvm.py for the others (its kernel is loaded by QEMU: it has no
bootloader). A pytest block there runs on that lab (``$OTTO_LAB``).

``docs/sessions-and-periodic-tasks.txt`` is a doctest, run by test_seed.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.lab import Lab
from tests.lab.console import ConsoleLab
from tests.lab.hosts import NodeSpec
from tests.lab.linuxvm import VM_PASSWORD, VM_USER, linuxvm_missing
from tests.lab.power import power_script
from tests.lab.privilege import SUDO_USER
from tests.lab.qemu_power import PoweredBoard, PoweredLinux
from tests.lab.uboot import UBoot, uboot_missing
from tests.lab.users import LAB_PASSWORD, LAB_USER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCUMENTS += sorted((ROOT / "examples").rglob("*.md"))

_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*example:\s*([\w-]+)\s*(?:,\s*(.*?))?\s*-->\s*$")
KINDS = {"run", "skip", "pytest", "with-previous"}

README_HEAD = 10
"""README's first lines hold the two first commands (install and monitor, the
whole suite): they are the lead's, checked by the fresh-install tests, and
cannot run inside the suite."""

MAX_SKIPS = 3
"""Skipping must stay rare."""


@dataclass
class Example:
    """One fenced block: where it is, what it is, how it is run."""

    path: Path
    line: int
    lang: str
    code: str
    section: str
    kind: str
    reason: str = ""

    @property
    def id(self) -> str:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{shown}:{self.line}"


def parse(path: Path) -> list[Example]:
    """The fenced blocks of a Markdown file, with blocks marked with-previous joined."""
    lines = path.read_text().splitlines()
    found: list[Example] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("#").strip()
        fence = _FENCE.match(line)
        if fence is None:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].rstrip() != "```":
            end += 1
        if end == len(lines):
            raise AssertionError(f"{path}:{i + 1}: unclosed code block")
        marker = _MARKER.match(lines[i - 1]) if i > 0 else None
        lang = fence.group(1)
        default = {"python": "python", "json": "lab"}.get(lang, "")
        kind, reason = (marker.group(1), marker.group(2) or "") if marker else (default, "")
        code = "\n".join(lines[i + 1 : end]) + "\n"
        example = Example(path, i + 1, lang, code, section, kind, reason)
        if kind == "with-previous":
            previous = next((e for e in reversed(found) if e.lang == "python"), None)
            if previous is None or previous.section != section or lang != "python":
                raise AssertionError(f"{example.id}: with-previous needs a python block above")
            previous.code += "\n" + code
        elif lang:
            found.append(example)
        i = end + 1
    return found


ALL = [example for path in DOCUMENTS for example in parse(path)]


def _is_readme_head(example: Example) -> bool:
    return example.path.name == "README.md" and example.line <= README_HEAD


RUNNABLE = [e for e in ALL if e.kind not in ("skip", "") and not _is_readme_head(e)]


# -- the lab the examples run on ------------------------------------------------


@dataclass(frozen=True)
class Stand:
    """A literal of the examples and who supplies the real value."""

    needs: str
    value: Callable[[Any], str]


def _ssh(name: str) -> Callable[[Any], str]:
    def value(labs: Labs) -> str:
        host = labs.lab.host(name)
        port = "" if host.port == 22 else f", port={host.port}"
        return f'"{host.address}"{port}'

    return value


STAND_INS: dict[str, Stand] = {
    '"10.0.0.7"': Stand("lab", _ssh("inner")),
    '"gw.example"': Stand("lab", _ssh("ssh1")),
    'user="lab"': Stand("lab", lambda labs: f'user="{LAB_USER}"'),
    '"127.0.0.1:5555"': Stand("uboot", lambda labs: f'"{labs.uboot.address}"'),
    '"ts1.lab:7001"': Stand("consoles", lambda labs: f'"{labs.consoles["login"].address}"'),
    'user="root"': Stand("consoles", lambda labs: f'user="{LAB_USER}"'),
    '"/dev/ttyUSB0"': Stand("consoles", lambda labs: f'"{labs.consoles["serial-shell"].device}"'),
    '"10.0.0.2"': Stand("power", lambda labs: f'"{labs.power.host("board").address}"'),
    'user="alice"': Stand("power", lambda labs: f'user="{SUDO_USER}"'),
}
"""Only python and sh blocks are substituted: lab files (json) are only checked."""

EXPECTED_STDERR: dict[str, list[str]] = {
    "Privilege, power and reboot": [
        # The warnings the README promises after a power-off or reboot.
        r"\S+: rebooted; every session will start a fresh shell",
        r"\S+/power-watch-\d+: the shell ended \(.*\); starting a fresh shell, its state is gone",
    ],
}
"""Per section: the stderr lines an example prints on purpose (regexes, each line
must match one); every other example prints nothing on stderr."""

PENDING_NOISE = [
    # pytest-benchmark, where installed (it is no dependency of otto's), on `-n`:
    # its own warning that xdist disables it, which otto cannot silence for it.
    r"\S+pytest_benchmark/logger\.py:\d+: PytestBenchmarkWarning: Benchmarks are automatically "
    r"disabled because xdist plugin is active\..*\n  warner\(PytestBenchmarkWarning\(text\)\)\n",
]
"""stderr that otto does not print and cannot keep quiet (each with its reason)."""

USER_FILES = ("build/app.tar", "fw-4.2.bin")
"""Files of the user's own that examples send somewhere."""

POWER_NODES = (NodeSpec("board", None, (("board", "ssh"),)),)

BOARD_SECTIONS = {"From power-off to a test"}
"""Sections whose lab is one QEMU board with a power switch, named ``board``."""

USES_BOOTLOADER = re.compile(r"\bdeploy\b|\bbootloader\b")
"""A block of a board section that needs the bootloader: it runs on QEMU's U-Boot."""

BOOT = {"bootloader_prompt": "=> ", "autoboot": "Hit any key to stop autoboot"}
"""The lab field ``boot`` of QEMU's U-Boot (its countdown text and prompt)."""


def _board_entry(board: PoweredBoard, linux: bool) -> dict[str, object]:
    """The lab's ``board``: a console on the QEMU board, powered through its monitor."""
    entry: dict[str, object] = {
        "name": "board",
        "term": "console",
        "address": board.address,
        "console_protocol": "raw",
        "connect_timeout": 10,
        "power": board.power_fields(),
    }
    if linux:
        entry.update(user=VM_USER, password="${BOARD_PW}", boot={"shell_timeout": 240})
    else:
        entry["boot"] = BOOT
    return entry


def _lab_files(lab: Lab) -> dict[str, list[dict[str, object]]]:
    """Each document's lab.json: lab hosts under the names its examples use."""

    def host(name: str, real: str, **more: object) -> dict[str, object]:
        spec = lab.host(real)
        entry: dict[str, object] = {"name": name, "address": spec.address, "user": spec.user}
        if spec.port not in (22, 23):
            entry["port"] = spec.port
        if spec.term == "ssh":
            entry["key"] = "~/.ssh/id_ed25519"
        else:
            entry["term"] = spec.term
            entry["password"] = "${PLC_PW}"
        entry.update(more)
        return entry

    readme = [
        host("gw", "ssh1"),
        host("web1", "inner", hop="gw", tags=["web"]),
        host("plc", "telnet1"),
        host("board1", "ssh2", tags=["board"]),
        host("board2", "ssh3", tags=["board"]),
    ]
    return {"README.md": readme, "writing-tests.md": [host("board1", "ssh2")]}


def _other_sources(lab: Lab, work: Path, home: Path) -> None:
    """The lab as an ssh_config, an Ansible inventory and a YAML file of passwords."""

    def where(name: str) -> tuple[str, int]:
        spec = lab.host(name)
        return spec.address, spec.port

    gw, board1 = where("ssh1"), where("inner")
    (home / ".ssh" / "config").write_text(
        f"Host gw\n    HostName {gw[0]}\n    Port {gw[1]}\n    User {LAB_USER}\n"
        f"Host board1\n    HostName {board1[0]}\n    Port {board1[1]}\n    User {LAB_USER}\n"
        "    ProxyJump gw\n"
    )
    web = [where("ssh2"), where("ssh3")]
    (work / "inventory.ini").write_text(
        "[web]\n"
        + "".join(
            f"web{i} ansible_host={address} ansible_port={port}\n"
            for i, (address, port) in enumerate(web, 1)
        )
        + f"\n[web:vars]\nansible_user={LAB_USER}\n"
    )
    (work / "secrets.yaml").write_text(
        "hosts:\n" + "".join(f"  - name: web{i}\n    password: ${{WEB_PW}}\n" for i in (1, 2))
    )


class Labs:
    """The lab parts an example needs, started on first use (fixtures)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request

    def _get(self, name: str) -> Any:
        return self._request.getfixturevalue(name)

    @property
    def lab(self) -> Lab:
        lab: Lab = self._get("lab")
        return lab

    @property
    def consoles(self) -> ConsoleLab:
        consoles: ConsoleLab = self._get("consoles")
        return consoles

    @property
    def uboot(self) -> UBoot:
        uboot: UBoot = self._get("uboot")
        return uboot

    @property
    def power(self) -> Lab:
        power: Lab = self._get("power_lab")
        return power

    @property
    def powered_uboot(self) -> PoweredBoard:
        board: PoweredBoard = self._get("powered_uboot")
        return board

    @property
    def powered_linux(self) -> PoweredLinux:
        board: PoweredLinux = self._get("powered_linux")
        return board


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def uboot() -> AsyncIterator[UBoot]:
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    async with UBoot() as board:
        yield board


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def powered_uboot(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PoweredBoard]:
    """QEMU's U-Boot, switched off and on through QEMU's monitor; it starts off."""
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    async with PoweredBoard(tmp_path_factory.mktemp("uboot")) as board:
        yield board


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def powered_linux(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[PoweredLinux]:
    """The Linux target, switched off and on through QEMU's monitor; it starts off."""
    missing = linuxvm_missing()
    if missing:
        pytest.skip(missing)
    async with PoweredLinux(tmp_path_factory.mktemp("linux")) as board:
        yield board


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def power_lab() -> AsyncIterator[Lab]:
    """A lab of its own whose node is switched off and on (tests/lab/power.py)."""
    if os.geteuid() != 0:
        pytest.skip("the integration lab needs root")
    async with Lab(POWER_NODES) as lab:
        if not lab.uses_netns:
            pytest.skip("power switches need the lab in netns mode")
        yield lab


def _literal(literal: str) -> re.Pattern[str]:
    # A literal starts a word: `user="root"` is not the end of `as_user="root"`.
    return re.compile(r"(?<![\w.])" + re.escape(literal))


def _constant(value: str) -> Callable[[re.Match[str]], str]:
    return lambda _: value


def substitute(code: str, labs: Labs) -> tuple[str, set[str]]:
    """``code`` with the lab's hosts in place of the examples' ones, and the parts used."""
    needs: set[str] = set()
    for literal, stand in STAND_INS.items():
        if _literal(literal).search(code):
            needs.add(stand.needs)
            # A function as the replacement: the value is taken as it is, not as a template.
            code = _literal(literal).sub(_constant(stand.value(labs)), code)
    return code, needs


@dataclass
class Place:
    """Where an example runs: its directory and environment."""

    cwd: Path
    env: dict[str, str]


def prepare(tmp_path: Path, example: Example, needs: set[str], labs: Labs) -> Place:
    work = tmp_path / "work"
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    for folder in (work, home / ".ssh", bin_dir):
        folder.mkdir(parents=True)
    ssh_lab = labs.power if "power" in needs else labs.lab
    shutil.copy(ssh_lab.client_key, home / ".ssh" / "id_ed25519")
    shutil.copy(ssh_lab.known_hosts, home / ".ssh" / "known_hosts")
    (work / "examples").symlink_to(ROOT / "examples")
    shutil.copytree(ROOT / "examples" / "myproject", work / "myproject")
    for name in USER_FILES:
        (work / name).parent.mkdir(parents=True, exist_ok=True)
        (work / name).write_bytes(b"the user's own file\n")
    board_pw = LAB_PASSWORD
    if example.section in BOARD_SECTIONS:
        linux = not USES_BOOTLOADER.search(example.code)
        board = labs.powered_linux if linux else labs.powered_uboot
        hosts = [_board_entry(board, linux)]
        board_pw = VM_PASSWORD if linux else board_pw
    else:
        hosts = _lab_files(labs.lab).get(example.path.name) or _lab_files(labs.lab)["README.md"]
    settings = {"instructions": ["myproject.instructions"]}
    (work / "lab.json").write_text(json.dumps({"hosts": hosts, "settings": settings}, indent=1))
    _other_sources(labs.lab, work, home)
    if "power" in needs:
        script = power_script(labs.power, "board")
        pdu = bin_dir / "pdu"
        # The PDU's command-line tool: `pdu on|off OUTLET` switches the lab node.
        pdu.write_text(f'#!/bin/sh\nexec {script} "$1"\n')
        pdu.chmod(pdu.stat().st_mode | stat.S_IXUSR)
    env = {
        "PATH": os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), os.defpath]),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_COLOR": "1",
        "OTTO_USER": "examples@ci",
        "OTTO_RESERVATIONS": f"sqlite:///{work}/reservations.db",
        "BOARD_PW": board_pw,
        "ALICE_PW": LAB_PASSWORD,
        "WEB_PW": LAB_PASSWORD,
        "PLC_PW": LAB_PASSWORD,
        "SNMP_COMMUNITY": "public",
    }
    if example.section in BOARD_SECTIONS:
        env["OTTO_LAB"] = str(work / "lab.json")
    return Place(work, env)


def _run(
    argv: list[str], place: Place, what: str, allowed: list[str]
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv,
        cwd=place.cwd,
        env=place.env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    stderr = done.stderr
    for noise in PENDING_NOISE:
        stderr = re.sub(noise, "", stderr)
    unexpected = [
        line
        for line in stderr.splitlines()
        if not any(re.fullmatch(pattern, line) for pattern in allowed)
    ]
    assert done.returncode == 0 and unexpected == [], (
        f"{what}: exit status {done.returncode}\n"
        f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
    )
    return done


# -- the tests ------------------------------------------------------------------


def test_every_block_is_decided() -> None:
    """Markers are known, skips carry a reason, sh blocks are marked, skips stay rare."""
    assert ALL, "no examples found"
    problems = []
    for example in ALL:
        if _is_readme_head(example):
            continue
        if example.kind and example.kind not in KINDS | {"python", "lab"}:
            problems.append(f"{example.id}: unknown marker {example.kind!r}")
        if example.kind == "skip" and not example.reason:
            problems.append(f"{example.id}: a skip needs its reason")
        if example.lang == "sh" and example.kind not in ("run", "skip"):
            problems.append(f"{example.id}: an sh block needs <!-- example: run --> or skip")
        if example.lang not in ("python", "sh", "json", ""):
            problems.append(f"{example.id}: unknown block language {example.lang!r}")
    assert problems == []
    assert len([e for e in ALL if e.kind == "skip"]) <= MAX_SKIPS


def test_markers_decide_how_a_block_runs(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "## One\n\n```python\nx = 1\n```\n\n<!-- example: with-previous -->\n"
        "```python\nprint(x)\n```\n\n<!-- example: skip, needs a board -->\n"
        "```sh\nflash\n```\n\n```\noutput, not code\n```\n\n"
        "<!-- example: pytest -->\n```python\ndef test_x(): pass\n```\n"
    )
    found = parse(page)
    assert [(e.lang, e.kind, e.reason) for e in found] == [
        ("python", "python", ""),
        ("sh", "skip", "needs a board"),
        ("python", "pytest", ""),
    ]
    assert found[0].code == "x = 1\n\nprint(x)\n"
    assert found[0].section == "One"
    page.write_text("## Two\n\n<!-- example: with-previous -->\n```python\nprint(x)\n```\n")
    with pytest.raises(AssertionError, match="with-previous needs a python block above"):
        parse(page)


def test_the_power_switch_succeeds_when_a_process_ends_before_its_kill(
    power_lab: Lab, tmp_path: Path
) -> None:
    """The README's `pdu off` once failed when a process of the node ended by itself
    between `ip netns pids` and its kill. Here `ip` is a stand-in that lists a pid
    no process can have (above the kernel's largest pid_max) and does nothing else."""
    script = power_script(power_lab, "board")
    fake_ip = tmp_path / "ip"
    fake_ip.write_text('#!/bin/sh\n[ "$2" = pids ] && echo 4194305\nexit 0\n')
    fake_ip.chmod(0o755)
    done = subprocess.run(
        [str(script), "off"],
        env={"PATH": f"{tmp_path}{os.pathsep}{os.defpath}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_every_stand_in_is_used() -> None:
    """A literal that no example shows any more is dropped from the table."""
    text = "".join(e.code for e in RUNNABLE if e.lang in ("python", "sh"))
    assert [literal for literal in STAND_INS if not _literal(literal).search(text)] == []


def test_the_example_suite_is_run() -> None:
    """`otto test examples/tests` is one of the examples (docs/writing-tests.md)."""
    assert any("otto test examples/tests" in e.code for e in RUNNABLE if e.kind == "run")


@pytest.mark.parametrize("example", RUNNABLE, ids=lambda e: e.id)
def test_example_runs_as_printed(
    example: Example, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    labs = Labs(request)
    code, needs = substitute(example.code, labs)
    place = prepare(tmp_path, example, needs, labs)
    what = f"{example.id} ({example.section})"
    allowed = EXPECTED_STDERR.get(example.section, [])
    if example.kind == "python":
        script = place.cwd / "example.py"
        script.write_text(code)
        _run([sys.executable, str(script)], place, what, allowed)
    elif example.kind == "pytest":
        module = place.cwd / "test_example.py"
        module.write_text(code)
        _run(["otto", "test", str(module)], place, what, allowed)
    elif example.kind == "run":
        _run(["bash", "-e", "-o", "pipefail", "-c", code], place, what, allowed)
    elif example.kind == "lab":
        lab_file = place.cwd / "example-lab.json"
        lab_file.write_text(example.code)
        _run(["otto", "lab", "check", str(lab_file)], place, what, allowed)
    else:
        raise AssertionError(f"{example.id}: no way to run kind {example.kind!r}")
