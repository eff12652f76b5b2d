"""ExecuTorch backend: :mod:`.plugin` (host side), :mod:`.export_pte` (the ``.pt`` -> ``.pte``
export worker, run in a subprocess) and ``executorch_runner.py`` (device side)."""
