"""Keeping the end of a run's log (`logkeeping.bounded`)."""

from autoscene import logkeeping


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def test_a_short_log_is_kept_whole() -> None:
    log = b"line one\nline two\n"
    assert logkeeping.bounded(chunks(log, 3), limit=100) == log
    assert logkeeping.bounded([], limit=100) == b""


def test_a_long_log_keeps_its_last_whole_lines_and_says_what_was_left_out() -> None:
    lines = [f"line {number:05d}\n".encode() for number in range(10_000)]  # 11 bytes each
    log = b"".join(lines)
    kept = logkeeping.bounded(chunks(log, 4096), limit=1000)
    note, _, rest = kept.partition(b"\n")
    assert rest == b"".join(lines[-(len(rest) // 11) :])  # whole lines only, the newest ones
    assert 1000 - 11 < len(rest) <= 1000
    assert note == f"[the first {len(log) - len(rest)} bytes of the log were not kept]".encode()


def test_a_log_of_exactly_the_limit_is_kept_whole() -> None:
    log = (b"y" * 9 + b"\n") * 100
    assert logkeeping.bounded(chunks(log, 7), limit=len(log)) == log
    assert logkeeping.bounded(chunks(log, 7), limit=len(log) - 1).startswith(b"[the first 10 bytes")


def test_logs_are_kept_beside_the_records_files() -> None:
    assert logkeeping.log_path("run-1") == "logs/run-1.log"
