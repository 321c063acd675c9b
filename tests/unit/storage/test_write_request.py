"""storage/requests.py WriteRequest: a request is built with a way to report its result."""

from __future__ import annotations

import pytest

from storage.requests import Status, WriteRequest


def test_a_request_without_any_completion_is_refused_where_it_is_built() -> None:
    with pytest.raises(ValueError, match="on_done or on_done_all"):
        WriteRequest(
            group="g",
            origin_topic="t",
            origin_partition=0,
            origin_offset=1,
            event_type="Report",
            status=Status.SUCCEEDED,
        )


def test_either_completion_is_enough() -> None:
    WriteRequest("g", "t", 0, 1, "Report", Status.SUCCEEDED, on_done=lambda _r: None)
    WriteRequest("g", "t", 0, 1, "Report", Status.SUCCEEDED, on_done_all=lambda _rs: None)
