"""The settings cascade: defaults, root ddmq.yaml, queue ddmq.yaml, per-message fields."""

import os
import time

import pytest
import yaml

import ddmq
from ddmq import names, settings
from ddmq.errors import ConfigError, DdmqError

from conftest import snapshot


def write(path, text):
    with open(path, "w") as handle:
        handle.write(text)


def lease_seconds(b, msg, queue="q"):
    """Return how many seconds from now the claimed ``msg`` expires."""
    return names.parse_work_name(msg.filename)[0] - time.time()


@pytest.fixture
def q(b):
    b.create_queue("q")
    return os.path.join(b.root, "q")


def test_defaults_are_the_documented_ones():
    assert settings.DEFAULTS["cleaned"] == 0
    assert settings.DEFAULTS["message_timeout"] == 600
    assert settings.DEFAULTS["priority"] == 999
    assert settings.DEFAULTS["requeue"] is True
    assert settings.DEFAULTS["requeue_prio"] == 0


def test_a_new_root_and_queue_use_the_defaults(b, q):
    assert b.get_settings("q") == settings.DEFAULTS
    assert b.get_config_file() == {}
    assert b.get_config_file("q") == {}
    msg = b.publish("q", "m")
    assert msg.priority == 999
    assert 595 < lease_seconds(b, b.consume("q")) <= 600


def test_root_file_overrides_defaults_and_queue_file_overrides_root(root):
    os.makedirs(os.path.join(root, "q", "work"))
    os.makedirs(os.path.join(root, "r", "work"))
    write(os.path.join(root, "ddmq.yaml"), "priority: 5\nmessage_timeout: 100\nrequeue: false\n")
    write(os.path.join(root, "q", "ddmq.yaml"), "priority: 7\n")
    write(os.path.join(root, "r", "ddmq.yaml"), "")
    b = ddmq.broker(root)
    assert b.get_settings("q")["priority"] == 7
    assert b.get_settings("q")["message_timeout"] == 100
    assert b.get_settings("q")["requeue"] is False
    assert b.get_settings("q")["requeue_prio"] == 0
    assert b.get_settings("r")["priority"] == 5
    assert b.publish("q", "x").priority == 7
    assert b.publish("r", "x").priority == 5
    assert 95 < lease_seconds(b, b.consume("q")) <= 100


def test_per_message_timeout_overrides_the_queue_setting(b, q):
    b.update_settings_file("q", {"message_timeout": 100})
    b.publish("q", "long", timeout=5000)
    b.publish("q", "default")
    assert 4990 < lease_seconds(b, b.consume("q")) <= 5000
    assert 90 < lease_seconds(b, b.consume("q")) <= 100


def test_per_message_requeue_false_deletes_on_nack_despite_queue_setting(b, q):
    b.publish("q", "m", requeue=False)
    assert b.nack(b.consume("q"))
    assert b.get_message_list("q") == ([], [])


def test_per_message_requeue_true_requeues_on_nack_despite_queue_setting(b, q):
    b.update_settings_file("q", {"requeue": False})
    b.publish("q", "m", requeue=True)
    b.nack(b.consume("q"))
    assert len(b.get_message_list("q")[0]) == 1


def test_publish_requeue_none_follows_the_queue_setting(b, q):
    b.update_settings_file("q", {"requeue": False})
    b.publish("q", "m")
    b.nack(b.consume("q"))
    assert b.get_message_list("q") == ([], [])
    b.update_settings_file("q", {"requeue": True})
    b.publish("q", "m")
    b.nack(b.consume("q"))
    assert len(b.get_message_list("q")[0]) == 1


def test_requeue_prio_zero_is_the_top_priority(b, q):
    b.update_settings_file("q", {"requeue_prio": 50})
    b.publish("q", "first", priority=10, requeue_prio=0)
    b.publish("q", "second", priority=10)
    msg = b.consume("q")
    assert msg.message == "first"
    b.nack(msg)
    waiting = b.get_message_list("q")[0]
    assert [name.split(".")[0] for name in waiting] == ["0", "10"]
    assert b.consume("q").message == "first"


def test_queue_requeue_prio_applies_when_the_message_sets_none(b, q):
    b.update_settings_file("q", {"requeue_prio": 50})
    b.publish("q", "m", priority=3)
    b.nack(b.consume("q"))
    assert b.get_message_list("q")[0][0].startswith("50.")


