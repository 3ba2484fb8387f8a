"""The name grammar and the serving order it defines."""

import random
import time

import pytest

import ddmq
from ddmq import names
from ddmq.errors import InvalidInputError

ID = "0123456789abcdef0123456789abcdef"


def served(b, queue):
    """Consume ``queue`` until it is empty; return the message texts in the order served."""
    texts = []
    while True:
        msg = b.consume(queue)
        if msg is None:
            return texts
        texts.append(msg.message)
        b.ack(msg)


@pytest.mark.parametrize("queue", ["q", "Queue_1", "a-b", "x" * 200, "0"])
def test_check_queue_name_accepts_letters_digits_underscore_dash(queue):
    assert names.check_queue_name(queue) == queue


@pytest.mark.parametrize("queue", ["", None, 1, "../x", "a/b", "x y", ".", "..", ".tmp",
                                   "q\n", "é", b"q"])
def test_check_queue_name_rejects_everything_else(queue):
    with pytest.raises(InvalidInputError) as info:
        names.check_queue_name(queue)
    assert info.value.error == "invalid"
    assert "queue name" in str(info.value)


def test_ready_sort_key_compares_priority_as_a_number():
    nine = names.ready_name(9, "1700000000000000002", ID)
    ten = names.ready_name(10, "1700000000000000001", ID)
    assert sorted([ten, nine], key=names.ready_sort_key) == [nine, ten]
    assert sorted([ten, nine]) == [ten, nine], "as strings, the original's order, 10 first"


def test_priority_nine_is_served_before_ten(b):
    for priority in (10, 100, 9, 0, 1000):
        b.publish("q", str(priority), priority=priority)
    assert served(b, "q") == ["0", "9", "10", "100", "1000"]


def test_fifo_for_thousands_published_in_the_same_second(b, monkeypatch):
    # Freeze the clock: every number then comes from the same instant.
    frozen = time.time_ns()
    monkeypatch.setattr(names.time, "time_ns", lambda: frozen)
    texts = [str(i) for i in range(3000)]
    for text in texts:
        b.publish("q", text, clean=False)
    assert served(b, "q") == texts


def test_fifo_within_each_priority_when_priorities_interleave(b):
    sent = [(random.Random(i).choice([1, 5, 10]), str(i)) for i in range(300)]
    for priority, text in sent:
        b.publish("q", text, priority=priority, clean=False)
    expected = [text for _, text in sorted(sent, key=lambda pair: pair[0])]  # stable sort
    assert served(b, "q") == expected


def test_new_queue_numbers_are_fixed_width_and_strictly_increasing():
    numbers = [names.new_queue_number() for _ in range(20000)]
    assert {len(number) for number in numbers} == {19}
    assert all(number.isdigit() for number in numbers)
    assert all(a < b for a, b in zip(numbers, numbers[1:])), "as strings"
    assert all(int(a) < int(b) for a, b in zip(numbers, numbers[1:]))
    assert abs(int(numbers[0][:10]) - time.time()) < 5, "first 10 digits are epoch seconds"


def test_new_queue_numbers_increase_even_if_the_clock_goes_back(monkeypatch):
    first = names.new_queue_number()
    monkeypatch.setattr(names.time, "time_ns", lambda: int(first) - 10 ** 12)
    later = [names.new_queue_number() for _ in range(3)]
    assert first < later[0] < later[1] < later[2]


def test_broker_get_queue_number_is_a_new_queue_number(b):
    first, second = b.get_queue_number(), b.get_queue_number()
    assert len(first) == len(second) == 19
    assert int(first) < int(second)


def test_legacy_queue_numbers_of_varying_length_sort_by_time_value():
    # The original wrote str(time.time()) without its point: trailing zeros
    # of the fraction vanish, so numbers of one second differ in length.
    in_time_order = ["1538638378", "153863837805", "15386383781", "1538638378123",
                     "15386383785", "1538638379", "1700000000000000000"]
    shuffled = list(in_time_order)
    random.Random(1).shuffle(shuffled)
    ready = [names.ready_name(999, number, ID) for number in shuffled]
    ordered = sorted(ready, key=names.ready_sort_key)
    assert [name.split(".")[1] for name in ordered] == in_time_order


def test_legacy_small_integer_queue_numbers_sort_as_numbers():
    ready = [names.ready_name(999, number, ID) for number in ("10", "9", "2", "1", "100")]
    ordered = sorted(ready, key=names.ready_sort_key)
    assert [name.split(".")[1] for name in ordered] == ["1", "2", "9", "10", "100"]


def test_legacy_queue_numbers_are_served_in_time_order(legacy):
    legacy.queue("q")
    numbers = ["15386383785", "1538638378", "1538638379", "153863837805", "15386383781"]
    for number in numbers:
        legacy.message("q", number, queue_number=number)
    b = ddmq.broker(legacy.path)
    assert served(b, "q") == ["1538638378", "153863837805", "15386383781", "15386383785",
                              "1538638379"]


@pytest.mark.parametrize("name", [
    "ddmq.yaml", "work", ".tmp", ".quarantine", "999.1.ddmq", "999.ddmq" + ID, "x.1.ddmq" + ID,
    "-1.1.ddmq" + ID, "999.1.ddmq" + ID + ".tmp", "999.1.ddmq" + ID + "/x", "999.1.1.ddmq" + ID,
    "1700000000.999.1.ddmq" + ID, " 999.1.ddmq" + ID, "999.1.DDMQ" + ID, ".999.1.ddmq" + ID])
def test_ready_sort_key_is_none_for_names_that_are_not_waiting_messages(name):
    assert names.ready_sort_key(name) is None
    assert not names.READY_NAME.match(name)


def test_ready_name_matches_its_own_pattern_and_parts():
    name = names.ready_name(12, "1700000000123456789", ID)
    assert name == "12.1700000000123456789.ddmq" + ID
    assert names.READY_NAME.match(name).groups() == ("12", "1700000000123456789", ID)
    assert names.ready_sort_key(name)[0] == 12


def test_leases_hold_the_expiry_and_are_unique_per_claim():
    leases = {names.new_lease(1700000123.9) for _ in range(1000)}
    assert len(leases) > 990, "9 random digits make destinations unique"
    for lease in leases:
        assert len(lease) == 19 and lease.startswith("1700000123")


@pytest.mark.parametrize("expiry", [1e12, 10 ** 15, float("inf")])
def test_leases_beyond_ten_digits_of_seconds_are_capped_not_wrapped(expiry):
    # A lease's first 10 digits are its expiry: 13 digits would read as 2001.
    lease = names.new_lease(expiry)
    assert len(lease) == 19
    assert lease[:10] == "9999999999"


def test_parse_work_name_reads_new_and_legacy_names():
    ready = names.ready_name(5, "1700000000000000000", ID)
    work = names.work_name(names.new_lease(1800000000), ready)
    assert names.parse_work_name(work) == (1800000000, ready)
    legacy = "1538638378.999.1.ddmq" + ID
    assert names.parse_work_name(legacy) == (1538638378, "999.1.ddmq" + ID)
    assert names.WORK_NAME.match(legacy)


@pytest.mark.parametrize("name", ["999.1.ddmq" + ID, "ddmq.yaml", "1538638378.999.1.ddmq",
                                  "../1538638378.999.1.ddmq" + ID, "x.999.1.ddmq" + ID])
def test_parse_work_name_is_none_for_other_names(name):
    assert names.parse_work_name(name) is None
