"""OpenVINO backend: :mod:`.plugin` (host side) and ``openvino_runner.py`` (device side)."""
