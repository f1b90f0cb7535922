"""Result records as SPEC §1 describes them."""

from __future__ import annotations

import dataclasses

import pytest

import otto
from otto import CommandStatus, RunResult, Status


def test_status_values_and_is_ok() -> None:
    assert [s.value for s in Status] == [0, 1, 2, 3]
    assert Status.Success.is_ok
    assert not Status.Failed.is_ok
    assert not Status.Error.is_ok
    assert not Status.NotRun.is_ok  # a dry run's commands (otto -n)


def test_command_status_constructs_as_the_spec_shows() -> None:
    cs = CommandStatus(command="echo hi", output="hi", status=Status.Success, retcode=0)
    assert cs.timed_out is False
    assert cs.duration == 0.0
    assert [f.name for f in dataclasses.fields(cs)][:4] == [
        "command",
        "output",
        "status",
        "retcode",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cs.output = "changed"  # type: ignore[misc]


def test_run_result_repr_and_worst_status() -> None:
    ok = CommandStatus(command="cd /tmp", output="", status=Status.Success, retcode=0)
    bad = CommandStatus(command="false", output="", status=Status.Failed, retcode=1)
    result = RunResult.of([ok, bad])
    assert result.status is Status.Failed
    assert repr(RunResult.of([ok])).startswith(
        "RunResult(status=<Status.Success: 0>, statuses=[CommandStatus(command='cd /tmp', "
    )


def test_only_needs_exactly_one() -> None:
    ok = CommandStatus(command="true", output="", status=Status.Success, retcode=0)
    assert RunResult.of([ok]).only is ok
    with pytest.raises(ValueError, match="exactly one command"):
        _ = RunResult.of([ok, ok]).only
    with pytest.raises(ValueError, match="has 0"):
        _ = RunResult.of([]).only


def test_public_names_are_sorted_and_importable() -> None:
    assert otto.__all__ == sorted(otto.__all__)
    for name in otto.__all__:
        assert hasattr(otto, name), name


def test_expect_timeout_is_a_timeout_error() -> None:
    err = otto.ExpectTimeout("local/default", ">>> ", 1.0, "partial")
    assert isinstance(err, TimeoutError)
    assert isinstance(err, otto.OttoError)
    assert err.received == "partial"
    assert "partial" in str(err)


def test_finished_record_is_a_frozen_command_status_like_any_other() -> None:
    import pickle

    record = CommandStatus.finished("ls", "a", 2, started=(0.0, 5.0), host="h", session="s")
    assert type(record) is CommandStatus
    assert record == CommandStatus(
        "ls", "a", Status.Failed, 2, False, record.duration, "", "h", "s", 5.0
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.output = "changed"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(record)) == record
    timed_out = CommandStatus.finished("x", "", 0, started=(0.0, 0.0), timed_out=True)
    assert (timed_out.status, timed_out.retcode) == (Status.Error, -1)
