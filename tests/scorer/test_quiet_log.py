"""The quiet log: refusals summed up at most once per interval; grpc.aio's late-answer
traceback counted instead of logged."""

from __future__ import annotations

import logging

import pytest

from scorefleet.scorer.quiet_log import GRPC_AIO_LOGGER, LateAnswerFilter, QuietLog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_summary_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = QuietLog(logging.getLogger("test.quiet"), interval=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        for _ in range(5000):
            quiet.count("expired", "queued")
        quiet.count("shed", "queue_full", 7)
        quiet.count("cancelled", "client")
        clock.now += 10
        assert quiet.flush() is None  # interval not over: nothing written
        clock.now += 20
        line = quiet.flush()
        assert quiet.flush(force=True) is None  # nothing new since
    assert line == ("last 30s: shed 7 (queue_full 7); expired 5000 (queued 5000); "
                    "cancelled 1 (client 1)")
    assert [r.getMessage() for r in caplog.records] == [line]
    assert caplog.records[0].levelno == logging.WARNING  # shedding is the server's problem


def test_client_side_outcomes_alone_are_info(caplog: pytest.LogCaptureFixture) -> None:
    quiet = QuietLog(logging.getLogger("test.quiet"), clock=Clock())
    quiet.count("expired", "before_start", 3)
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        quiet.flush(force=True)
    assert caplog.records[0].levelno == logging.INFO


def test_traceback_once_per_kind_and_interval(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = QuietLog(logging.getLogger("test.quiet"), interval=30.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="test.quiet"):
        for _ in range(3):
            try:
                raise KeyError("x")
            except KeyError:
                quiet.exception("KeyError", "Score failed")
        clock.now += 30
        quiet.flush()
        try:
            raise KeyError("y")
        except KeyError:
            quiet.exception("KeyError", "Score failed")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 2  # one per interval
    assert "internal 3 (KeyError 3)" in caplog.records[1].getMessage()


def test_late_answer_records_are_counted_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    late: list[int] = []
    grpc_log = logging.getLogger(GRPC_AIO_LOGGER)
    log_filter = LateAnswerFilter(lambda: late.append(1))
    grpc_log.addFilter(log_filter)
    try:
        with caplog.at_level(logging.INFO, logger=GRPC_AIO_LOGGER):
            grpc_log.error("ExecuteBatchError raised in core by servicer method [%s]", "/a/B")
            grpc_log.error("something else")
    finally:
        grpc_log.removeFilter(log_filter)
    assert late == [1]
    assert [r.getMessage() for r in caplog.records] == ["something else"]
