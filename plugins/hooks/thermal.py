"""Cool-down and temperature ceiling before each case: a wrapper of ``edgebench_run_case``.

A plugin like any other (``--disable thermal`` turns it off): it waits ``cooldown_s``, then
until the device is at most ``max_temperature_c`` (polling every few seconds, giving up
after ``temperature_wait_s``), and notes in the result what it did.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Generator

from edgebench.contracts import Device
from edgebench.fingerprint import DeviceAgent
from edgebench.hookspecs import hookimpl
from edgebench.records import Case, CaseResult

POLL_S = 3.0


def wait_until_cool(read: Callable[[], float | None], ceiling: float, limit_s: float,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> tuple[float | None, float]:
    """Poll ``read`` until it gives at most ``ceiling`` or ``limit_s`` passes.

    Returns the last reading and the seconds waited.
    """
    start = clock()
    reading = read()
    while reading is not None and reading > ceiling and clock() - start < limit_s:
        sleep(min(POLL_S, max(0.0, limit_s - (clock() - start))))
        reading = read()
    return reading, clock() - start


@hookimpl(wrapper=True)
def edgebench_run_case(case: Case, device: Device) -> Generator[None, CaseResult, CaseResult]:
    settings = case.settings
    notes: list[str] = []
    if settings.cooldown_s > 0:
        time.sleep(settings.cooldown_s)
        notes.append(f"cooled down {settings.cooldown_s:g} s first")
    if settings.max_temperature_c is not None:
        agent = DeviceAgent(device)
        reading, waited = wait_until_cool(agent.temperature, settings.max_temperature_c,
                                          settings.temperature_wait_s)
        if reading is None:
            notes.append("no temperature sensor: the temperature ceiling was not applied")
        elif reading > settings.max_temperature_c:
            notes.append(f"still {reading:.0f} °C after waiting {waited:.0f} s for "
                         f"{settings.max_temperature_c:g} °C")
        elif waited >= 1:
            notes.append(f"waited {waited:.0f} s to cool to {reading:.0f} °C")
    result = yield
    if not notes:
        return result
    return dataclasses.replace(result, notes=(*notes, *result.notes))
