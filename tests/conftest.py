"""Shared fixtures: a fresh root, a broker on it, disk snapshots and legacy 0.9.14 queues."""

import json
import os
import shutil
import uuid

import pytest

import ddmq

#: The settings the original ddmq 0.9.14 wrote into every ddmq.yaml it created.
LEGACY_SETTINGS = {"cleaned": 0, "message_timeout": 600, "priority": 999, "requeue": True,
                   "requeue_prio": 0}


@pytest.fixture
def root(tmp_path):
    """Return the path of a root folder that does not exist yet."""
    return str(tmp_path / "ddmq")


@pytest.fixture
def b(root):
    """Return a broker on a fresh root, made with create=True."""
    return ddmq.broker(root, create=True)


def snapshot(path):
    """Return {relative path: bytes, or None for a folder} of everything under ``path``."""
    found = {}
    for folder, dirs, files in os.walk(path):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), path)] = None
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as handle:
                found[os.path.relpath(full, path)] = handle.read()
    return found


def read_json(path):
    """Return the decoded JSON object in the file at ``path``."""
    with open(path, "rb") as handle:
        return json.loads(handle.read().decode("utf-8"))


def legacy_yaml(settings, flow):
    """Return ``settings`` as PyYAML < 5.1 ``yaml.dump`` wrote them (flow) or in block style."""
    def text(value):
        return {True: "true", False: "false"}.get(value, str(value)) \
            if isinstance(value, bool) else str(value)
    items = ["{}: {}".format(key, text(value)) for key, value in sorted(settings.items())]
    return "{" + ", ".join(items) + "}\n" if flow else "".join(i + "\n" for i in items)


class LegacyRoot:
    """Build a root folder exactly as the original ddmq 0.9.14 left it on disk.

    No ``.tmp/`` or ``.quarantine/``; ``ddmq.yaml`` files with the full
    default settings; waiting messages ``<prio>.<n>.ddmq<id>`` and claimed
    ones ``<10-digit expiry>.<prio>.<n>.ddmq<id>`` holding the original's
    JSON keys (no ``requeue_prio``: a custom requeue priority is an int in
    ``requeue``).
    """

    def __init__(self, path, flow_yaml=False):
        self.path = str(path)
        self.flow_yaml = flow_yaml
        os.makedirs(self.path)
        self._write(os.path.join(self.path, "ddmq.yaml"),
                    legacy_yaml(LEGACY_SETTINGS, flow_yaml).encode())

    def queue(self, name, **settings):
        """Create the queue folder ``name`` with its ddmq.yaml and work/; return its path."""
        queue_dir = os.path.join(self.path, name)
        os.makedirs(os.path.join(queue_dir, "work"))
        self._write(os.path.join(queue_dir, "ddmq.yaml"),
                    legacy_yaml(dict(LEGACY_SETTINGS, **settings), self.flow_yaml).encode())
        return queue_dir

    def message(self, queue, text, priority=999, queue_number="1", requeue=False,
                requeue_counter=0, requeue_limit=None, timeout=None, expiry=None, msg_id=None):
        """Write one legacy message, waiting or (with ``expiry``) claimed; return (name, id)."""
        msg_id = msg_id or uuid.uuid4().hex
        ready = "{}.{}.ddmq{}".format(priority, queue_number, msg_id)
        package = {"priority": priority, "queue_number": str(queue_number),
                   "requeue_counter": requeue_counter, "filename": "{}/{}".format(queue, ready),
                   "queue": queue, "requeue_limit": requeue_limit, "timeout": timeout,
                   "message": text, "requeue": requeue, "id": msg_id}
        if expiry is None:
            name, path = ready, os.path.join(self.path, queue, ready)
        else:
            name = "{:010d}.{}".format(int(expiry), ready)
            path = os.path.join(self.path, queue, "work", name)
        self._write(path, json.dumps(package).encode())
        return name, msg_id

    @staticmethod
    def _write(path, data):
        with open(path, "wb") as handle:
            handle.write(data)


@pytest.fixture
def legacy(tmp_path):
    """Return a LegacyRoot builder on a fresh folder."""
    return LegacyRoot(tmp_path / "legacy")


class Clock:
    """A settable clock for a broker's leases and history times."""

    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


# The GlusterFS rig: one volume on 127.0.0.1 mounted through three FUSE clients.
MOUNTS = {"a": "/tmp/dfs-mnt-ga", "b": "/tmp/dfs-mnt-gb", "c": "/tmp/dfs-mnt-gc"}
RIG = "bash /work/shared/dfs/up-gluster.sh (as root)"


def glusterfs_mounts():
    """Return the mount points of the GlusterFS clients mounted now."""
    with open("/proc/mounts") as handle:
        return {fields[1] for fields in (line.split() for line in handle)
                if fields[2] == "fuse.glusterfs"}


def rig_paths(prefix):
    """Yield {mount letter: path} of one fresh folder seen through each mount; remove it after.

    Skips the test, saying how to start the rig, when it is not up; with
    ``DDMQ_REQUIRE_DFS=1`` (set by ``.ci/run``) fails it instead.
    """
    missing = sorted(set(MOUNTS.values()) - glusterfs_mounts())
    if missing:
        reason = "GlusterFS rig is not up (missing mounts: {}); start it with {}".format(
            ", ".join(missing), RIG)
        if os.environ.get("DDMQ_REQUIRE_DFS") == "1":
            pytest.fail("DDMQ_REQUIRE_DFS=1 but the " + reason)
        pytest.skip(reason)
    name = prefix + uuid.uuid4().hex[:12]
    paths = {letter: os.path.join(mount, name) for letter, mount in MOUNTS.items()}
    yield paths
    shutil.rmtree(paths["a"], ignore_errors=True)
