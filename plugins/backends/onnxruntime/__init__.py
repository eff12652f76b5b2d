"""ONNX Runtime backend: :mod:`.plugin` (host side) and ``onnxruntime_runner.py`` (device side)."""
