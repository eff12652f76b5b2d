"""edgebench's labgrid client against a real labgrid lab (tests/labgrid_lab.py): a real
labgrid-coordinator and real labgrid-exporter processes on 127.0.0.1; who holds what is
checked with labgrid-client, a separate process."""

from __future__ import annotations

import signal
import sys
import threading
import time

import pytest
from labgrid_lab import BOARD_TAGS, OTHER_USER, LabgridLab
from servers import free_port

from edgebench.devices.labgrid_client import (
    DEFAULT_PORT,
    Coordinator,
    CoordinatorUnreachable,
    ExporterGone,
    LabgridError,
    NoMatchingPlace,
    PlaceBusy,
    ReservationTimeout,
    client_name,
    coordinator_address,
)
from edgebench.errors import UserError

pytestmark = [pytest.mark.labgrid, pytest.mark.sshd]


def test_lists_the_places_with_tags_exporters_and_holders(labgrid_lab: LabgridLab) -> None:
    labgrid_lab.hold("shapes-pi-2")
    hook = sys.excepthook
    with Coordinator(timeout_s=10) as lab:  # LG_COORDINATOR, set by the fixture
        assert sys.excepthook is hook  # importing labgrid's client replaces it: put back
        assert lab.address == labgrid_lab.address
        places = {p.name: p for p in lab.places()}
    assert set(places) == {"shapes-pi-1", "shapes-pi-2"}
    one, two = places["shapes-pi-1"], places["shapes-pi-2"]
    assert dict(one.tags) == dict(two.tags) == BOARD_TAGS
    assert (one.exporters, two.exporters) == (("exp-a",), ("exp-b",))
    assert one.acquired_by is None and one.reservation is None
    assert two.acquired_by == labgrid_lab.acquired_places()["shapes-pi-2"]
    assert two.acquired_by.endswith(f"/{OTHER_USER}")


def test_preload_loads_the_client_library_beside_a_session_and_keeps_the_excepthook(
        labgrid_lab: LabgridLab) -> None:
    from edgebench.devices.labgrid import LabgridDevice

    hook = sys.excepthook
    LabgridDevice.preload()  # returns at once: the imports run in daemon threads
    with Coordinator(timeout_s=10) as lab:  # imports labgrid too, perhaps meanwhile
        assert {p.name for p in lab.places()} == {"shapes-pi-1", "shapes-pi-2"}
    for thread in threading.enumerate():
        if thread.name in ("labgrid preload", "paramiko preload"):
            thread.join(60)
    assert sys.excepthook is hook
    assert {"labgrid.remote.client", "paramiko"} <= set(sys.modules)


def test_reserve_acquire_network_service_and_release(labgrid_lab: LabgridLab) -> None:
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        res = lab.reserve(BOARD_TAGS, 2, timeout_s=10)
        assert sorted(res.places) == ["shapes-pi-1", "shapes-pi-2"]
        assert len(set(res.tokens)) == 2 and res.waited_s < 5
        on_coordinator = {p.name: p.reservation for p in lab.places()}
        assert {on_coordinator[p] for p in res.places} == set(res.tokens)
        for place in res.places:
            info = lab.acquire(place, res)
            assert info.acquired_by == client_name()
        assert labgrid_lab.acquired_places() == {p: client_name() for p in res.places}
        assert labgrid_lab.acquired_places_cli() == {p: client_name() for p in res.places}
        for place in res.places:
            target = lab.network_service(place)
            sshd = labgrid_lab.places[place].sshd
            assert (target.place, target.address, target.port, target.username) == (
                place, "127.0.0.1", sshd.port, sshd.user)
            assert target.exporter == labgrid_lab.places[place].exporter
        for place in res.places:
            lab.release(place)
            lab.release(place)  # idempotent
        assert labgrid_lab.acquired_places_cli() == {}
        lab.cancel(res)
        lab.cancel(res)  # idempotent
        assert labgrid_lab.reservations() == []
        # a named place is the labgrid filter name=PLACE
        named = lab.reserve("shapes-pi-2", timeout_s=10)
        assert named.places == ("shapes-pi-2",) and dict(named.filters) == {"name": "shapes-pi-2"}
        lab.acquire("shapes-pi-2", named)
    # leaving the with-block released what it held and cancelled its reservation
    assert labgrid_lab.acquired_places() == {}
    assert labgrid_lab.reservations() == []


