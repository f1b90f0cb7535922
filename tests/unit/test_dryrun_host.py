"""DryRunHost: every verb says what it would do, nothing runs, nothing is reported as done."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from otto.hosts import DryRunHost
from otto.hosts.dryrun import DryRunStop
from otto.hosts.power import PowerSpec
from otto.result import CommandStatus, Status


def make(name: str = "web1", **kwargs: object) -> tuple[DryRunHost, list[str]]:
    lines: list[str] = []
    host = DryRunHost(name, say=lines.append, **kwargs)  # type: ignore[arg-type]
    return host, lines


def test_run_says_each_command_and_returns_not_run() -> None:
    host, lines = make(reaches="ssh ops@10.0.0.5:22 via gw")

    async def main() -> None:
        one = await host.run("uptime", timeout=5)
        several = await host.run(["cd /srv", "false", "ls"])
        assert lines == [
            "[web1] would connect: ssh ops@10.0.0.5:22 via gw",
            "[web1] would run: uptime  (timeout 5s)",
            "[web1] would run: cd /srv",
            "[web1] would run: false",
            "[web1] would run: ls",
        ]
        for result in (one, several):
            assert not result.is_ok
            assert result.status is Status.NotRun
        assert [s.command for s in several.statuses] == ["cd /srv", "false", "ls"]
        for status in several.statuses:
            assert status.status is Status.NotRun
            assert status.retcode == -1
            assert status.output == ""
            assert "dry run" in status.error
            assert status.host == "web1"
        await host.close()

    asyncio.run(main())


def test_not_run_is_never_ok_and_worst() -> None:
    assert not Status.NotRun.is_ok
    assert Status.worst([Status.Success, Status.NotRun]) is Status.NotRun


def test_oneshot_and_observers_see_not_run() -> None:
    host, lines = make()
    seen: list[CommandStatus] = []
    host.add_observer(seen.append)

    async def main() -> None:
        status = await host.oneshot("id -u")
        assert status.status is Status.NotRun
        assert status.session == "oneshot"
        await host.run("whoami")
        await host.close()

    asyncio.run(main())
    assert lines == ["[web1] would run (one-shot): id -u", "[web1] would run: whoami"]
    assert [(s.command, s.status) for s in seen] == [
        ("id -u", Status.NotRun),
        ("whoami", Status.NotRun),
    ]


def test_named_sessions_say_their_name_and_close() -> None:
    host, lines = make()

    async def main() -> None:
        async with host.open_session("build", as_user="root") as session:
            result = await session.run("make")
            assert result.status is Status.NotRun
            await session.send("q")
            assert "build" in host.sessions
        assert "build" not in host.sessions
        with pytest.raises(Exception, match="closed"):
            await session.run("make")

    asyncio.run(main())
    assert lines == [
        "[web1] would open session build (as root, on a terminal)",
        "[web1] would run (session build): make",
        "[web1] would send (session build): 'q'",
    ]


@pytest.mark.parametrize("patterns", ["login: ", ["a", re.compile("b+")]])
def test_expect_stops_the_dry_run_saying_where(patterns: object) -> None:
    host, lines = make()

    async def main() -> None:
        with pytest.raises(DryRunStop, match=r"web1/default: expect\(.*\) waits for output"):
            await host.expect(patterns)  # type: ignore[call-overload]
        await host.close()

    asyncio.run(main())
    assert lines[-1].startswith("[web1] would wait for: ")


def test_an_app_stops_at_its_prompt() -> None:
    host, lines = make()

    async def main() -> None:
        with pytest.raises(DryRunStop, match="waits for output"):
            async with host.open_app("python3 -i -q", r">>> "):
                pass
        await host.close()

    asyncio.run(main())
    assert any("would send" in line and "python3 -i -q" in line for line in lines), lines


def test_put_and_get_copy_nothing(tmp_path: Path) -> None:
    source = tmp_path / "fw.bin"
    source.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    host, lines = make()

    async def main() -> None:
        put = await host.put(source, "/tmp/up")
        assert put.status is Status.NotRun and put.files == [] and not put.is_ok
        missing = await host.put([source, tmp_path / "nope"], "/tmp/up")
        assert missing.status is Status.Error
        assert "nope" in missing.error
        got = await host.get(["/var/log/syslog"], out)
        assert got.status is Status.NotRun and got.files == []
        await host.close()

    asyncio.run(main())
    assert lines[0] == f"[web1] would put: {source} -> web1:/tmp/up"
    assert lines[-1] == f"[web1] would get: web1:/var/log/syslog -> {out}"
    assert list(out.iterdir()) == []


def test_power_and_reboot_say_the_commands() -> None:
    controller, controller_lines = make("pdu")
    host, lines = make(power=PowerSpec(on="pdu on 3", off="pdu off 3", via=controller))

    async def main() -> None:
        await host.power("cycle")
        await host.reboot(timeout=60)
        await host.wait_until_up(10)
        with pytest.raises(ValueError, match="power action"):
            await host.power("sideways")  # type: ignore[arg-type]
        bare, _ = make()
        with pytest.raises(ValueError, match="no power commands"):
            await bare.power("on")

    asyncio.run(main())
    assert lines == [
        "[web1] would switch power cycle: run on pdu: pdu off 3",
        "[web1] would switch power cycle: run on pdu: pdu on 3",
        "[web1] would run to reboot: reboot",
        "[web1] would wait until it goes down and is up again (up to 60s)",
        "[web1] would wait until a shell answers (up to 10s)",
    ]
    assert controller_lines == []


def test_a_repeat_ticks_without_running() -> None:
    host, _ = make()
    lines: list[str] = []

    async def main() -> None:
        with pytest.raises(ValueError):
            host.start_repeat("bad", "true", -1)
        ticks = asyncio.get_running_loop().create_future()

        def watch(line: str) -> None:
            lines.append(line)
            if sum("would run" in seen for seen in lines) == 2 and not ticks.done():
                ticks.set_result(None)

        host._say = watch
        host.start_repeat("poll", "cat /proc/loadavg", 0.01, times=2)
        await asyncio.wait_for(ticks, 10)
        assert host.repeat_results("poll")[0][1][0].status is Status.NotRun
        await host.stop_all_repeats()
        await host.close()

    asyncio.run(main())
    assert lines[0] == "[web1] would open session repeat:poll"
    assert lines[1:3] == ["[web1] would run (session repeat:poll): cat /proc/loadavg"] * 2
