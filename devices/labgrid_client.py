"""A small, thread-safe client of a labgrid coordinator, on labgrid's own client library.

labgrid (https://labgrid.readthedocs.io) shares boards through a *coordinator*: exporters
publish the resources of the boards wired to them, *places* group a board's resources and
carry tags (``board=rpi5``), and users *reserve* (wait in the coordinator's queue, by tags or
``name=PLACE``), *acquire* (exclusive use) and *release* places. This module wraps exactly the
calls edgebench needs; the wire protocol is labgrid's: :class:`labgrid.remote.client.
ClientSession` (gRPC, labgrid >= 24) and the request messages labgrid generates from its
``.proto``, the same calls ``labgrid-client`` makes.

Threads: each :class:`Coordinator` runs one asyncio event loop in a private daemon thread and
holds one ``ClientSession`` (one gRPC stream, kept in sync with the coordinator's places and
resources). Every public method may be called from any thread, concurrently: the work runs on
that loop (``asyncio.run_coroutine_threadsafe``); reservation waits sleep in the caller's
thread, so ``on_wait`` runs there too. One session per call would cost a new gRPC stream and a
full place/resource sync each time (measured on the test lab, two places: ``places()`` takes
about 1 ms on the persistent session against about 8 ms with a session per call).

What this object holds is released by :meth:`Coordinator.close` (and so by ``with``): every
place it acquired and every reservation it created, even when a call was interrupted. A place
stays acquired only while its process runs (a SIGKILLed client leaves it acquired, as with
``labgrid-client``).

labgrid is imported lazily (inside functions): importing this module costs nothing and works
without the ``labgrid`` extra.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import getpass
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from edgebench.errors import UserError

DEFAULT_PORT = 20408
"""labgrid's coordinator port (``labgrid-client --help``: HOST[:PORT], PORT defaults to it)."""
DEFAULT_ADDRESS = f"127.0.0.1:{DEFAULT_PORT}"
"""labgrid's default when neither an address nor ``LG_COORDINATOR`` is given."""
POLL_INTERVAL_S = 1.0
"""How often a waiting reservation is polled (labgrid-client's ``reserve --wait`` polls each
second; a poll also keeps the reservation alive: the coordinator expires one after 60 s
without)."""

T = TypeVar("T")


# ------------------------------------------------------------------------------ errors


class LabgridError(UserError):
    """A labgrid coordinator refused or could not do what edgebench asked (one sentence)."""


class LabgridMissing(LabgridError):
    """The labgrid client library is not installed."""


class CoordinatorUnreachable(LabgridError):
    """No connection to the coordinator (none listening, wrong address, or it went away)."""


class NoMatchingPlace(LabgridError):
    """No place (or fewer than asked for) has the requested tags or name."""


class ReservationTimeout(LabgridError):
    """The places were not allocated within the reservation timeout (the reservation is
    cancelled)."""


class PlaceBusy(LabgridError):
    """The place is acquired (or reserved) by someone else."""


class ExporterGone(LabgridError):
    """A resource of the place is not exported any more (its exporter stopped or lost it)."""


# ----------------------------------------------------------------------------- records


@dataclass(frozen=True)
class PlaceInfo:
    """One place on the coordinator.

    ``tags``: the place's labgrid tags; ``acquired_by``: ``"host/user"`` of the holder, None
    when free; ``exporters``: the exporters of the resources it acquired (when acquired) or
    of the resources its matches select now (when free), sorted; ``reservation``: the token
    of the reservation the place is allocated to, None if none.
    """

    name: str
    tags: Mapping[str, str]
    acquired_by: str | None
    exporters: tuple[str, ...]
    reservation: str | None
    comment: str = ""


@dataclass(frozen=True)
class Reservation:
    """Places allocated to this client by the coordinator's reservation queue.

    labgrid allocates one place per reservation, so a request for ``count`` places is
    ``count`` reservations with the same filter: ``tokens[i]`` holds ``places[i]``.
    ``waited_s``: seconds from the call of :meth:`Coordinator.reserve` to the allocation of
    the last place (monotonic clock of this host).
    """

    tokens: tuple[str, ...]
    places: tuple[str, ...]
    filters: Mapping[str, str]
    waited_s: float

    @property
    def token(self) -> str:
        """The first token (``LG_TOKEN`` of a one-place reservation)."""
        return self.tokens[0]