def test_waits_in_the_queue_behind_another_holder(labgrid_lab: LabgridLab) -> None:
    labgrid_lab.hold("shapes-pi-1")
    states: list[tuple[str, float]] = []
    freed: dict[str, float] = {}

    def free_later() -> None:
        time.sleep(2.5)
        freed["asked"] = time.monotonic()
        labgrid_lab.unhold("shapes-pi-1")
        freed["done"] = time.monotonic()

    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        freer = threading.Thread(target=free_later)
        start = time.monotonic()
        freer.start()
        try:
            res = lab.reserve("shapes-pi-1", timeout_s=30,
                              on_wait=lambda s, w: states.append((s, w)))
        finally:
            freer.join()
        assert res.places == ("shapes-pi-1",)
        # allocated after the holder let go, within a poll (1 s) of it
        allocated = start + res.waited_s
        assert freed["asked"] < allocated < freed["done"] + 1.0 + 1.0  # + scheduling slack
        # about one progress call a second while waiting, naming who holds the place
        assert 1 <= len(states) <= res.waited_s + 1
        assert all("place shapes-pi-1" in s for s, _ in states)
        assert any(f"shapes-pi-1 by {_host()}/{OTHER_USER}" in s for s, _ in states), states
        assert [w for _, w in states] == sorted(w for _, w in states)
        lab.acquire("shapes-pi-1", res)
        assert labgrid_lab.acquired_places() == {"shapes-pi-1": client_name()}
    assert labgrid_lab.acquired_places() == {}


def test_reservation_timeout_cancels_the_reservation(labgrid_lab: LabgridLab) -> None:
    labgrid_lab.hold("shapes-pi-2")
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        start = time.monotonic()
        with pytest.raises(ReservationTimeout) as caught:
            lab.reserve(BOARD_TAGS, 2, timeout_s=2)
        assert 2 <= time.monotonic() - start < 6
        message = str(caught.value)
        assert "board=shapes-pi" in message and "2 s" in message
        assert "shapes-pi-2 by " in message and "\n" not in message
        # nothing of the timed-out request stays queued or allocated
        assert labgrid_lab.reservations() == []
        assert all(p.reservation is None for p in lab.places())
    assert labgrid_lab.acquired_places() == {"shapes-pi-2": f"{_host()}/{OTHER_USER}"}


def test_place_held_by_someone_else_is_busy_and_never_released(
        labgrid_lab: LabgridLab) -> None:
    labgrid_lab.hold("shapes-pi-1")
    holder = labgrid_lab.acquired_places()["shapes-pi-1"]
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        with pytest.raises(PlaceBusy) as caught:
            lab.acquire("shapes-pi-1")
        assert holder in str(caught.value) and "labgrid-client -p shapes-pi-1 release" in str(
            caught.value)
        lab.release("shapes-pi-1")  # not ours: nothing happens
        # a place allocated to someone else's reservation is busy too
        labgrid_lab.reserve_as({"name": "shapes-pi-2"})
        with pytest.raises(PlaceBusy, match="shapes-pi-2 is reserved for someone else"):
            lab.acquire("shapes-pi-2")
    assert labgrid_lab.acquired_places() == {"shapes-pi-1": holder}


def test_no_matching_place_fails_at_once(labgrid_lab: LabgridLab) -> None:
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        start = time.monotonic()
        with pytest.raises(NoMatchingPlace, match=r"no place .* has board=rpi5; tag places"):
            lab.reserve({"board": "rpi5"}, timeout_s=60)
        with pytest.raises(NoMatchingPlace, match=r"only 2 place\(s\) .* 3 were asked for"):
            lab.reserve(BOARD_TAGS, 3, timeout_s=60)
        with pytest.raises(NoMatchingPlace, match=r"there is no place no-such-pi .* "
                                                  r"\(it has: shapes-pi-1, shapes-pi-2\)"):
            lab.reserve("no-such-pi", timeout_s=60)
        with pytest.raises(LabgridError, match="there is no place no-such-pi"):
            lab.acquire("no-such-pi")
        assert time.monotonic() - start < 5
        assert labgrid_lab.reservations() == []


