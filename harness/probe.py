"""Device probing: the agent that fingerprints a device, the fingerprints of many devices at
once (``edgebench devices``), and the host's own fingerprint and library versions."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np
import pluggy

from .config import device_scheme
from .contracts import Backend, Device
from .errors import CaseError, UserError
from .fingerprint import DeviceAgent
from .plugin_manager import PluginKind, Registry
from .records import DeviceInfo, from_json_dict

ProbeResult = tuple[str, DeviceInfo | None, str | None]
"""``(uri, fingerprint, error)``: exactly one of the fingerprint and the error is set."""


def device_class(registry: Registry, uri: str) -> type[Device]:
    """The device class registered for ``uri``'s scheme; raises
    :class:`~edgebench.errors.UserError` when no plugin registers it."""
    return cast(type[Device], registry.get(PluginKind.DEVICE, device_scheme(uri)).cls)


def open_device(cls: type[Device], uri: str) -> Device:
    """A (not yet entered) device of ``cls`` for ``uri``: device classes take their URI as
    their one constructor argument (the contract does not declare ``__init__`` yet)."""
    return cast(Callable[[str], Device], cls)(uri)


def device_agent(device: Device) -> DeviceAgent:
    """The agent that fingerprints ``device`` (an entered device): its own one when it has
    one (a phone without Python fingerprints itself with its shell), else the Python agent.
    Never raises; the agent raises :class:`CaseError` when its probe fails."""
    agent = device.agent()
    return agent if isinstance(agent, DeviceAgent) else DeviceAgent(device)


def probe_devices(uris: Sequence[str], pm: pluggy.PluginManager, registry: Registry, *,
                  accept_new_host_keys: bool = False,
                  on_message: Callable[[str], None] | None = None,
                  ) -> list[ProbeResult]:
    """Connect to each device (one thread each) and fingerprint it, with the versions of
    every registered backend's runtime modules and numpy.

    Returns one ``(uri, info, error)`` per device, in the order given: a URI that stands for
    N devices (:meth:`~edgebench.contracts.Device.slots`, e.g. ``count=2`` boards of a farm)
    gives N results, its devices entered concurrently and each held until all of them were
    probed (so each is a different board; ``info.place`` names it). A device that cannot be
    reached, refuses its URI or whose probe fails gives its error as one sentence (never
    raises for those). With ``accept_new_host_keys``, device classes that check host keys
    first record the key of a host they do not know yet (never a changed one), and
    ``on_message`` gets ``"<uri>: <what was recorded>"``.
    """
    backends = [cast(type[Backend], reg.cls) for reg in registry.of(PluginKind.BACKEND).values()]
    modules = tuple(sorted({m for cls in backends for m in cls.runtime_modules} | {"numpy"}))
    results: dict[tuple[str, int], tuple[DeviceInfo | None, str | None]] = {}

    def slots(uri: str) -> int:
        try:
            cls = device_class(registry, uri)
            cls.check_uri(uri)
            return max(1, cls.slots(uri))
        except (CaseError, UserError):
            return 1  # one() says why

    def one(uri: str, slot: int, together: threading.Barrier) -> None:
        waited = False

        def all_probed() -> None:  # once: until every device of the URI was probed or failed
            nonlocal waited
            if not waited:
                waited = True
                with contextlib.suppress(threading.BrokenBarrierError):
                    together.wait()

        try:
            cls = device_class(registry, uri)
            cls.check_uri(uri)
            if accept_new_host_keys and cls.has_host_keys and slot == 0:
                message = cls.accept_new_host_key(uri)
                if on_message is not None:
                    on_message(f"{uri}: {message}")
            with open_device(cls, uri) as device:
                results[uri, slot] = (device_agent(device).probe(modules, pm), None)
                all_probed()  # keep this board while the others get theirs
        except (CaseError, UserError, OSError) as exc:
            results[uri, slot] = (None, str(exc))
        finally:
            all_probed()

    work = [(uri, n) for uri in uris for n in range(slots(uri))]
    barriers = {uri: threading.Barrier(sum(1 for u, _ in work if u == uri)) for uri in uris}
    threads = [threading.Thread(target=one, args=(uri, n, barriers[uri]), daemon=True)
               for uri, n in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [(uri, *results.get((uri, n), (None, "no answer"))) for uri, n in work]


def host_info() -> DeviceInfo:
    """The host's own fingerprint (uri ``"host"``), from the agent's probe run in-process
    (numpy's version among its runtimes)."""
    from .agent import edgebench_readings

    fields: dict[str, Any] = edgebench_readings.probe(["numpy"])
    known = {f.name for f in dataclasses.fields(DeviceInfo)}
    return from_json_dict(DeviceInfo, {"uri": "host", **{k: v for k, v in fields.items()
                                                          if k in known}})


def host_versions() -> dict[str, str]:
    """Versions of the host's Python and of the libraries the core computes with
    (``{"python": "3.11.9", "numpy": ..., "pluggy": ..., "onnx": ...}``; onnx only when
    installed)."""
    import platform

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "pluggy": pluggy.__version__}
    try:
        import onnx

        versions["onnx"] = onnx.__version__
    except ImportError:
        pass
    return versions
