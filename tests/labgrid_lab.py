"""A real labgrid lab for the tests: a coordinator, exporters and places on 127.0.0.1.

- ``labgrid-coordinator`` on a free port (its own working directory, so its places.yaml is
  private);
- one ``labgrid-exporter`` per exporter name, each exporting ``NetworkService`` resources
  (address 127.0.0.1, the port of a private sshd from :mod:`servers`, the current user);
- places ``shapes-pi-1`` (exporter ``exp-a``) and ``shapes-pi-2`` (exporter ``exp-b``), tagged
  ``board=shapes-pi``, each matching its board's ``NetworkService``; created with labgrid's own
  ``ClientSession`` (the calls ``labgrid-client create/add-match/set-tags`` make).

Fixtures (registered for every test module by tests/conftest.py):

- ``labgrid_lab_session``: the lab, started once per session, torn down at its end;
- ``labgrid_lab``: the same lab, healed before each test (a killed exporter or stopped
  coordinator is restarted, places are released and reservations cancelled), with
  ``LG_COORDINATOR`` pointing at it for the test.

A missing labgrid skips the tests on a developer machine and fails them in CI (``CI`` set).
The ground truth of "who holds what" is ``labgrid-client who`` (:meth:`LabgridLab.acquired_places`),
a separate process asking the coordinator, not edgebench's own client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from servers import SshServer, free_port

BOARD_TAGS = {"board": "shapes-pi"}
"""The tags of the lab's places (``labgrid://?board=shapes-pi``)."""
LAYOUT = (("shapes-pi-1", "exp-a"), ("shapes-pi-2", "exp-b"))
"""(place, exporter): one board per exporter, so losing one exporter loses one board."""
OTHER_USER = "alice"
"""The labgrid user name of "someone else" holding places (``LG_USERNAME``)."""


def labgrid_tool(name: str) -> str | None:
    """The labgrid console script ``name`` of this interpreter's environment (else PATH)."""
    here = Path(sys.executable).parent / name
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which(name)


def require_labgrid() -> None:
    """Skip (developer machine) or fail (CI) when labgrid is not installed."""
    missing = [tool for tool in ("labgrid-coordinator", "labgrid-exporter", "labgrid-client")
               if labgrid_tool(tool) is None]
    try:
        import labgrid  # noqa: F401
    except ImportError:
        missing.append("the labgrid package")
    if not missing:
        return
    message = (f"labgrid is not installed ({', '.join(missing)} missing); "
               "pip install -e '.[labgrid]'")
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class LabPlace:
    """One place of the lab: a board (``sshd``) exported by ``exporter``."""

    name: str
    exporter: str
    sshd: SshServer
    tags: Mapping[str, str] = field(default_factory=lambda: dict(BOARD_TAGS))

    @property
    def match(self) -> str:
        """The place's resource match (``EXPORTER/GROUP/CLASS``)."""
        return f"{self.exporter}/{self.name}/NetworkService"


