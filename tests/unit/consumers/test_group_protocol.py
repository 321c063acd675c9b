"""The consumer group protocol's configuration is one librdkafka accepts, for both protocols.

librdkafka refuses session.timeout.ms, heartbeat.interval.ms and partition.assignment.strategy
with group.protocol=consumer (KIP-848: the broker owns them), and it refuses them when the
Consumer is built - no broker needed to see it.
"""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from consumers.listener import consumer_config

COMMON = {"bootstrap.servers": "127.0.0.1:1"}


@pytest.mark.parametrize("protocol", ["consumer", "classic"])
def test_librdkafka_accepts_the_configuration(protocol: str) -> None:
    config = consumer_config(COMMON, "g", protocol)  # type: ignore[arg-type]
    Consumer(config).close()


def test_the_consumer_protocol_asks_for_the_range_assignor() -> None:
    # range splits each topic: every instance holds a share of the main topic
    # (tests/integration/consumers/test_scale_out.py).
    config = consumer_config(COMMON, "g")
    assert config["group.protocol"] == "consumer"
    assert config["group.remote.assignor"] == "range"
    assert "partition.assignment.strategy" not in config


def test_the_classic_protocol_keeps_incremental_rebalancing() -> None:
    config = consumer_config(COMMON, "g", "classic")
    assert config["partition.assignment.strategy"] == "cooperative-sticky"
