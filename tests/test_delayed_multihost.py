"""Delayed messages falling due while consumers on three GlusterFS mounts compete to promote them.

Uses the rig of ``test_multihost`` (skips, or fails with DDMQ_REQUIRE_DFS=1, without it).
"""

import collections
import os
import subprocess
import sys
import time

import pytest

import ddmq
from test_multihost import roots  # noqa: F401  (the fixture)

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lifecycle_worker.py")


@pytest.mark.timeout(300)
def test_due_messages_promoted_from_three_mounts_are_each_delivered_once(roots, tmp_path):  # noqa: F811
    b = ddmq.broker(roots["a"])
    total = 300
    due = time.time() + 4
    ids = {msg.id for msg in b.publish_many("q", ["good-{}".format(i) for i in range(total)],
                                            not_before=due)}
    assert len(b.get_delayed_list("q")) == total
    stop = str(tmp_path / "stop")
    logs = {letter: str(tmp_path / ("log-" + letter)) for letter in roots}
    workers = [subprocess.Popen([sys.executable, WORKER, roots[letter], "q", logs[letter], stop])
               for letter in roots]
    seen = collections.Counter()
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            time.sleep(0.5)
            seen = collections.Counter()
            for path in logs.values():
                if os.path.exists(path):
                    with open(path) as handle:
                        seen.update(line.split()[1] for line in handle if line.endswith("\n"))
            if sum(seen.values()) >= total and time.time() > due + 3:
                break
    finally:
        open(stop, "w").close()
        for worker in workers:
            worker.wait(timeout=60)
    assert set(seen) == ids
    assert max(seen.values()) == 1
    assert b.get_delayed_list("q") == [] and b.get_message_list("q") == ([], [])
    consumers = [letter for letter, path in logs.items() if os.path.getsize(path)]
    assert len(consumers) >= 2   # the work was shared: the promotions raced