def test_exporter_gone_before_and_after_acquire(labgrid_lab: LabgridLab) -> None:
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        res = lab.reserve(BOARD_TAGS, 2, timeout_s=10)
        lab.acquire("shapes-pi-1", res)
        labgrid_lab.kill_exporter("exp-a")
        labgrid_lab.kill_exporter("exp-b")
        with pytest.raises(ExporterGone, match="the exporter exp-a of place shapes-pi-1"):
            lab.network_service("shapes-pi-1")
        with pytest.raises(ExporterGone, match="exp-b/shapes-pi-2/NetworkService"):
            lab.acquire("shapes-pi-2", res)
        lab.release("shapes-pi-1")
        assert labgrid_lab.acquired_places() == {}


def test_several_threads_share_one_coordinator(labgrid_lab: LabgridLab) -> None:
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        res = lab.reserve(BOARD_TAGS, 2, timeout_s=10)
        errors: list[BaseException] = []
        targets = {}

        def slot(place: str) -> None:
            try:
                for _ in range(5):
                    lab.acquire(place, res)
                    targets[place] = lab.network_service(place)
                    lab.places()
                    lab.release(place)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=slot, args=(p,)) for p in res.places]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        # a second Coordinator in the same process works alongside (its own connection)
        with Coordinator(labgrid_lab.address, timeout_s=10) as second:
            assert [p.name for p in second.places()] == ["shapes-pi-1", "shapes-pi-2"]
            assert [p.name for p in lab.places()] == ["shapes-pi-1", "shapes-pi-2"]
        assert {p: t.exporter for p, t in targets.items()} == {"shapes-pi-1": "exp-a",
                                                                "shapes-pi-2": "exp-b"}
        assert labgrid_lab.acquired_places() == {}


def test_unreachable_coordinator_is_one_sentence(labgrid_lab: LabgridLab,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(CoordinatorUnreachable) as caught:
        Coordinator(dead, timeout_s=5).connect()
    assert time.monotonic() - start < 5
    assert str(caught.value) == (
        f"cannot reach a labgrid coordinator at {dead} within 5 s; start labgrid-coordinator "
        "there or point LG_COORDINATOR (or ?coordinator=) at it")
    # the coordinator goes away under a connected client
    lab = Coordinator(labgrid_lab.address, timeout_s=5).__enter__()
    try:
        lab.places()
        labgrid_lab.stop_coordinator()
        with pytest.raises(CoordinatorUnreachable, match=labgrid_lab.address):
            lab.places()
        # it comes back (same address, places created again): the same object reconnects
        labgrid_lab.heal()
        res = lab.reserve("shapes-pi-1", timeout_s=10)
        lab.acquire("shapes-pi-1", res)
        assert labgrid_lab.acquired_places() == {"shapes-pi-1": client_name()}
    finally:
        lab.close()  # never raises
    assert labgrid_lab.acquired_places() == {}
    assert labgrid_lab.reservations() == []


def test_coordinator_address_defaults() -> None:
    assert coordinator_address("lab.example") == f"lab.example:{DEFAULT_PORT}"
    assert coordinator_address("lab.example:1234") == "lab.example:1234"
    assert coordinator_address("[::1]") == f"[::1]:{DEFAULT_PORT}"
    with pytest.raises(UserError, match="bad port"):
        coordinator_address("lab:99999")


def _host() -> str:
    return client_name().split("/")[0]


def test_ctrl_c_while_waiting_releases_from_the_signal_handler(
        labgrid_lab: LabgridLab) -> None:
    """A SIGINT-style handler releases a held place while the main thread waits in the queue;
    the interrupted wait cancels its reservation."""
    labgrid_lab.hold("shapes-pi-2")
    released_in_handler: list[dict[str, str]] = []
    with Coordinator(labgrid_lab.address, timeout_s=10) as lab:
        lab.acquire("shapes-pi-1")

        def on_alarm(signum: int, frame: object) -> None:
            lab.release("shapes-pi-1")
            released_in_handler.append(labgrid_lab.acquired_places())
            raise KeyboardInterrupt

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, 1.5)
        try:
            with pytest.raises(KeyboardInterrupt):
                lab.reserve("shapes-pi-2", timeout_s=30)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
        assert released_in_handler == [{"shapes-pi-2": f"{_host()}/{OTHER_USER}"}]
        assert labgrid_lab.reservations() == []
        assert lab.held() == ()
