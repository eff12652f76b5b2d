"""The thermal plugin's waiting logic, with a fake clock and sensor."""

from __future__ import annotations

from edgebench.plugins.hooks.thermal import wait_until_cool


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def test_waits_until_under_the_ceiling() -> None:
    clock = Clock()
    readings = iter([80.0, 75.0, 69.0, 60.0])
    reading, waited = wait_until_cool(lambda: next(readings), 70.0, 300, clock.sleep, clock)
    assert reading == 69.0 and waited == 6.0


def test_gives_up_after_the_limit() -> None:
    clock = Clock()
    reading, waited = wait_until_cool(lambda: 90.0, 70.0, 10, clock.sleep, clock)
    assert reading == 90.0 and waited == 10.0


def test_no_sensor_does_not_wait() -> None:
    clock = Clock()
    assert wait_until_cool(lambda: None, 70.0, 10, clock.sleep, clock) == (None, 0.0)
