"""Admission by predicted wait (orderhub/orders/admission.py): sagas in flight over the measured
drain rate, against the target; a stall is told from a slow drain. The sagas are real rows in the
test database, their end times set where a drain would have put them."""
import math
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from orderhub.orders import admission
from sagas.models import SagaInstance, SagaStatus

pytestmark = pytest.mark.django_db(databases="__all__")


@pytest.fixture(autouse=True)
def door(settings):
    settings.ADMISSION_TARGET_SECONDS = 5.0
    settings.ADMISSION_RATE_WINDOW = 10.0
    settings.ADMISSION_MIN_IN_FLIGHT = 10
    settings.ADMISSION_MAX_IN_FLIGHT = 300
    settings.ADMISSION_RETRY_AFTER = 2
    return settings


@pytest.fixture(autouse=True)
def clock(monkeypatch):
    """One instant for the whole test: the rows' times and the estimate's `now` (creating a hundred
    rows takes a while on a loaded machine, and the window would slide meanwhile)."""
    frozen = timezone.now()
    monkeypatch.setattr(timezone, "now", lambda: frozen)
    return frozen


def in_flight(count, status=SagaStatus.RUNNING):
    SagaInstance.objects.bulk_create([SagaInstance(saga_type="place_order", correlation_id=str(uuid.uuid4()),
                                                   status=status) for _ in range(count)])


def ended(count, over_seconds, ago=0.0, status=SagaStatus.COMPLETED):
    """`count` sagas that ended evenly over `over_seconds`, the last `ago` seconds ago."""
    now = timezone.now()
    for n in range(count):
        at = now - timedelta(seconds=ago + over_seconds * n / max(count - 1, 1))
        saga = SagaInstance.objects.create(saga_type="place_order", correlation_id=str(uuid.uuid4()), status=status)
        SagaInstance.objects.filter(id=saga.id).update(ended_at=at, updated_at=at)


def refusal():
    with pytest.raises(admission.Overloaded) as caught:
        admission.admit()
    return caught.value


def test_the_drain_rate_is_the_sagas_ended_in_the_window_per_second_and_the_wait_is_in_flight_over_it():
    ended(50, over_seconds=9.9)  # 5 a second
    ended(30, over_seconds=5, ago=12)  # before the window: not counted
    in_flight(20)
    in_flight(5, SagaStatus.COMPENSATING)

    now = admission.estimate()

    assert (now.in_flight, now.ended) == (25, 50)
    assert now.drain_rate == pytest.approx(50 / 9.9, rel=0.02)
    assert now.predicted_wait == pytest.approx(25 / (50 / 9.9), rel=0.02)
    assert not now.stalled


def test_a_drain_seen_for_two_seconds_is_measured_over_those_two_not_the_whole_window():
    ended(40, over_seconds=2)  # the system got busy two seconds ago: 20 a second

    assert admission.estimate().drain_rate == pytest.approx(20, rel=0.05)


def test_a_drain_that_slowed_down_in_the_last_third_of_the_window_is_measured_there():
    ended(60, over_seconds=6.4, ago=3.5)  # 9 a second until three and a half seconds ago
    ended(3, over_seconds=3.0)  # then about 1 a second
    in_flight(20)  # 3 s at the window's rate, about 22 s at what it drains now

    now = admission.estimate()
    assert now.ended == 63
    assert now.drain_rate == pytest.approx(3 / (10 / 3), rel=0.02)
    assert "would wait about 22 s" in str(refusal())


def test_an_order_that_would_wait_past_the_target_is_refused_with_the_time_the_drain_needs():
    ended(20, over_seconds=9.9)  # about 2 a second
    in_flight(30)  # a new order would wait about 15 s

    refused_before = admission.refused()
    exc = refusal()

    rate = 20 / 9.9
    assert exc.retry_after == math.ceil((30 - 5 * rate) / rate)  # until the prediction is back at 5 s
    assert "would wait about 15 s (target 5 s)" in str(exc), str(exc)
    assert "30 orders are in progress and about 2.0 finish a second" in str(exc), str(exc)
    assert admission.refused() == refused_before + 1


def test_an_order_that_would_wait_under_the_target_is_admitted():
    ended(90, over_seconds=9.9)  # about 9 a second
    in_flight(40)  # about 4.4 s

    admission.admit()


def test_below_the_minimum_in_flight_nothing_is_predicted_and_orders_are_admitted(door):
    door.ADMISSION_MIN_IN_FLIGHT = 10
    ended(2, over_seconds=9.9)  # a trickle
    in_flight(9)  # 9 / 0.2 a second would be 45 s

    assert admission.estimate().predicted_wait is None
    admission.admit()


def test_a_stall_is_told_from_a_slow_drain_and_orders_are_accepted_up_to_the_in_flight_limit(door):
    door.ADMISSION_MAX_IN_FLIGHT = 50
    ended(20, over_seconds=5, ago=11)  # it drained, then stopped: nothing ended in the window
    in_flight(49)

    now = admission.estimate()
    assert now.stalled and now.predicted_wait is None
    admission.admit()

    in_flight(1)
    exc = refusal()
    assert exc.retry_after == 2  # nothing drains: the configured wait
    assert "50 orders are in progress (limit 50)" in str(exc)


def test_at_the_in_flight_limit_the_retry_after_is_the_time_the_drain_needs_to_free_a_place(door):
    door.ADMISSION_MAX_IN_FLIGHT = 20
    door.ADMISSION_TARGET_SECONDS = 60.0
    ended(10, over_seconds=9.9)  # about 1 a second
    in_flight(22)

    assert refusal().retry_after == math.ceil(3 / (10 / 9.9))


def test_a_target_of_zero_turns_the_prediction_off(door):
    door.ADMISSION_TARGET_SECONDS = 0
    ended(2, over_seconds=9.9)
    in_flight(100)

    admission.admit()


def test_sagas_that_left_flight_otherwise_count_as_drained_and_not_in_flight():
    ended(10, over_seconds=9.9, status=SagaStatus.COMPENSATED)
    ended(10, over_seconds=9.9, status=SagaStatus.STUCK)
    in_flight(3, SagaStatus.COMPLETED)  # ended long ago, no end time in the window

    now = admission.estimate()
    assert (now.in_flight, now.ended) == (0, 20)
