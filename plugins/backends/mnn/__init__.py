"""MNN backend: :mod:`.plugin` (host side), :mod:`.convert` and :mod:`.mnnconvert` (ONNX ->
``.mnn`` with the mnn wheel's converter) and ``mnn_runner.py`` (device side)."""
