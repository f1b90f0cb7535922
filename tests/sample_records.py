"""Hand-built ``TestRecord``s of a hostile run, for the report and JUnit writers' tests.

Names and outputs carry markup, quotes, control characters and a huge output;
one test iterates (with a failing iteration), one was rerun and finally passed,
one rerun and finally failed, one crashed its device, one errored, one skipped.
"""

from __future__ import annotations

from otto.testing.records import Attempt, CommandFailure, Crash, TestRecord

T0 = 1_700_000_000.0

HOSTILE = "<script>alert('x')</script>\"&amp;"
HUGE_TAIL = "y" * 2_000_000 + "\nthe last line of a huge output\n"
CONTROL = "bell\x07 nul\x00 esc\x1b[31m red\x1b[0m form\x0c"


def sample_records() -> list[TestRecord]:
    records: list[TestRecord] = []
    t = T0
    for iteration in (1, 2, 3, 4):
        ok = iteration != 3
        records.append(
            TestRecord(
                nodeid="tests/test_net.py::test_ping[web-1]",
                name="test_ping[web-1]",
                outcome="passed" if ok else "failed",
                start=t,
                stop=t + 1.5,
                iteration=iteration,
                hosts=["web-1"],
                longrepr="" if ok else "E       assert 1 == 0\nE        +  where 1 = status",
                failures=[]
                if ok
                else [
                    CommandFailure(
                        host="web-1",
                        command="ping -c 1 10.0.0.9",
                        retcode=1,
                        status="Failed",
                        output_tail="1 packets transmitted, 0 received, 100% packet loss",
                    )
                ],
                transcript=f"tests/test_net.py__test_ping[web-1]/{iteration}/transcript.log",
                folder=f"tests/test_net.py__test_ping[web-1]/{iteration}",
                worker="gw0",
            )
        )
        t += 2
    records.append(
        TestRecord(
            nodeid=f"tests/test_hostile.py::test_name[{HOSTILE}]",
            name=f"test_name[{HOSTILE}]",
            outcome="failed",
            start=t,
            stop=t + 0.25,
            hosts=[f"host-{HOSTILE}"],
            longrepr=f"E   AssertionError: {HOSTILE}\n{CONTROL}\n" + HUGE_TAIL,
            failures=[
                CommandFailure(
                    host=f"host-{HOSTILE}",
                    command=f"echo '{HOSTILE}'",
                    retcode=2,
                    status="Failed",
                    output_tail=CONTROL + HUGE_TAIL,
                    error=HOSTILE,
                )
            ],
            transcript=f"tests/test_hostile.py__{HOSTILE}/transcript.log",
            folder=f"tests/test_hostile.py__{HOSTILE}",
        )
    )
    t += 1
    records.append(
        TestRecord(
            nodeid="tests/test_flaky.py::TestLink::test_up",
            name="test_up",
            outcome="passed",
            start=t,
            stop=t + 3,
            hosts=["web-2"],
            earlier=[
                Attempt("failed", "E   TimeoutError: link did not come up (try 1)", t - 2, t - 1),
                Attempt("error", "E   ConnectionError: fixture setup (try 2)", t - 1, t - 0.5),
            ],
            transcript="tests/test_flaky.py__TestLink__test_up/transcript.log",
            folder="tests/test_flaky.py__TestLink__test_up",
        )
    )
    t += 4
    records.append(
        TestRecord(
            nodeid="tests/test_flaky.py::TestLink::test_down",
            name="test_down",
            outcome="failed",
            start=t,
            stop=t + 2,
            hosts=["web-2"],
            longrepr="E   AssertionError: still up (try 3)",
            earlier=[
                Attempt("failed", "E   AssertionError: still up (try 1)", t - 4, t - 3),
                Attempt("failed", "E   AssertionError: still up (try 2)", t - 3, t - 2),
            ],
        )
    )
    t += 3
    records.append(
        TestRecord(
            nodeid="tests/test_board.py::test_boot",
            name="test_boot",
            outcome="failed",
            start=t,
            stop=t + 5,
            hosts=["board-1", "web-1"],
            crash=Crash(
                host="board-1",
                pattern="Kernel panic",
                excerpt='[   12.3] Kernel panic - not syncing: <fatal> & "bad"\n'
                "[   12.4] Call Trace:",
            ),
            transcript="tests/test_board.py__test_boot/transcript.log",
            folder="tests/test_board.py__test_boot",
        )
    )
    t += 6
    records.append(
        TestRecord(
            nodeid="tests/test_board.py::test_setup_error",
            name="test_setup_error",
            outcome="error",
            start=t,
            stop=t + 0.1,
            hosts=["db"],
            longrepr="E   otto.errors.ConnectError: db: connection refused",
        )
    )
    t += 1
    records.append(
        TestRecord(
            nodeid="tests/test_board.py::test_skip",
            name="test_skip",
            outcome="skipped",
            start=t,
            stop=t,
            longrepr="needs a board with <wifi>",
        )
    )
    return records