def test_default_requeue_prio_puts_a_nacked_message_first(b, q):
    for text in ("a", "b", "c"):
        b.publish("q", text, priority=5)
    msg = b.consume("q")
    b.nack(msg)
    waiting = b.get_message_list("q")[0]
    assert waiting[0].startswith("0.") and waiting[0].endswith(msg.id)


def test_requeue_limit_from_the_queue_file(b, q):
    b.update_settings_file("q", {"requeue_limit": 1})
    b.publish("q", "m")
    deliveries = 0
    while True:
        msg = b.consume("q")
        if msg is None:
            break
        deliveries += 1
        b.nack(msg)
    assert deliveries == 2


def test_update_settings_file_merges_and_is_seen_by_get_settings(b, q):
    assert b.get_settings("q")["priority"] == 999
    b.update_settings_file("q", {"priority": 3})
    b.update_settings_file("q", {"message_timeout": 20})
    assert b.get_config_file("q") == {"priority": 3, "message_timeout": 20}
    assert b.get_settings("q")["priority"] == 3
    b.update_settings_file("", {"priority": 4, "requeue": False})
    assert b.get_config_file() == {"priority": 4, "requeue": False}
    assert b.global_settings["priority"] == 4
    assert b.get_settings("q")["priority"] == 3, "the queue file still wins"
    assert b.get_settings("q")["requeue"] is False
    assert ddmq.broker(b.root).get_settings("q")["message_timeout"] == 20


def test_update_settings_file_rejects_wrong_types_and_keeps_the_file(b, q):
    before = snapshot(b.root)
    with pytest.raises(ConfigError):
        b.update_settings_file("q", {"priority": -1})
    with pytest.raises(DdmqError):
        b.update_settings_file("q", "priority: 1")
    assert snapshot(b.root) == before


def test_legacy_full_settings_files_are_read(legacy):
    legacy.queue("q", priority=12, message_timeout=30)
    b = ddmq.broker(legacy.path)
    assert b.get_settings("q")["priority"] == 12
    assert b.get_settings("q")["message_timeout"] == 30
    assert b.get_config_file() == {"cleaned": 0, "message_timeout": 600, "priority": 999,
                                   "requeue": True, "requeue_prio": 0}


def test_legacy_flow_style_settings_files_are_read(tmp_path):
    from conftest import LegacyRoot
    legacy = LegacyRoot(tmp_path / "flow", flow_yaml=True)
    legacy.queue("q", priority=12)
    with open(os.path.join(legacy.path, "q", "ddmq.yaml")) as handle:
        assert handle.read().startswith("{")
    assert ddmq.broker(legacy.path).get_settings("q")["priority"] == 12


BAD_FILES = [
    ("priority: [1, 2\n", "not valid YAML"),
    ("priority: 1\n  bad indent: 2\n", "not valid YAML"),
    ("- a list\n- not a mapping\n", "mapping"),
    ("just a string\n", "mapping"),
    ('!!python/object/apply:os.system ["echo hi"]\n', "not valid YAML"),
    ("priority: high\n", "priority"),
    ("priority: -1\n", "priority"),
    ("priority: 1.5\n", "priority"),
    ("priority: true\n", "priority"),
    ("message_timeout: -5\n", "message_timeout"),
    ("message_timeout: soon\n", "message_timeout"),
    ("requeue: maybe\n", "requeue"),
    ("requeue: 1\n", "requeue"),
    ("requeue_prio: -1\n", "requeue_prio"),
    ("requeue_limit: many\n", "requeue_limit"),
    ("cleaned: yesterday\n", "cleaned"),
    ("fsync: 1\n", "fsync"),
    ("clock_skew: -1\n", "clock_skew"),
]


@pytest.mark.parametrize("text, reason", BAD_FILES)
def test_a_bad_root_file_is_a_config_error_naming_it(root, text, reason):
    os.makedirs(root)
    path = os.path.join(root, "ddmq.yaml")
    write(path, text)
    with pytest.raises(ConfigError) as info:
        ddmq.broker(root)
    assert path in str(info.value)
    assert reason in str(info.value)
    assert info.value.error == "config"


@pytest.mark.parametrize("text, reason", BAD_FILES)
def test_a_bad_queue_file_is_a_config_error_naming_it(b, q, text, reason):
    path = os.path.join(q, "ddmq.yaml")
    write(path, text)
    before = snapshot(b.root)
    for call in (lambda: b.publish("q", "m"), lambda: b.consume("q"),
                 lambda: b.get_config_file("q")):
        with pytest.raises(ConfigError) as info:
            call()
        assert path in str(info.value)
    assert snapshot(b.root) == before


