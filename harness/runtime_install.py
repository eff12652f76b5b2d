"""How to install a backend's runtime on a device: the exact command for that device's own
interpreter (``<device python> -m pip install <packages>``), never the host's extra.

The packages are the backend's :attr:`~edgebench.contracts.Backend.device_requirements`
when it declares them; otherwise the distributions that provide its ``runtime_modules`` on
the host (``importlib.metadata.packages_distributions``: ``ai_edge_litert`` is provided by
``ai-edge-litert``, ``MNN`` by ``mnn``), which is what the host itself runs.
"""

from __future__ import annotations

import importlib.metadata
import shlex
from collections.abc import Mapping

from .contracts import Backend


def module_distribution(module: str, provided: Mapping[str, list[str]] | None = None
                        ) -> str | None:
    """The host's distribution that provides the top-level package of ``module``
    (``ai_edge_litert`` -> ``ai-edge-litert``), or ``None`` when none installed here does.
    ``provided``: ``importlib.metadata.packages_distributions()`` when already read (it
    scans every installed distribution, about 0.3 s)."""
    if provided is None:
        provided = importlib.metadata.packages_distributions()
    dists = provided.get(module.split(".")[0])
    return sorted(dists)[0] if dists else None


def device_requirements(backend: type[Backend] | Backend,
                        provided: Mapping[str, list[str]] | None = None) -> tuple[str, ...]:
    """The pip requirements that install ``backend``'s runtime on a device: its declared
    ``device_requirements``, else the host's distribution of the first of its
    ``runtime_modules`` installed here; ``()`` when neither is known."""
    if backend.device_requirements or not backend.runtime_modules:
        return backend.device_requirements
    if provided is None:
        provided = importlib.metadata.packages_distributions()
    for module in backend.runtime_modules:
        dist = module_distribution(module, provided)
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


def missing_runtime_reason(backend: type[Backend] | Backend, uri: str, python: str) -> str:
    """Why a case is skipped when none of ``backend``'s runtime modules imports on the
    device ``uri`` with the interpreter ``python``, in one sentence with the command that
    installs it there (or, when the packages are not known, the backend's install hint)."""
    modules = " or ".join(backend.runtime_modules)
    command = device_install_command(backend, python)
    if command is not None:
        return f"{modules} is not installed on {uri}; install it there with: {command}"
    hint = f" ({backend.install_hint})" if backend.install_hint else ""
    return f"{modules} is not installed for {python or 'the Python'} on {uri}{hint}"


def import_failed_reason(backend: type[Backend] | Backend, module: str, uri: str,
                         python: str) -> str:
    """Why a case is skipped when its runner could not import ``module`` on the device (a
    runtime the backend does not list in ``runtime_modules``, or one a runner option asks
    for): one sentence with the install command for the device's interpreter. The
    backend's own ``device_requirements`` are named when ``module`` is one of its runtime
    modules, else the host's distribution of ``module``."""
    ours = module.split(".")[0] in {m.split(".")[0] for m in backend.runtime_modules}
    dist = module_distribution(module)
    requirements = device_requirements(backend) if ours else (dist,) if dist else ()
    if requirements and python:
        command = shlex.join([python, "-m", "pip", "install", *requirements])
        return (f"the {backend.name} runner cannot import {module} on {uri}; install it "
                f"there with: {command}")
    return f"the {backend.name} runner cannot import {module} on {uri} (No module named " \
           f"{module!r})"
