"""LiteRT (TFLite) backend: :mod:`.plugin` (host side) and ``litert_runner.py`` (device side)."""
