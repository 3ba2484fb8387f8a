"""Stress: 4 producer and 3 consumer processes on one queue, every message counted.

CI size: 20,000 messages; ``DDMQ_LONG=1``: 100,000.
"""

import os

import pytest

import ddmq
from reliability_worker import Fleet, reconcile, scale

PRODUCERS = 4
CONSUMERS = 3


@pytest.mark.timeout(scale(300, 3600))
def test_four_producers_three_consumers_exactly_once(tmp_path):
    total = scale(20_000, 100_000)
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    fleet = Fleet(str(tmp_path / "logs"))
    stop = str(tmp_path / "stop")
    per = total // PRODUCERS
    for p in range(PRODUCERS):
        fleet.start("produce", "producer", "--root", root, "--queue", "q", "--prefix",
                    "p{}".format(p), "--start", 0, "--count", per, "--priorities", "1,5,999")
    for _ in range(CONSUMERS):
        fleet.start("consume", "consumer", "--root", root, "--queue", "q", "--stop-file", stop)
    fleet.wait("producer")
    open(stop, "w").close()
    fleet.wait("consumer")

    assert fleet.crashes() == []
    result = reconcile(fleet.logs())
    print(result)
    assert result.published == total
    assert result.lost == 0
    assert result.duplicates == 0
    assert result.damaged == 0
    assert result.phantoms == 0
    assert result.deliveries == total
    assert b.get_message_list("q") == ([], [])
    assert os.listdir(os.path.join(root, "q", ".tmp")) == []
