"""A consumer process for the lifecycle tests: acks good messages, nacks bad ones, logs acks.

    python lifecycle_worker.py ROOT QUEUE LOG STOP_FILE [CLEAN_EVERY]

A message whose text starts with "bad" is always nacked; any other is acked,
and its id is written to LOG (one line, flushed) *before* the ack, so a
kill between the two can only make the log claim an ack that a later
delivery repeats, never hide one.  With CLEAN_EVERY (seconds), expired
claims are cleaned that often.  Runs until STOP_FILE exists and the queue
is empty.
"""

import os
import sys
import time

import ddmq


def handle(b, queue, log):
    """Consume and settle one message; return False if there was none."""
    msg = b.consume(queue, skip_cleaning=True)
    if msg is None:
        return False
    if str(msg.message).startswith("bad"):
        b.nack(msg, reason="always fails", skip_cleaning=True)
    else:
        log.write("{} {}\n".format(queue, msg.id))
        log.flush()
        b.ack(msg, skip_cleaning=True)
    return True


def main(root, queue, log_path, stop_file, clean_every="0"):
    b = ddmq.broker(root)
    clean_every = float(clean_every)
    last_clean = 0.0
    with open(log_path, "a") as log:
        while True:
            if clean_every and time.monotonic() - last_clean > clean_every:
                b.clean(queue, force=True)
                last_clean = time.monotonic()
            if not handle(b, queue, log):
                if os.path.exists(stop_file):
                    return
                time.sleep(0.01)


if __name__ == "__main__":
    main(*sys.argv[1:])