@dataclass(frozen=True)
class NetworkTarget:
    """The ``NetworkService`` resource of an acquired place: where to SSH to.

    ``address`` and ``port`` are as the exporter publishes them (labgrid's default port 22);
    ``username`` is the login; ``exporter`` the exporter's name; ``resource`` the resource's
    name within the place (``NetworkService`` unless renamed by a named match).
    """

    place: str
    address: str
    port: int
    username: str
    exporter: str
    resource: str = "NetworkService"


def describe_filters(filters: Mapping[str, str]) -> str:
    """``board=rpi5 soc=bcm2712`` (labgrid-client's spelling of a filter)."""
    return " ".join(f"{k}={v}" for k, v in sorted(filters.items()))


def coordinator_address(address: str | None = None) -> str:
    """``HOST:PORT`` of the coordinator: ``address``, else ``LG_COORDINATOR``, else labgrid's
    default ``127.0.0.1:20408``; a bare host gets labgrid's port 20408.

    Raises UserError for an empty host or a port that is not a number in 1-65535.
    """
    raw = (address or os.environ.get("LG_COORDINATOR") or DEFAULT_ADDRESS).strip()
    if raw.startswith("["):  # [v6]:port or [v6]
        host, _, rest = raw[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        host_part = f"[{host}]"
    elif raw.count(":") == 1:
        host_part, _, port_text = raw.partition(":")
    else:
        host_part, port_text = raw, ""
    if not host_part or host_part == "[]":
        raise UserError(f"the labgrid coordinator address {raw!r} has no host; give HOST[:PORT]")
    if not port_text:
        return f"{host_part}:{DEFAULT_PORT}"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise UserError(f"the labgrid coordinator address {raw!r} has a bad port; "
                        "give HOST[:PORT] with a port in 1-65535")
    return f"{host_part}:{int(port_text)}"


# ------------------------------------------------------------------------- the client


class _QuietLabgrid(logging.Filter):
    """Drops log records of labgrid's client module logged on the root logger.

    labgrid's ``ClientSession`` reports a lost coordinator with ``logging.error`` on the root
    logger (and a traceback with ``logging.exception``); edgebench turns the same event into
    one :class:`CoordinatorUnreachable` sentence instead, so the log line would only repeat it
    as noise on the user's terminal.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "labgrid" not in record.pathname.replace("\\", "/").split("/")


def _quiet_labgrid_logging() -> None:
    root = logging.getLogger()
    if not any(isinstance(f, _QuietLabgrid) for f in root.filters):
        root.addFilter(_QuietLabgrid())


_IMPORTING = threading.Lock()
"""One import of labgrid at a time (device threads and :func:`preload`): each puts back the
``sys.excepthook`` it found, which must not be the one labgrid set meanwhile in another
thread."""


def _import_labgrid() -> tuple[Any, Any, Any, Any]:
    """(client module, common module, generated pb2 module, grpc), imported lazily."""
    with _IMPORTING:
        hook = sys.excepthook  # labgrid.remote.client replaces sys.excepthook on import
        try:
            import grpc
            from labgrid.remote import client, common
            from labgrid.remote.generated import labgrid_coordinator_pb2 as pb2
        except ImportError as exc:
            raise LabgridMissing(
                f"the labgrid client library is not installed ({exc.name or exc}); "
                "install it with: pip install 'edgebench[labgrid]'") from None
        finally:
            sys.excepthook = hook
    return client, common, pb2, grpc


def preload() -> None:
    """Import labgrid's client library (and the proxy helper and gRPC stubs a session
    uses) in a daemon thread, so that it loads while the caller does other work; a missing
    library is ignored here (:class:`Coordinator` reports it)."""

    def load() -> None:
        with contextlib.suppress(Exception):
            _import_labgrid()
            from labgrid.remote.generated import labgrid_coordinator_pb2_grpc  # noqa: F401
            from labgrid.util.proxy import proxymanager  # noqa: F401

    threading.Thread(target=load, name="labgrid preload", daemon=True).start()


async def open_session(address: str, *, user: str | None = None) -> Any:
    """A started ``labgrid.remote.client.ClientSession`` to ``address`` (``HOST:PORT``) on the
    running event loop, on its own TCP connection.

    gRPC shares one connection between all channels of a process to the same target (its
    global subchannel pool); the coordinator identifies a client stream by the peer address
    and refuses a second stream from the same one (an ``AssertionError`` in its
    ``ClientStream``), so two sessions in one process (two Coordinator objects, or a test lab
    and edgebench) would break each other. The session's channel is therefore the one labgrid
    builds plus ``grpc.use_local_subchannel_pool``. ``user``: the user name the session
    announces (default: ``LG_USERNAME``, else the login, as labgrid does). Raises
    ``labgrid.remote.client.Error`` when the coordinator does not answer.
    """
    client, _, _, grpc = _import_labgrid()
    from labgrid.remote.generated import labgrid_coordinator_pb2_grpc as pb2_grpc

    session_class = client.ClientSession
    if user is not None:  # labgrid's getuser() reads LG_USERNAME: process-wide, so override
        session_class = type("ClientSession", (client.ClientSession,),
                             {"getuser": lambda _self: user})
    session = session_class(address, asyncio.get_running_loop())
    shared = session.channel
    options = [  # labgrid's ClientSession channel options (client.py), plus our own pool
        ("grpc.keepalive_time_ms", 7500), ("grpc.keepalive_timeout_ms", 10000),
        ("grpc.http2.ping_timeout_ms", 10000), ("grpc.http2.max_pings_without_data", 0),
        ("grpc.use_local_subchannel_pool", 1)]
    session.channel = grpc.aio.insecure_channel(target=address, options=options)
    session.stub = pb2_grpc.CoordinatorStub(session.channel)
    await shared.close()
    try:
        await session.start()
    except BaseException:
        session.stopping.set()
        with contextlib.suppress(Exception):
            await session.stop()
        with contextlib.suppress(Exception):
            await session.close()
        raise
    return session


def client_name() -> str:
    """``host/user`` as labgrid names this client to the coordinator (``LG_HOSTNAME`` and
    ``LG_USERNAME`` override the host and user, as for ``labgrid-client``)."""
    host = os.environ.get("LG_HOSTNAME") or socket.gethostname()
    user = os.environ.get("LG_USERNAME") or getpass.getuser()
    return f"{host}/{user}"


@dataclass
class _Held:
    """What this Coordinator object holds on the coordinator (guarded by ``lock``)."""

    # reentrant: release() may run in a signal handler that interrupted a holder of the lock
    lock: threading.RLock = field(default_factory=threading.RLock)
    places: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)


class Coordinator:
    """A connection to one labgrid coordinator (a context manager).

    ``address``: ``HOST[:PORT]``; None takes ``LG_COORDINATOR``, else ``127.0.0.1:20408``
    (:func:`coordinator_address`). ``timeout_s``: the limit for connecting and for each
    request (seconds). Raises :class:`CoordinatorUnreachable` (on enter, or on any call after
    the coordinator went away and one reconnect failed) and :class:`LabgridMissing`.
    """

    def __init__(self, address: str | None = None, *, timeout_s: float = 10.0) -> None:
        self.address = coordinator_address(address)
        self.timeout_s = float(timeout_s)
        self.name = client_name()
        self._held = _Held()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._session: Any = None
        self._closing = False  # close() began: no new work, in-flight acquires release
        self._closed = False
        self._connect_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> Coordinator:
        self.connect()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def connect(self) -> None:
        """Start the private event loop and the labgrid session (idempotent)."""
        _import_labgrid()
        with self._connect_lock:
            if self._closed:
                raise LabgridError(f"the connection to the labgrid coordinator at "
                                   f"{self.address} is closed")
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, daemon=True,
                                          name=f"labgrid-coordinator-{self.address}")
                thread.start()
                self._loop, self._thread = loop, thread
            if self._session is None or self._session.stopping.is_set():
                self._start_session()

    def _start_session(self) -> None:
        client, _, _, _ = _import_labgrid()
        _quiet_labgrid_logging()
        old, self._session = self._session, None
        if old is not None:
            with contextlib.suppress(Exception):
                self._submit(self._stop_session(old), self.timeout_s)

        async def start() -> Any:
            from labgrid.util.proxy import proxymanager

            grpc_address = proxymanager.get_grpc_address(self.address,
                                                         default_port=DEFAULT_PORT)
            return await asyncio.wait_for(open_session(grpc_address), self.timeout_s)

        try:
            self._session = self._submit(start(), self.timeout_s + 5)
        except (client.Error, TimeoutError, concurrent.futures.TimeoutError):
            raise self._unreachable() from None

    @staticmethod
    async def _stop_session(session: Any) -> None:
        session.stopping.set()
        with contextlib.suppress(Exception):
            await session.stop()
        with contextlib.suppress(Exception):
            await session.close()

    def _unreachable(self, lost: bool = False) -> CoordinatorUnreachable:
        if lost:
            return CoordinatorUnreachable(
                f"lost the connection to the labgrid coordinator at {self.address}")
        return CoordinatorUnreachable(
            f"cannot reach a labgrid coordinator at {self.address} within {self.timeout_s:g} s; "
            "start labgrid-coordinator there or point LG_COORDINATOR (or ?coordinator=) "
            "at it")

    def close(self) -> None:
        """Release every place this object acquired, cancel its reservations, disconnect.

        Idempotent; never raises (a coordinator that went away has forgotten nothing this
        process could still release: labgrid keeps acquisitions only while it runs).
        """
        with self._connect_lock:
            if self._closing:
                return
            self._closing = True
        if self._session is not None and self._loop is not None:
            with self._held.lock:
                places, tokens = sorted(self._held.places), sorted(self._held.tokens)
            try:
                for place in places:
                    try:
                        self._release_now(place)
                    except CoordinatorUnreachable:
                        raise  # one timeout, not one per place
                    except Exception:  # refused for this place: the others still go
                        pass
                self._cancel_tokens(tokens)
            except Exception:
                pass
            with contextlib.suppress(Exception):
                self._submit(self._stop_session(self._session), self.timeout_s)
        self._session = None
        self._closed = True
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout_s)
            if not self._thread.is_alive():
                self._loop.close()
        self._loop = self._thread = None

    # ------------------------------------------------------------------ plumbing

    def _submit(self, coro: Coroutine[Any, Any, T], timeout_s: float) -> T:
        assert self._loop is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise
        except BaseException:
            if not future.done():  # interrupted in this thread (KeyboardInterrupt)
                future.cancel()
            raise

    def _call(self, work: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
        """Run ``work(session)`` on the loop, reconnecting once if the session died."""
        _, _, _, grpc = _import_labgrid()
        if self._closed:
            raise LabgridError(f"the connection to the labgrid coordinator at {self.address} "
                               "is closed")
        if self._session is None or self._session.stopping.is_set():
            self.connect()
        session = self._session
        try:
            return self._submit(work(session), self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
                raise self._unreachable(lost=True) from None
            raise LabgridError(f"the labgrid coordinator at {self.address} refused: "
                               f"{exc.details()}") from None
        except (TimeoutError, concurrent.futures.TimeoutError):
            raise CoordinatorUnreachable(
                f"the labgrid coordinator at {self.address} did not answer within "
                f"{self.timeout_s:g} s") from None

    async def _synced(self, session: Any) -> None:
        if not await session.sync_with_coordinator():
            raise CoordinatorUnreachable(
                f"lost the connection to the labgrid coordinator at {self.address}")

    # ------------------------------------------------------------------ places

    def places(self) -> list[PlaceInfo]:
        """Every place on the coordinator, sorted by name (fresh: synced before reading)."""

        async def work(session: Any) -> list[PlaceInfo]:
            await self._synced(session)
            return [self._info(session, p) for _, p in sorted(session.places.items())]

        return self._call(work)

    @staticmethod
    def _resource_paths(session: Any) -> Iterator[tuple[str, str, str, str]]:
        for exporter, groups in session.resources.items():
            for group_name, group in groups.items():
                for resource_name, entry in group.items():
                    if entry.data.get("cls"):
                        yield (exporter, group_name, entry.cls, resource_name)

    def _info(self, session: Any, place: Any) -> PlaceInfo:
        if place.acquired:
            paths = [tuple(p) for p in place.acquired_resources]
        else:
            paths = [p for p in self._resource_paths(session) if place.hasmatch(p)]
        return PlaceInfo(name=place.name, tags=MappingProxyType(dict(place.tags)),
                         acquired_by=place.acquired or None,
                         exporters=tuple(sorted({str(p[0]) for p in paths})),
                         reservation=place.reservation or None, comment=place.comment or "")

    # ------------------------------------------------------------------ reservations

    def reserve(self, want: Mapping[str, str] | str, count: int = 1, *, timeout_s: float,
                on_wait: Callable[[str, float], None] | None = None,
                prio: float = 0.0) -> Reservation:
        """Wait in the coordinator's queue until ``count`` places matching ``want`` are
        allocated to this client.

        ``want``: tags every place must have (``{"board": "rpi5"}``) or one place name (the
        labgrid filter ``name=PLACE``). ``count``: places wanted (one labgrid reservation
        each, created in order so the queue stays first come, first served). ``timeout_s``:
        the longest wait. ``on_wait(state, waited_s)`` is called about once a second while
        waiting, in the caller's thread, with a one-line state (what is allocated, who holds
        the other places). ``prio``: labgrid's reservation priority (higher goes first).

        Raises :class:`NoMatchingPlace` at once when fewer than ``count`` places have those
        tags; :class:`ReservationTimeout` after ``timeout_s`` (the reservations are
        cancelled, and on any other exception or interruption too).
        """
        start = time.monotonic()
        _, common, pb2, _ = _import_labgrid()
        filters = {"name": want} if isinstance(want, str) else dict(want)
        if count < 1:
            raise UserError(f"a labgrid reservation needs a count of at least 1, not {count}")
        if not filters:
            raise UserError("a labgrid reservation needs a place name or at least one tag")
        for key, value in filters.items():
            if not common.TAG_KEY.fullmatch(key) or not value or any(c.isspace() for c in value):
                raise UserError(f"{key}={value} is not a labgrid tag filter (keys are lowercase "
                                "letters, digits and _, at least 2 long; values are non-empty)")
        wanted = describe_filters(filters)
        self._check_enough(filters, count, wanted)

        async def create(session: Any) -> list[str]:
            tokens = []
            try:
                for _ in range(count):
                    request = pb2.CreateReservationRequest(
                        filters={"main": pb2.Reservation.Filter(filter=filters)},
                        prio=float(prio))
                    response = await session.stub.CreateReservation(request)
                    tokens.append(response.reservation.token)
                    with self._held.lock:
                        self._held.tokens.add(response.reservation.token)
            except BaseException:
                await self._cancel_async(session, tokens)
                raise
            return tokens

        tokens = self._call(create)
        try:
            while True:
                states = self._call(lambda s: self._poll(s, tokens))
                waited = time.monotonic() - start
                bad = [(t, st) for t, (st, _) in zip(tokens, states)
                       if st not in ("waiting", "allocated", "acquired")]
                if bad:
                    raise LabgridError(f"the labgrid coordinator at {self.address} marked the "
                                       f"reservation {bad[0][0]} for {wanted} {bad[0][1]}")
                places = [place for _, place in states]
                got = [place for place in places if place]
                if len(got) == len(tokens):
                    return Reservation(tokens=tuple(tokens), places=tuple(got),
                                       filters=MappingProxyType(filters), waited_s=waited)
                if waited >= timeout_s:
                    raise ReservationTimeout(
                        f"no {count} place(s) with {wanted_text(filters)} became free on the "
                        f"labgrid coordinator at {self.address} within {timeout_s:g} s "
                        f"({self._wait_state(filters, places, count)}); "
                        "raise reservation_timeout or free a place")
                if on_wait is not None:
                    on_wait(self._wait_state(filters, places, count), waited)
                time.sleep(max(0.0, min(POLL_INTERVAL_S, timeout_s - waited)))
        except BaseException:
            with contextlib.suppress(Exception):
                self._cancel_tokens(tokens)
            raise

    def _check_enough(self, filters: Mapping[str, str], count: int, wanted: str) -> None:
        matching = [p for p in self.places() if _matches(p, filters)]
        if len(matching) >= count:
            return
        if not matching and set(filters) == {"name"}:
            raise NoMatchingPlace(
                f"there is no place {filters['name']} on the labgrid coordinator at "
                f"{self.address} (it has: {', '.join(p.name for p in self.places()) or 'none'})")
        if not matching:
            raise NoMatchingPlace(
                f"no place on the labgrid coordinator at {self.address} has {wanted}; "
                f"tag places with: labgrid-client -p PLACE set-tags {wanted}")
        raise NoMatchingPlace(
            f"only {len(matching)} place(s) on the labgrid coordinator at {self.address} have "
            f"{wanted} ({', '.join(p.name for p in matching)}), {count} were asked for")

    def _wait_state(self, filters: Mapping[str, str], allocated: list[str | None],
                    count: int) -> str:
        got = [p for p in allocated if p]
        text = f"waiting for {wanted_text(filters)}: {len(got)} of {count} allocated"
        with contextlib.suppress(LabgridError):
            held = [f"{p.name} by {p.acquired_by}" for p in self.places()
                    if _matches(p, filters) and p.acquired_by and p.name not in got]
            if held:
                text += "; acquired: " + ", ".join(held)
        return text

    async def _poll(self, session: Any, tokens: list[str]) -> list[tuple[str, str | None]]:
        _, common, pb2, _ = _import_labgrid()
        out: list[tuple[str, str | None]] = []
        for token in tokens:
            response = await session.stub.PollReservation(pb2.PollReservationRequest(token=token))
            res = common.Reservation.from_pb2(response.reservation)
            place = res.allocations.get("main", [None])[0]
            out.append((res.state.name, place or None))
        return out

    def cancel(self, reservation: Reservation) -> None:
        """Cancel the reservation (its places go to the next in the queue). Idempotent: a
        reservation the coordinator no longer knows (cancelled, expired) is fine."""
        self._cancel_tokens(list(reservation.tokens))

    def _cancel_tokens(self, tokens: list[str]) -> None:
        if tokens:
            self._call(lambda s: self._cancel_async(s, tokens))

    async def _cancel_async(self, session: Any, tokens: list[str]) -> None:
        _, _, pb2, grpc = _import_labgrid()
        for token in tokens:
            try:
                await session.stub.CancelReservation(pb2.CancelReservationRequest(token=token))
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.FAILED_PRECONDITION:  # "does not exist"
                    raise
            with self._held.lock:
                self._held.tokens.discard(token)

    # ------------------------------------------------------------------ acquire/release

    def acquire(self, place: str, reservation: Reservation | None = None) -> PlaceInfo:
        """Acquire ``place`` for this client (exclusive use until :meth:`release`).

        With ``reservation``, the place must be one of its places. Raises :class:`PlaceBusy`
        naming the holder when someone else acquired or reserved it, :class:`ExporterGone`
        when a resource it matches is not exported, :class:`LabgridError` for an unknown place.
        """
        if reservation is not None and place not in reservation.places:
            raise LabgridError(f"place {place} is not in the reservation "
                               f"{', '.join(reservation.tokens)} ({', '.join(reservation.places)})")

        async def work(session: Any) -> PlaceInfo:
            _, _, pb2, grpc = _import_labgrid()
            await self._synced(session)
            info = self._check_acquirable(session, place, reservation)
            # held before asking: if this call is cut off (timeout, Ctrl-C) after the
            # coordinator granted it, close() still releases it
            with self._held.lock:
                self._held.places.add(place)
            try:
                await session.stub.AcquirePlace(pb2.AcquirePlaceRequest(placename=place))
            except grpc.aio.AioRpcError as exc:
                with self._held.lock:
                    self._held.places.discard(place)
                if exc.code() in (grpc.StatusCode.FAILED_PRECONDITION,
                                  grpc.StatusCode.PERMISSION_DENIED):
                    await self._synced(session)
                    now = session.places.get(place)
                    holder = now.acquired if now is not None else None
                    if holder:
                        raise PlaceBusy(_busy(place, holder, self.address)) from None
                    raise PlaceBusy(f"the labgrid coordinator at {self.address} did not let "
                                    f"this client acquire place {place}: {exc.details()}") from None
                raise
            if self._closing:  # closed while this was in flight: do not leave it acquired
                await self._release_async(session, place)
            await self._synced(session)
            return self._info(session, session.places[place]) if place in session.places \
                else info

        return self._call(work)

    def _check_acquirable(self, session: Any, place: str,
                          reservation: Reservation | None) -> PlaceInfo:
        found = session.places.get(place)
        if found is None:
            raise LabgridError(f"there is no place {place} on the labgrid coordinator at "
                               f"{self.address}")
        if found.acquired:
            raise PlaceBusy(_busy(place, found.acquired, self.address))
        if found.reservation and (reservation is None
                                  or found.reservation not in reservation.tokens):
            raise PlaceBusy(f"place {place} is reserved for someone else (labgrid reservation "
                            f"{found.reservation}) on the labgrid coordinator at {self.address}")
        paths = list(self._resource_paths(session))
        for match in found.matches:
            if not any(match.ismatch(p) for p in paths):
                raise ExporterGone(f"the resource {match} of place {place} is not exported by "
                                   "any exporter; start its labgrid-exporter")
        return self._info(session, found)

    def release(self, place: str) -> None:
        """Release ``place`` if this object acquired it; otherwise do nothing.

        Idempotent and safe from cleanup paths and signal handlers: it never releases a place
        someone else holds (labgrid's ``release-from`` semantics) and never kicks anyone.
        Raises :class:`CoordinatorUnreachable` when the coordinator cannot be asked.
        """
        with self._held.lock:
            if place not in self._held.places:
                return
        self._release_now(place)

    def _release_now(self, place: str) -> None:
        self._call(lambda s: self._release_async(s, place))

    async def _release_async(self, session: Any, place: str) -> None:
        _, _, pb2, grpc = _import_labgrid()
        request = pb2.ReleasePlaceRequest(placename=place, fromuser=self.name)
        try:
            await session.stub.ReleasePlace(request)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:  # "does not exist": nothing held
                raise
        with self._held.lock:
            self._held.places.discard(place)

    def held(self) -> tuple[str, ...]:
        """The places this object acquired and has not released, sorted."""
        with self._held.lock:
            return tuple(sorted(self._held.places))

    # ------------------------------------------------------------------ resources

    def network_service(self, place: str, name: str | None = None) -> NetworkTarget:
        """The ``NetworkService`` of ``place``, which this client must have acquired.

        ``name``: the resource's name in the place when it has several. Raises
        :class:`ExporterGone` when its exporter no longer exports it, :class:`LabgridError`
        when the place is not acquired by this client or has no such resource.
        """

        async def work(session: Any) -> NetworkTarget:
            await self._synced(session)
            found = session.places.get(place)
            if found is None:
                raise LabgridError(f"there is no place {place} on the labgrid coordinator at "
                                   f"{self.address}")
            if found.acquired != self.name:
                raise LabgridError(f"place {place} is not acquired by this client "
                                   f"({self.name}) but by {found.acquired or 'nobody'}")
            services = []
            for path in found.acquired_resources:
                exporter, group, cls, resource_name = (str(x) for x in path)
                if cls != "NetworkService":
                    continue
                match = found.getmatch(tuple(path))
                shown = (match.rename if match is not None and match.rename else resource_name)
                if name is None or shown == name:
                    services.append((exporter, group, resource_name, shown))
            if not services:
                raise LabgridError(
                    f"place {place} has no NetworkService resource"
                    + (f" named {name}" if name else "")
                    + "; export one (address, port, username) and add-match it to the place")
            if len(services) > 1:
                raise LabgridError(f"place {place} has {len(services)} NetworkService resources "
                                   f"({', '.join(s[3] for s in services)}); name one")
            exporter, group, resource_name, shown = services[0]
            entry = session.resources.get(exporter, {}).get(group, {}).get(resource_name)
            if entry is None or not entry.data.get("cls") or not entry.avail:
                raise ExporterGone(f"the exporter {exporter} of place {place} no longer exports "
                                   f"its NetworkService (the exporter stopped or lost it)")
            args = entry.args
            return NetworkTarget(place=place, address=str(args["address"]),
                                 port=int(args.get("port") or 22),
                                 username=str(args["username"]), exporter=exporter,
                                 resource=shown)

        return self._call(work)


def _matches(place: PlaceInfo, filters: Mapping[str, str]) -> bool:
    tags = {**place.tags, "name": place.name}
    return all(tags.get(k) == v for k, v in filters.items())


def wanted_text(filters: Mapping[str, str]) -> str:
    """``place shapes-pi-1`` for a name filter, else ``board=rpi5``."""
    if set(filters) == {"name"}:
        return f"place {filters['name']}"
    return describe_filters(filters)


def _busy(place: str, holder: str, address: str) -> str:
    return (f"place {place} is acquired by {holder} on the labgrid coordinator at {address}; "
            f"wait for it or ask them to run: labgrid-client -p {place} release")
