"""First-party backend plugins: one sub-package per runtime, each holding the plugin
(``plugin.py``), its device-side runner (``<runtime>_runner.py``: Python 3.8 + stdlib + numpy +
the runtime) and its own export/conversion code."""
