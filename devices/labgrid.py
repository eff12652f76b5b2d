"""Boards of a labgrid board farm: reserved in the coordinator's queue, acquired, measured over
SSH, released.

URIs::

    labgrid://PLACE[?option=value&...]              one named place
    labgrid://?TAG=VALUE[&TAG=VALUE...][&count=N]    any N places whose tags all match

Every query key that is not an option below is a tag the places must have
(``labgrid-client -p PLACE set-tags board=rpi5``); so tags cannot be named like an option.
Options:

``count``                how many places (default 1): the URI stands for N devices that run
                         its cases concurrently, each case (all its repeats) on one place
                         (``Device.slots``)
``coordinator``          ``HOST[:PORT]`` of the labgrid coordinator (default:
                         ``LG_COORDINATOR``, else labgrid's ``127.0.0.1:20408``)
``reservation_timeout``  seconds to wait in the coordinator's queue for a free place
                         (default 1800: half an hour, see
                         :data:`edgebench.devices.labgrid_uri.DEFAULT_RESERVATION_TIMEOUT_S`)
``python``, ``key``, ``known_hosts``, ``hostkey`` (one place only), ``tmpdir``,
``connect_timeout``, ``onnxruntime_perf_test``, ``benchmark_model``, ``benchncnn``
                         passed on to the SSH connection to each board, as for ``ssh://``

For each of its places a device:

1. connects to the coordinator and checks that some place has the tags (else its cases fail
   at once, naming the places there);
2. reserves one place (one labgrid reservation per device: labgrid allocates one place per
   reservation, so N devices with the same tags get N different places, first come first
   served with every other client of the farm) and waits in the queue, printing on stderr
   who holds the places, up to ``reservation_timeout``;
3. acquires the place and reads its ``NetworkService`` resource (address, port, username);
4. runs everything through an ``ssh://username@address:port`` device
   (:class:`~edgebench.devices.ssh.SSHDevice`): host keys are checked exactly as for
   ``ssh://`` (known_hosts, ``hostkey=``), the work dir is private and removed;
5. releases the place and cancels its reservation when it is left: at the end, after a
   fault, on Ctrl-C or SIGTERM (the core aborts the devices and leaves them), also while it
   still waits in the queue. Only a killed process (SIGKILL) leaves a place acquired, as
   with ``labgrid-client``.

Between cases a device checks that its place's exporter still exports the board; when it
stopped, the device takes no more cases (the other places of the URI take them) and a case
cut off by it fails with one sentence. The fingerprint of every case records the place, its
tags, its exporter and the seconds waited for it (``DeviceInfo.place``).

The coordinator is reached with labgrid's own client library
(:mod:`edgebench.devices.labgrid_client`), never its wire protocol.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any, ClassVar, Self
from urllib.parse import quote

from edgebench.contracts import Completed, Device, NativeRunner
from edgebench.errors import CaseError, UserError
from edgebench.fingerprint import DeviceAgent
from edgebench.hookspecs import Register, hookimpl
from edgebench.records import Place
from edgebench.retry import ConnectionLost

from .labgrid_client import (
    Coordinator,
    CoordinatorUnreachable,
    ExporterGone,
    LabgridError,
    NetworkTarget,
    PlaceInfo,
    Reservation,
)
from .labgrid_client import preload as labgrid_preload
from .labgrid_uri import LabgridRequest, parse_uri
from .shell_agent import ShellAgent
from .ssh import SSHDevice

COORDINATOR_TIMEOUT_S = 10.0
"""Limit for connecting to the coordinator and for each request to it (seconds)."""
WAIT_REPORT_EVERY_S = 10.0
"""How often a device waiting in the queue says so on stderr (seconds; the first line at
once)."""


class LabgridDevice(Device):
    """``labgrid://PLACE`` or ``labgrid://?board=rpi5&count=N``: one place of a labgrid farm,
    reached over SSH through its ``NetworkService``."""

    scheme: ClassVar[str] = "labgrid"

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.python = ""
        self._request: LabgridRequest = parse_uri(uri)
        self._coordinator: Coordinator | None = None
        self._reservation: Reservation | None = None
        self._place: PlaceInfo | None = None
        self._target: NetworkTarget | None = None
        self._ssh: SSHDevice | None = None
        self._aborted = threading.Event()
        self.placement: Place | None = None
        """The place this device holds, for the fingerprint (set while entered)."""

    # -- class members ------------------------------------------------------------------

    @classmethod
    def host_unavailable_reason(cls) -> str | None:
        import importlib.util

        for module, extra in (("labgrid", "labgrid"), ("paramiko", "ssh")):
            if importlib.util.find_spec(module) is None:
                return f"{module} is not installed: pip install 'edgebench[{extra}]'"
        return None

    @classmethod
    def check_uri(cls, uri: str) -> None:
        """Validate ``uri`` (tags, count, timeouts, coordinator address) without
        connecting."""
        parse_uri(uri)

    @classmethod
    def preload(cls) -> None:
        """labgrid's client library and paramiko load in the background (about 0.4 s of
        imports that would otherwise come before the first case)."""
        labgrid_preload()
        SSHDevice.preload()

    @classmethod
    def slots(cls, uri: str) -> int:
        """``count``: each of the N devices reserves a place of its own."""
        return parse_uri(uri).count

    # -- entering and leaving -----------------------------------------------------------

    def __enter__(self) -> Self:
        missing = self.host_unavailable_reason()
        if missing:
            raise CaseError(missing)
        request = self._request
        try:
            self._coordinator = Coordinator(request.coordinator,
                                            timeout_s=COORDINATOR_TIMEOUT_S)
            self._coordinator.connect()
            self._reservation = self._reserve(self._coordinator)
            place = self._reservation.places[0]
            self._check_aborted()
            self._place = self._coordinator.acquire(place, self._reservation)
            self._target = self._coordinator.network_service(place)
            self.placement = Place(
                name=place, tags=dict(self._place.tags), host=self._target.exporter,
                farm=f"labgrid coordinator {self._coordinator.address}",
                waited_s=round(self._reservation.waited_s, 1))
            self._check_aborted()
            self._ssh = SSHDevice(self._ssh_uri(self._target))
            try:
                self._ssh.__enter__()
            except ConnectionLost as exc:  # the board, not the farm: say which place
                self._ssh = None
                raise ConnectionLost(f"place {place}: {exc}", output=exc.output,
                                     during=exc.during, what=exc.what) from None
            except (CaseError, UserError, OSError) as exc:
                self._ssh = None
                raise CaseError(f"place {place}: {exc}") from None
            self.python = self._ssh.python
        except BaseException as exc:
            self._leave_place()
            if isinstance(exc, CoordinatorUnreachable):
                # not the board's fault, and perhaps not for long: retried as a lost
                # connection (the run's --retries/--retry-backoff, edgebench.retry)
                raise ConnectionLost(str(exc)) from None
            if isinstance(exc, UserError) and not isinstance(exc, CaseError):
                raise CaseError(str(exc)) from None
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if self._ssh is not None:
                self._ssh.__exit__(exc_type, exc, tb)
        finally:
            self._ssh = None
            self._leave_place()

    def _reserve(self, coordinator: Coordinator) -> Reservation:
        """One place from the queue, saying on stderr while it waits."""
        label = "edgebench: labgrid"
        last = [-WAIT_REPORT_EVERY_S]

        def on_wait(state: str, waited_s: float) -> None:
            self._check_aborted()
            if waited_s - last[0] >= WAIT_REPORT_EVERY_S:
                last[0] = waited_s
                print(f"{label}: {state} (waited {waited_s:.0f} s of "
                      f"{self._request.reservation_timeout_s:g} s)", file=sys.stderr,
                      flush=True)

        reservation = coordinator.reserve(self._request.filters, 1,
                                          timeout_s=self._request.reservation_timeout_s,
                                          on_wait=on_wait)
        if reservation.waited_s >= 1.0:
            print(f"{label}: got place {reservation.places[0]} after waiting "
                  f"{reservation.waited_s:.0f} s", file=sys.stderr, flush=True)
        return reservation

    def _leave_place(self) -> None:
        """Release the place and cancel the reservation (whatever was reached), never
        raising: a cleanup path. The coordinator client is closed, which releases anything
        still held through it."""
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is None:
            return
        try:
            if self._place is not None:
                with contextlib.suppress(LabgridError, OSError):
                    coordinator.release(self._place.name)
            if self._reservation is not None:
                with contextlib.suppress(LabgridError, OSError):
                    coordinator.cancel(self._reservation)
        finally:
            coordinator.close()
            self._place = self._reservation = self._target = None

    def _check_aborted(self) -> None:
        if self._aborted.is_set():
            raise CaseError("aborted")

    def _ssh_uri(self, target: NetworkTarget) -> str:
        host = f"[{target.address}]" if ":" in target.address else target.address
        query = "&".join(f"{k}={quote(v, safe='/:,.+-_~')}"
                         for k, v in sorted(self._request.ssh_options.items()))
        return (f"ssh://{quote(target.username, safe='')}@{host}:{target.port}"
                + (f"?{query}" if query else ""))

    # -- what the device does: the board's SSH device -------------------------------------

    def _board(self) -> SSHDevice:
        if self._ssh is None:
            raise RuntimeError("LabgridDevice used outside its 'with' block")
        return self._ssh

    @property
    def workdir(self) -> PurePosixPath:
        return self._board().workdir

    def push(self, local: Path, remote: PurePosixPath) -> None:
        self._board().push(local, remote)

    def pull(self, remote: PurePosixPath, local: Path) -> None:
        self._board().pull(remote, local)

    def run(self, argv: Sequence[str], *, timeout_s: float) -> Completed:
        if self._aborted.is_set():
            raise CaseError("aborted")
        return self._board().run(argv, timeout_s=timeout_s)

    def abort(self) -> None:
        """Kill what runs on the board; a device still waiting in the queue stops waiting
        (its reservation is cancelled) within a second."""
        self._aborted.set()
        if self._ssh is not None:
            self._ssh.abort()

    def agent(self) -> DeviceAgent:
        """The board's agent, fingerprinting this device (so the fingerprint has its URI and
        its place)."""
        board = self._board()
        return DeviceAgent(self) if self.python else \
            ShellAgent(self, board._native_versions())

    def native_runner(self, backend: str) -> NativeRunner | None:
        return self._board().native_runner(backend)

    def throttling(self) -> str | None:
        return self._board().throttling()

    def unusable_reason(self) -> str | None:
        """Set when the place's exporter no longer exports its ``NetworkService``."""
        if self._coordinator is None or self._place is None:
            return None
        try:
            self._coordinator.network_service(self._place.name)
        except ExporterGone as exc:
            return str(exc)
        except LabgridError:
            return None  # the coordinator itself is away: the board may be fine
        return None

    def reconnect(self) -> None:
        """Reach the board again; :class:`CaseError` when its exporter went away (the place
        is gone from the farm, so the case is not retried on it)."""
        gone = self.unusable_reason()
        if gone is not None:
            raise CaseError(gone)
        self._board().reconnect()


def place_fields(device: LabgridDevice) -> dict[str, Any] | None:
    """The ``place`` of a device's fingerprint as JSON fields, or ``None`` when not
    entered."""
    place = device.placement
    if place is None:
        return None
    return {"name": place.name, "tags": dict(place.tags), "host": place.host,
            "farm": place.farm, "waited_s": place.waited_s}


@hookimpl
def edgebench_device_info(device: Device, info: dict[str, Any]) -> None:
    """The place a labgrid device ran on goes into its fingerprint."""
    if isinstance(device, LabgridDevice):
        fields = place_fields(device)
        if fields is not None:
            info["place"] = fields


@hookimpl
def edgebench_register_devices(register: Register) -> None:
    register(LabgridDevice)

