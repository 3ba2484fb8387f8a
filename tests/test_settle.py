"""The settle decision on its own: the cascade of forced choice, message fields and settings."""

import pytest

from ddmq import message, settings, settle


def _conf(**changes):
    return dict(settings.DEFAULTS, **changes)


def _msg(**fields):
    fields.setdefault("requeue_counter", 0)
    return message(queue="q", message="x", **fields)


def test_default_settings_requeue_at_the_requeue_priority():
    assert settle.decide(_msg(), _conf()) == settle.Decision(settle.REQUEUE, priority=0)


def test_message_requeue_prio_beats_the_queue_setting():
    decision = settle.decide(_msg(requeue_prio=7), _conf(requeue_prio=3))
    assert (decision.action, decision.priority) == (settle.REQUEUE, 7)


@pytest.mark.parametrize("msg_limit, conf_limit, counter, action", [
    (None, None, 100, settle.REQUEUE),
    (None, 2, 1, settle.REQUEUE),
    (None, 2, 2, settle.DROP),
    (3, 2, 2, settle.REQUEUE),
    (0, None, 0, settle.DROP),
])
def test_requeue_limit_of_the_message_then_the_queue(msg_limit, conf_limit, counter, action):
    msg = _msg(requeue_limit=msg_limit, requeue_counter=counter)
    assert settle.decide(msg, _conf(requeue_limit=conf_limit)).action == action


def test_requeue_false_on_the_message_or_queue_drops():
    assert settle.decide(_msg(requeue=False), _conf()).action == settle.DROP
    assert settle.decide(_msg(), _conf(requeue=False)).action == settle.DROP
    assert settle.decide(_msg(requeue=True), _conf(requeue=False)).action == settle.REQUEUE


def test_forced_choice_wins_over_settings_and_limit():
    spent = _msg(requeue_limit=1, requeue_counter=5, requeue=False)
    assert settle.decide(spent, _conf(), forced=True).action == settle.REQUEUE
    assert settle.decide(_msg(), _conf(), forced=False).action == settle.DROP


@pytest.mark.parametrize("counter, expected", [(0, 10), (1, 30), (2, 90), (3, 100), (5000, 100)])
def test_retry_delay_grows_by_the_backoff_to_its_cap(counter, expected):
    conf = _conf(requeue_delay=10, requeue_backoff=3, requeue_delay_max=100)
    decision = settle.decide(_msg(requeue_counter=counter), conf)
    assert decision.delay == expected


def test_no_retry_delay_by_default_and_an_explicit_one_wins():
    assert settle.decide(_msg(requeue_counter=9), _conf()).delay == 0
    assert settle.decide(_msg(), _conf(requeue_delay=50), delay=0).delay == 0
    assert settle.decide(_msg(), _conf(), delay=7).delay == 7


def test_given_up_messages_go_to_the_dead_letter_queue_unless_it_is_their_own():
    conf = _conf(dead_letter="dlq", requeue_limit=0)
    decision = settle.decide(_msg(), conf, queue="q")
    assert (decision.action, decision.queue, decision.reason) == (
        settle.DEAD_LETTER, "dlq", "requeue limit 0 reached")
    assert settle.decide(_msg(), conf, queue="dlq").action == settle.DROP
    mine = settle.decide(_msg(dead_letter="mine"), conf, forced=False, queue="q")
    assert (mine.queue, mine.reason) == ("mine", "nacked without requeue")