def test_hostile_yaml_never_runs_code(root, tmp_path):
    marker = tmp_path / "pwned"
    os.makedirs(root)
    write(os.path.join(root, "ddmq.yaml"),
          '!!python/object/apply:os.system ["touch {}"]\n'.format(marker))
    with pytest.raises(ConfigError):
        ddmq.broker(root)
    write(os.path.join(root, "ddmq.yaml"),
          'priority: !!python/object/apply:os.system ["touch {}"]\n'.format(marker))
    with pytest.raises(ConfigError):
        ddmq.broker(root)
    assert not marker.exists()


def test_unreadable_bytes_in_a_settings_file_are_a_config_error(root):
    os.makedirs(root)
    with open(os.path.join(root, "ddmq.yaml"), "wb") as handle:
        handle.write(b"priority: \xff\xfe\n")
    with pytest.raises(ConfigError) as info:
        ddmq.broker(root)
    assert "ddmq.yaml" in str(info.value)


def test_unknown_keys_are_kept_and_ignored(root):
    os.makedirs(os.path.join(root, "q", "work"))
    write(os.path.join(root, "ddmq.yaml"), "colour: blue\n")
    write(os.path.join(root, "q", "ddmq.yaml"), "")
    b = ddmq.broker(root)
    assert b.get_settings("q")["colour"] == "blue"
    assert b.publish("q", "m").priority == 999


FLAT_CASES = [
    "", "# only a comment\n", "a:\n", "a: \n", "a: null\nb: false\nc: true\n", "a: 1\na: 2\n",
    "a:  5  \n", "A_b9: 7\r\n", "a: 1\n\n  # note\nb: 2",
    "cleaned: 0\nmessage_timeout: 600\npriority: 999\nrequeue: true\nrequeue_prio: 0\n",
    "a: 1.5\nb: 0.25\n", "dead_letter: failed-jobs_2\n", "a: e10\n",
    "a: 010\n", "umask: '007'\n", 'umask: "027"\n',   # YAML 1.1 octal; an octal string
    # Everything below is not flat and must be left to PyYAML.
    "a: 08\n", "a: 0_7\n", "a: '8'\n",
    "a: yes\n", "a: 1 # x\n", "  a: 1\n", "a: -1\n", "a: 1e5\n", "---\na: 1\n",
    "a: Yes\n", "a: OFF\n", "a: y\n", "a: Null\n", "a: 01.5\n", "a: 1.\n",
    "a: ~\n", "a: 'x'\n", "a:1\n", "a:true\n", "key : 1\n", "a: 1\n- x\n",
]


@pytest.mark.parametrize("text", FLAT_CASES)
def test_flat_reader_agrees_with_yaml_safe_load(text):
    flat = settings._parse_flat(text)
    if flat is not None:
        assert flat == (yaml.safe_load(text) or {})
    assert (flat is None) == (FLAT_CASES.index(text) >= 16)


@pytest.mark.parametrize("values", [
    {"cleaned": 1795438455, "requeue": True, "requeue_limit": None, "fsync": False},
    {"message_timeout": 1.5}, {"custom": "text"}, {"dead_letter": "failed"},
    {"custom": "yes"}, {"custom": 1e-05},
])
def test_write_then_read_round_trips_with_or_without_yaml(tmp_path, values):
    path = str(tmp_path / "ddmq.yaml")
    settings.write(path, values)
    assert settings.read(path) == values
    assert yaml.safe_load(open(path).read()) == values


def test_a_new_root_ddmq_yaml_explains_every_setting_and_uncommented_lines_read_back(tmp_path):
    root = str(tmp_path / "r")
    ddmq.broker(root, create=True)
    with open(os.path.join(root, "ddmq.yaml")) as handle:
        text = handle.read()
    for key in settings.DEFAULTS:
        if key != "cleaned":
            assert "# {}: ".format(key) in text and settings.MEANINGS[key] in text
    uncommented = "".join(line[2:] + "\n" for line in text.splitlines()
                          if line.startswith("# requeue_delay"))
    write(os.path.join(root, "ddmq.yaml"), uncommented)
    assert ddmq.broker(root).get_config_file() == {"requeue_delay": 0, "requeue_delay_max": 3600}
