"""How to install a backend's runtime on a device: the exact command for that device's own
interpreter (``<device python> -m pip install <packages>``), never the host's extra.

The packages are the backend's :attr:`~edgebench.contracts.Backend.device_requirements`
when it declares them; otherwise the distributions that provide its ``runtime_modules`` on
the host (their ``RECORD``: ``ai_edge_litert`` is provided by ``ai-edge-litert``), which
is what the host itself runs.
"""

from __future__ import annotations

import importlib.metadata
import shlex

from .contracts import Backend
from .records import DeviceInfo


def module_distribution(module: str) -> str | None:
    """The installed distribution that provides the top-level package (or module) of
    ``module`` on the host (``ai_edge_litert`` -> ``ai-edge-litert``, ``MNN`` -> ``MNN``),
    read from each distribution's ``top_level.txt`` or ``RECORD``; the first by name when
    several do (``cv2``); ``None`` when none installed here does."""
    top = module.split(".")[0]
    found: set[str] = set()
    for dist in importlib.metadata.distributions():
        if top in (dist.read_text("top_level.txt") or "").split() or any(
                line.startswith((f"{top}/", f"{top}.py,"))
                for line in (dist.read_text("RECORD") or "").splitlines()):
            found.add(str(dist.metadata["Name"]))
    return sorted(found)[0] if found else None


def device_requirements(backend: type[Backend] | Backend,
                        info: DeviceInfo | None = None) -> tuple[str, ...]:
    """The pip requirements that install ``backend``'s runtime on a device: what the
    backend declares (``device_install_requirements(info)`` for a device fingerprint
    ``info``, else ``device_requirements``), else the host's distribution of the first of
    its ``runtime_modules`` installed here (:func:`module_distribution`); ``()`` when
    neither is known."""
    declared = (backend.device_install_requirements(info)
                if info is not None and isinstance(backend, Backend)
                else backend.device_requirements)
    if declared or not backend.runtime_modules:
        return tuple(declared)
    for module in backend.runtime_modules:
        dist = module_distribution(module)
        if dist is not None:
            return (dist,)
    return ()


def device_install_command(backend: type[Backend] | Backend, python: str) -> str | None:
    """``<python> -m pip install <requirements>`` (each word shell-quoted), the command that
    installs ``backend``'s runtime for the device interpreter ``python``; ``None`` when the
    requirements are not known (:func:`device_requirements`)."""
    requirements = device_requirements(backend)
    if not requirements or not python:
        return None
    return shlex.join([python, "-m", "pip", "install", *requirements])


def missing_runtime_reason(backend: type[Backend] | Backend, info: DeviceInfo,
                           uri: str, python: str) -> str | None:
    """Why a case of ``backend`` is skipped on the device ``uri`` whose interpreter
    ``python`` imports the modules ``info.runtimes`` (module -> version, its probe): none of
    the backend's ``runtime_modules``, or numpy (every Python runner needs it), is there.
    One sentence with the command that installs what is missing there, for that
    interpreter; when the runtime's packages are not known (:func:`device_requirements`),
    it says so (never the backend's ``install_hint``: that installs on the host).
    ``None``: nothing is missing."""
    missing: list[str] = []
    requirements: list[str] = []
    known = True
    runtimes = info.runtimes
    if backend.runtime_modules and not any(m in runtimes for m in backend.runtime_modules):
        missing.append(" or ".join(backend.runtime_modules))
        found = device_requirements(backend, info=info)
        requirements += found
        known = bool(found)
    if "numpy" not in runtimes:
        missing.append("numpy")
        requirements.append("numpy")
    if not missing:
        return None
    what = f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"
    it = "it" if len(missing) == 1 else "them"
    command = shlex.join([python or "python3", "-m", "pip", "install", *requirements])
    if known:
        return f"{what} on {uri}; install {it} there with: {command}"
    # the runtime's package is not known: never the host's extra (it installs on the host)
    runtime = " or ".join(backend.runtime_modules)
    also = f", and numpy with: {command}" if requirements else ""
    return (f"{what} on {uri}; install the package that provides {runtime} for "
            f"{python or 'its Python'} there (the {backend.name} backend does not name it){also}")


def import_failed_reason(backend: type[Backend] | Backend, module: str, uri: str,
                         python: str) -> str:
    """Why a case is skipped when its runner could not import ``module`` on the device (a
    runtime the backend does not list in ``runtime_modules``, or one a runner option asks
    for): one sentence with the install command for the device's interpreter. The
    backend's declared ``device_requirements`` are named when ``module`` is one of its
    runtime modules, else the host's distribution of ``module`` itself."""
    ours = module.split(".")[0] in {m.split(".")[0] for m in backend.runtime_modules}
    if ours and backend.device_requirements:
        requirements = backend.device_requirements
    else:  # the module itself, not one of its alternatives (tflite_runtime, not ai_edge_litert)
        dist = module_distribution(module)
        requirements = (dist,) if dist else ()
    if requirements and python:
        command = shlex.join([python, "-m", "pip", "install", *requirements])
        return (f"the {backend.name} runner cannot import {module} on {uri}; install it "
                f"there with: {command}")
    return f"the {backend.name} runner cannot import {module} on {uri} (No module named " \
           f"{module!r})"
