"""``LoadGenerator.start`` refuses bad arguments in the pytest process, before any child starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_clover.load.run import LoadGenerator


@pytest.mark.parametrize(
    "headers",
    [{"X-Evil": "a\r\nHost: elsewhere"}, {"": "empty name"}, {"Bad Name": "x"}, {"X-Colon:": "x"}, {"X-Nul": "a\0b"}],
)
def test_a_header_that_would_break_the_request_is_refused_before_the_child_starts(
    tmp_path: Path, headers: dict[str, str]
) -> None:
    gen = LoadGenerator("http://127.0.0.1:9", report_dir=tmp_path / "load")
    with pytest.raises(ValueError, match="is not a valid HTTP header"):
        gen.start(rate=1.0, headers=headers)
    assert not (tmp_path / "load" / "load-worker.log").exists(), "a child was started"
