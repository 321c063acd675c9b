"""Hypothesis strategies shared by the hostile-input tests."""

from __future__ import annotations

from hypothesis import strategies as st

from retry_topics import headers as rh

# The retry headers a consumer reads, plus one it ignores: hostile values go into these.
RETRY_HEADER_NAMES = st.sampled_from(
    [
        rh.ORIGIN_TOPIC,
        rh.ORIGIN_PARTITION,
        rh.ORIGIN_OFFSET,
        rh.ORIGIN_TIMESTAMP,
        rh.GROUP,
        rh.ATTEMPT,
        rh.DUE,
        rh.FIRST_FAILURE,
        rh.REPLAY_COUNT,
        rh.ERROR_STACK,
        "other",
    ]
)
