"""ncnn backend: :mod:`.plugin` (host side), :mod:`.pnnx` (ONNX -> ncnn conversion) and
``ncnn_runner.py`` (device side)."""
