"""Scale-out: three instances in one consumer group over twelve partitions.

What running more replicas (README "Running at scale", KEDA) relies on: three `qchem-events run`
processes, configured only through the environment as a pod is, split the group's partitions
between them - the broker's view of the group shows three members, each holding a share, no
partition held twice - and a backlog spread over all twelve main-topic partitions is applied
exactly once (the no-loss oracle: nothing lost, nothing applied twice, offsets at the end).

Instances are added as KEDA adds them: one first, which takes every partition, then two more.

The group consumes the main topic and its three retry tiers (48 partitions here). With the
classic protocol's cooperative-sticky assignor the three instances held 6, 6 and 0 main-topic
partitions (it balances each member's total, not each topic: 5 runs of 5), so one instance did
no main-topic work. The listeners now join with KIP-848's consumer protocol and the broker's
`range` assignor, which splits each topic: 4, 4 and 4 (consumers/listener.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from sqlalchemy.engine import Engine

from common.settings import Settings
from devtools.kafka import kafka_config
from ops.topics import create_topics
from retry_topics.naming import topic_names
from tests.support.app import AppProcess, assert_no_crash, kill_alive
from tests.support.faults import tagged_events
from tests.support.kafka import end_offsets, produce_events, wait_for
from tests.support.oracle import Oracle

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

INSTANCES = 3
PARTITIONS = 12
EVENTS = 3000


def group_shares(settings: Settings) -> list[set[tuple[str, int]]]:
    """Per member of the group (the broker's view): the partitions it holds."""
    names = topic_names(settings, "ChemicalStatus")
    admin = AdminClient(kafka_config(settings))
    (future,) = admin.describe_consumer_groups([names.group]).values()
    try:
        members = future.result(timeout=10).members
    except (KafkaException, TimeoutError):
        # The coordinator of a fresh broker may still be loading the group: asked again by
        # wait_for. (Seen once, on a broker started seconds before.)
        return []
    return [{(tp.topic, tp.partition) for tp in m.assignment.topic_partitions} for m in members]


def settled_shares(settings: Settings) -> list[set[tuple[str, int]]] | None:
    """The members' shares once all three hold some and every partition is held."""
    total = PARTITIONS * len(topic_names(settings, "ChemicalStatus").consumed())
    shares = group_shares(settings)
    if len(shares) == INSTANCES and all(shares) and sum(map(len, shares)) == total:
        return shares
    return None


def scale_up(settings: Settings, tmp_path: Path) -> tuple[list[AppProcess], list[set[Any]]]:
    """One instance, which takes every partition, then the others join: KEDA's scale-up."""
    apps = [AppProcess(settings, tmp_path / f"app{i}.log") for i in range(INSTANCES)]
    total = PARTITIONS * len(topic_names(settings, "ChemicalStatus").consumed())
    apps[0].start()
    wait_for(
        lambda: [len(s) for s in group_shares(settings)] == [total],
        timeout=60,
        interval=0.5,
        message="the first instance holding every partition",
    )
    for app in apps[1:]:
        app.start()
    shares = wait_for(
        lambda: settled_shares(settings),
        timeout=90,
        interval=0.5,
        message=f"{INSTANCES} members each holding part of the group's partitions",
    )
    return apps, shares


@contextmanager
def scaled_out(
    settings: Settings, tmp_path: Path
) -> Iterator[tuple[Settings, list[AppProcess], list[set[Any]]]]:
    """INSTANCES instances over PARTITIONS partitions, scaled up one by one (scale_up):
    (their settings, the instances, their shares); every instance stopped afterwards."""
    settings = settings.model_copy(
        update={"event_types": ("ChemicalStatus",), "topic_partitions": PARTITIONS}
    )
    create_topics(settings)
    apps: list[AppProcess] = []
    try:
        apps, shares = scale_up(settings, tmp_path)
        yield settings, apps, shares
    finally:
        kill_alive(apps)


def test_three_instances_share_the_partitions_and_apply_each_event_once(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    with scaled_out(settings, tmp_path) as (settings, apps, shares):
        names = topic_names(settings, "ChemicalStatus")
        held = sorted(tp for share in shares for tp in share)
        assert len(held) == len(set(held)), "no partition held by two instances"
        assert {p for t, p in held if t == names.main} == set(range(PARTITIONS))
        main_split = [sorted(p for t, p in share if t == names.main) for share in shares]
        print(f"\npartitions per instance {[len(s) for s in shares]}, main topic {main_split}")

        events = tagged_events("ChemicalStatus", EVENTS, tag=settings.topic_prefix, keys=600)
        oracle = Oracle(settings, db_engine, name="scale-out")
        oracle.expect(events)
        started = time.monotonic()
        produce_events(settings.kafka_bootstrap_servers, names.main, events)
        ends = end_offsets(settings, names.main)
        assert all(ends[p] > 0 for p in range(PARTITIONS)), ends  # every partition has work
        drain_s = oracle.wait_drained(started, timeout=180)
        for app in apps:
            assert app.alive(), app.log()[-2000:]
            assert app.terminate() == 0, app.log()[-2000:]
    assert_no_crash(apps)
    report = oracle.check(faults=0, drain_s=drain_s)
    report.extra.update(instances=INSTANCES, partitions=PARTITIONS)
    print(report.summary())
    report.assert_clean()
    assert report.succeeded == EVENTS and report.duplicated == 0 and report.lost == 0


def test_each_instance_holds_a_share_of_the_main_topic(
    settings: Settings, db_engine: Engine, tmp_path: Path
) -> None:
    with scaled_out(settings, tmp_path) as (settings, _apps, shares):
        main = topic_names(settings, "ChemicalStatus").main
        main_split = [sorted(p for t, p in share if t == main) for share in shares]
        print(f"\nmain-topic partitions per instance: {main_split}")
        # KIP-848's range assignor splits each topic: 12 main partitions, 4 per instance.
        assert [len(s) for s in main_split] == [PARTITIONS // INSTANCES] * INSTANCES, main_split
