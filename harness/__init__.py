"""edgebench: benchmark YOLOv8-class detectors on edge runtimes and devices.

Plugin authors need only ``hookimpl`` (and the contracts in :mod:`edgebench.contracts`).
"""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["__version__", "hookimpl"]