def _stop(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


class LabgridLab:
    """The running lab. ``address``: ``127.0.0.1:PORT`` of the coordinator; ``places``:
    name -> :class:`LabPlace`; ``env``: ``LG_COORDINATOR`` for clients."""

    def __init__(self, workdir: Path, layout: tuple[tuple[str, str], ...] = LAYOUT) -> None:
        require_labgrid()
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.env = {"LG_COORDINATOR": self.address}
        self.places: dict[str, LabPlace] = {}
        for name, exporter in layout:
            sshd = SshServer(self.dir / f"sshd-{name}")
            self.places[name] = LabPlace(name, exporter, sshd)
        self.coordinator: subprocess.Popen[bytes] | None = None
        self.exporters: dict[str, subprocess.Popen[bytes] | None] = {
            exporter: None for _, exporter in layout}

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> LabgridLab:
        try:
            for place in self.places.values():
                place.sshd.start()
            self.start_coordinator()
            for exporter in self.exporters:
                self.start_exporter(exporter, wait=False)
            self.setup_places()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        for exporter in self.exporters:
            _stop(self.exporters[exporter])
        _stop(self.coordinator)
        for place in self.places.values():
            place.sshd.stop()

    def _log(self, name: str) -> Any:
        return (self.dir / f"{name}.log").open("ab")

    def start_coordinator(self) -> None:
        """Start the coordinator (after :meth:`stop_coordinator`: the places are created again
        by :meth:`setup_places`; acquisitions and reservations are gone, as in labgrid)."""
        if self.coordinator is not None and self.coordinator.poll() is None:
            return
        workdir = self.dir / "coordinator"
        workdir.mkdir(exist_ok=True)
        tool = labgrid_tool("labgrid-coordinator")
        assert tool is not None
        with self._log("coordinator") as log:
            self.coordinator = subprocess.Popen([tool, "--listen", self.address], cwd=workdir,
                                                stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.coordinator.poll() is not None:
                raise RuntimeError(f"labgrid-coordinator exited with {self.coordinator.returncode}:"
                                   f" {self.log_tail('coordinator')}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError(f"labgrid-coordinator did not listen on {self.address} within 30 s")

    def stop_coordinator(self, *, graceful: bool = False) -> None:
        """Stop the coordinator: SIGKILL (a crash or a lost host: immediate), or with
        ``graceful`` SIGTERM (labgrid then lets open streams finish for up to 5 s). Its
        exporters exit on their own when it goes; :meth:`heal` starts them all again."""
        _stop(self.coordinator, signal.SIGTERM if graceful else signal.SIGKILL)

    def coordinator_running(self) -> bool:
        return self.coordinator is not None and self.coordinator.poll() is None

    def exporter_config(self, exporter: str) -> Path:
        lines = []
        for place in self.places.values():
            if place.exporter == exporter:
                lines += [f"{place.name}:", "  NetworkService:", "    address: 127.0.0.1",
                          f"    port: {place.sshd.port}", f"    username: {place.sshd.user}"]
        path = self.dir / f"{exporter}.yaml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start_exporter(self, exporter: str, *, wait: bool = True) -> None:
        """Start (or restart) ``exporter``; ``wait``: until the coordinator lists its
        resources."""
        proc = self.exporters[exporter]
        if proc is not None and proc.poll() is None:
            return
        tool = labgrid_tool("labgrid-exporter")
        assert tool is not None
        with self._log(f"exporter-{exporter}") as log:
            self.exporters[exporter] = subprocess.Popen(
                [tool, "--coordinator", self.address, "--name", exporter,
                 "--hostname", "127.0.0.1", str(self.exporter_config(exporter))],
                cwd=self.dir, stdout=log, stderr=log, start_new_session=True)
        if wait:
            with self.session() as (session, run):
                self._wait_resources(session, run, {exporter})

    def kill_exporter(self, exporter: str, *, wait: bool = True) -> None:
        """SIGKILL ``exporter`` (the host of a board crashed); ``wait``: until the coordinator
        no longer lists its resources."""
        _stop(self.exporters[exporter], signal.SIGKILL)
        if wait:
            with self.session() as (session, run):
                deadline = time.monotonic() + 30
                while session.resources.get(exporter) and any(
                        e.data.get("cls") for g in session.resources[exporter].values()
                        for e in g.values()):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the coordinator still lists exporter {exporter}")
                    run(asyncio.sleep(0.05))
                    run(session.sync_with_coordinator())

    def exporter_running(self, exporter: str) -> bool:
        proc = self.exporters[exporter]
        return proc is not None and proc.poll() is None

    def log_tail(self, name: str, chars: int = 2000) -> str:
        path = self.dir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # ---------------------------------------------------------------- labgrid's client

    @contextlib.contextmanager
    def session(self, user: str | None = None) -> Iterator[tuple[Any, Any]]:
        """(labgrid ClientSession, run(coro)) on a private event loop: the lab's setup and
        "someone else" (``user``)."""
        from edgebench.devices.labgrid_client import open_session

        async def start() -> Any:  # gRPC's aio channel binds to the loop it is made on
            return await asyncio.wait_for(open_session(self.address, user=user), 20)

        loop = asyncio.new_event_loop()
        session = None
        try:
            session = loop.run_until_complete(start())

            def run(work: Any) -> Any:
                """Await a coroutine, or a callable's awaitable made on the loop (a gRPC call
                must be created there: ``run(lambda: session.stub.X(request))``)."""
                async def go() -> Any:
                    return await (work() if callable(work) else work)

                return loop.run_until_complete(go())

            yield session, run
        finally:
            if session is not None:
                with contextlib.suppress(Exception):
                    loop.run_until_complete(session.stop())
                    loop.run_until_complete(session.close())
            loop.close()

    def _wait_resources(self, session: Any, run: Any, exporters: set[str]) -> None:
        deadline = time.monotonic() + 30
        while True:
            missing = [p.match for p in self.places.values()
                       if p.exporter in exporters and not _available(session, p)]
            if not missing:
                return
            dead = [e for e in exporters if not self.exporter_running(e)]
            if dead or time.monotonic() > deadline:
                logs = " | ".join(self.log_tail(f"exporter-{e}", 600) for e in exporters)
                raise RuntimeError(f"the coordinator does not list {', '.join(missing)} "
                                   f"(exporters not running: {dead}): {logs}")
            run(asyncio.sleep(0.05))

    def setup_places(self) -> None:
        """Create the places, their matches and tags (idempotent), once the exporters'
        resources are listed."""
        import argparse

        with self.session() as (session, run):
            self._wait_resources(session, run, set(self.exporters))
            for place in self.places.values():
                if place.name not in session.places:
                    session.args = argparse.Namespace(place=place.name)
                    run(session.add_place())
                if not session.places[place.name].hasmatch(place.match.split("/")):
                    session.args = argparse.Namespace(place=place.name, patterns=[place.match])
                    run(session.add_match())
                if dict(session.places[place.name].tags) != dict(place.tags):
                    session.args = argparse.Namespace(
                        place=place.name, tags=[f"{k}={v}" for k, v in place.tags.items()])
                    run(session.set_tags())

    def heal(self) -> None:
        """Back to a clean lab: coordinator and exporters running, places set up, nothing
        acquired, no reservations."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        if not self.coordinator_running():
            for exporter in self.exporters:  # they exit when their coordinator goes
                _stop(self.exporters[exporter])
            self.start_coordinator()
        for exporter in self.exporters:
            self.start_exporter(exporter, wait=False)
        self.setup_places()
        with self.session() as (session, run):
            stub = session.stub
            for name, place in list(session.places.items()):
                if place.acquired:
                    request = pb2.ReleasePlaceRequest(placename=name)
                    run(lambda r=request: stub.ReleasePlace(r))
            found = run(lambda: stub.GetReservations(pb2.GetReservationsRequest()))
            for res in found.reservations:
                request = pb2.CancelReservationRequest(token=res.token)
                run(lambda r=request: stub.CancelReservation(r))
            run(session.sync_with_coordinator())

    # ---------------------------------------------------------------- labgrid-client CLI

    def client(self, *args: str, user: str | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``labgrid-client ARGS`` against the lab (``user``: its ``LG_USERNAME``)."""
        tool = labgrid_tool("labgrid-client")
        assert tool is not None
        env = {**os.environ, **self.env}
        if user is not None:
            env["LG_USERNAME"] = user
        env.pop("LG_TOKEN", None)
        env.pop("LG_PLACE", None)
        done = subprocess.run([tool, *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
        if check and done.returncode != 0:
            raise RuntimeError(f"labgrid-client {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}")
        return done

    def acquired_places(self) -> dict[str, str]:
        """place -> ``host/user`` holding it, as the coordinator says now (labgrid's
        ClientSession, a connection of its own)."""
        with self.session() as (session, _):
            return {name: place.acquired for name, place in sorted(session.places.items())
                    if place.acquired}

    def reservations(self) -> list[dict[str, Any]]:
        """The coordinator's reservations (labgrid's ``Reservation.asdict()`` plus
        ``token``)."""
        from labgrid.remote.common import Reservation
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        with self.session() as (session, run):
            found = run(lambda: session.stub.GetReservations(pb2.GetReservationsRequest()))
        out = []
        for pb in found.reservations:
            res = Reservation.from_pb2(pb)
            out.append({**res.asdict(), "token": res.token})
        return out

    def acquired_places_cli(self) -> dict[str, str]:
        """place -> ``host/user`` holding it, as ``labgrid-client who`` reports it (a
        separate process; slower, about 0.4 s of CPU)."""
        out = self.client("who").stdout.splitlines()
        held = {}
        for line in out[1:]:  # header: User Host Place Changed
            fields = line.split()
            if len(fields) >= 3:
                user, host, place = fields[:3]
                held[place] = f"{host}/{user}"
        return held

    def hold(self, place: str, user: str = OTHER_USER) -> None:
        """``user`` acquires ``place`` (someone else holds the board), as
        ``LG_USERNAME=user labgrid-client -p place acquire`` does."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        with self.session(user) as (session, run):
            run(lambda: session.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=place)))

    def unhold(self, place: str, user: str = OTHER_USER) -> None:
        """``user`` releases ``place`` (only if ``user`` holds it)."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        with self.session(user) as (session, run):
            run(lambda: session.stub.ReleasePlace(pb2.ReleasePlaceRequest(
                placename=place, fromuser=f"{session.gethostname()}/{user}")))

    def reserve_as(self, filters: Mapping[str, str], user: str = OTHER_USER) -> str:
        """``user`` reserves a place with ``filters`` (``labgrid-client reserve``); the
        token. Unpolled, the coordinator expires it after 60 s."""
        from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2

        with self.session(user) as (session, run):
            request = pb2.CreateReservationRequest(
                filters={"main": pb2.Reservation.Filter(filter=dict(filters))}, prio=0.0)
            return str(run(lambda: session.stub.CreateReservation(request)).reservation.token)


def _available(session: Any, place: LabPlace) -> bool:
    entry = session.resources.get(place.exporter, {}).get(place.name, {}).get("NetworkService")
    return entry is not None and bool(entry.data.get("avail"))


@pytest.fixture(scope="session")
def labgrid_lab_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabgridLab]:
    """The lab, once per session (started on first use)."""
    lab = LabgridLab(tmp_path_factory.mktemp("labgrid-lab")).start()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def labgrid_lab(labgrid_lab_session: LabgridLab,
                monkeypatch: pytest.MonkeyPatch) -> LabgridLab:
    """The session's lab, healed before the test; ``LG_COORDINATOR`` points at it."""
    labgrid_lab_session.heal()
    monkeypatch.setenv("LG_COORDINATOR", labgrid_lab_session.address)
    monkeypatch.delenv("LG_TOKEN", raising=False)
    monkeypatch.delenv("LG_PLACE", raising=False)
    return labgrid_lab_session
