"""Clocks: leases written on one host and judged on another whose clock differs.

A consumer's lease expires at ``expiry + clock_skew < now``, ``now`` being the
judging host's clock.  Hosts here are brokers with an injected clock, and
processes whose whole clock is shifted by libfaketime (Debian's ``faketime``).
"""

import os
import subprocess
import sys
import time

import pytest

import ddmq
from ddmq.clock import PROBE_NAME, FilesystemClock
from ddmq.errors import ConfigError

FIVE_MINUTES = 300
TIMEOUT = 60
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


class Clock:
    def __init__(self, offset=0.0):
        self.offset = offset

    def __call__(self):
        return time.time() + self.offset


@pytest.fixture
def root(tmp_path):
    root = str(tmp_path / "root")
    b = ddmq.broker(root, create=True)
    b.create_queue("q")
    b.update_settings_file("q", {"message_timeout": TIMEOUT})
    return root


def _claim_on_true_host(root):
    b = ddmq.broker(root)
    b.publish("q", "live work")
    msg = b.consume("q")
    assert msg is not None
    return b, msg


def test_without_skew_tolerance_a_fast_host_steals_a_live_lease(root):
    b, msg = _claim_on_true_host(root)
    fast = ddmq.broker(root, clock=Clock(FIVE_MINUTES))
    fast.clean("q", force=True)
    assert b.ack(msg) == [], "the hazard the clock_skew setting exists for"


@pytest.mark.parametrize("where", ["root", "queue"])
def test_a_host_five_minutes_fast_does_not_steal_live_leases_within_clock_skew(root, where):
    ddmq.broker(root).update_settings_file("" if where == "root" else "q",
                                           {"clock_skew": FIVE_MINUTES + 10})
    b, msg = _claim_on_true_host(root)
    fast = ddmq.broker(root, clock=Clock(FIVE_MINUTES))
    assert fast.clean("q", force=True)
    assert fast.consume("q") is None
    assert b.ack(msg) == [msg.filename]


def test_a_host_five_minutes_slow_writes_leases_others_do_not_steal(root):
    ddmq.broker(root).update_settings_file("q", {"clock_skew": FIVE_MINUTES + 10})
    slow = ddmq.broker(root, clock=Clock(-FIVE_MINUTES))
    slow.publish("q", "work")
    msg = slow.consume("q")   # its lease expires 5 minutes early by the true clock
    true_host = ddmq.broker(root)
    true_host.clean("q", force=True)
    assert slow.ack(msg) == [msg.filename]


def test_an_expired_lease_is_still_reclaimed_by_a_skewed_host(root):
    ddmq.broker(root).update_settings_file("q", {"clock_skew": FIVE_MINUTES + 10})
    b, msg = _claim_on_true_host(root)   # its consumer dies: the lease must come back
    skewed = FIVE_MINUTES + TIMEOUT + FIVE_MINUTES + 20   # 5 min fast, after expiry + skew
    fast = ddmq.broker(root, clock=Clock(skewed))
    fast.clean("q", force=True)
    again = fast.consume("q")
    assert again is not None and again.id == msg.id and again.requeue_counter == 1


# The filesystem's clock

def test_filesystem_clock_reads_the_kernel_clock_on_a_local_disk(root):
    clock = FilesystemClock(root)
    assert abs(clock() - time.time()) < 1
    probe = os.path.join(root, PROBE_NAME)
    stamp = os.stat(probe).st_mtime_ns
    clock()
    assert os.stat(probe).st_mtime_ns == stamp, "probed once per interval, not per call"
    assert ddmq.broker(root).list_queues() == ["q"], "the probe file is not a queue"


def test_clock_setting_selects_the_filesystem_clock(root):
    b = ddmq.broker(root)
    assert b.clock is time.time
    b.update_settings_file("", {"clock": "filesystem"})
    assert isinstance(ddmq.broker(root).clock, FilesystemClock)
    injected = Clock()
    assert ddmq.broker(root, clock=injected).clock is injected
    with open(os.path.join(root, "ddmq.yaml"), "a") as handle:
        handle.write("clock: sundial\n")
    with pytest.raises(ConfigError, match="clock"):
        ddmq.broker(root)


def test_filesystem_clock_on_a_read_only_root_is_a_clear_error(root, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(ddmq.DdmqError, match="clock.*Read-only"):
        FilesystemClock(root)()


# A whole process with a shifted clock (libfaketime)

CLEANER = """
import sys, time
sys.path.insert(0, {src!r})
import ddmq
b = ddmq.broker({root!r})
print(time.time())
b.clean("q", force=True)
"""


def _clean_in_a_process_five_minutes_fast(root):
    if not os.path.exists(LIBFAKETIME):
        pytest.skip("NOT TESTED: libfaketime is not installed (apt-get install faketime)")
    env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME="+{}s".format(FIVE_MINUTES),
               FAKETIME_DONT_FAKE_MONOTONIC="1")
    code = CLEANER.format(src=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          root=root)
    before = time.time()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout) - before > FIVE_MINUTES - 5, "the process's clock was not shifted"


def test_faked_fast_process_steals_without_tolerance(root):
    b, msg = _claim_on_true_host(root)
    _clean_in_a_process_five_minutes_fast(root)
    assert b.ack(msg) == []


def test_faked_fast_process_does_not_steal_within_clock_skew(root):
    ddmq.broker(root).update_settings_file("", {"clock_skew": FIVE_MINUTES + 10})
    b, msg = _claim_on_true_host(root)
    _clean_in_a_process_five_minutes_fast(root)
    assert b.ack(msg) == [msg.filename]


def test_faked_fast_process_with_the_filesystem_clock_does_not_steal(root):
    # No skew tolerance at all: the fast process takes "now" from the disk.
    ddmq.broker(root).update_settings_file("", {"clock": "filesystem"})
    b, msg = _claim_on_true_host(root)
    _clean_in_a_process_five_minutes_fast(root)
    assert b.ack(msg) == [msg.filename]
