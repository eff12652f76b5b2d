"""Keeping secrets out of messages: device URIs as they may be shown to anyone."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["SAFE_OPTIONS", "redact"]

SAFE_OPTIONS = frozenset({"python", "key", "known_hosts", "hostkey", "tmpdir",
                          "connect_timeout", "adb", "onnxruntime_perf_test", "benchmark_model",
                          "benchncnn"})
"""URI options whose values are no secret (paths, fingerprints, numbers): every other
option's value is hidden in messages (``?token=...`` is refused, and never echoed)."""


def redact(uri: str) -> str:
    """``uri`` fit for a message: a password (``user:***@``) and the value of any option
    that is not one of :data:`SAFE_OPTIONS` replaced (URIs with them are refused anyway)."""
    uri = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", uri)
    base, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        key, eq, _ = part.partition("=")
        parts.append(part if not eq or unquote(key) in SAFE_OPTIONS else f"{key}=***")
    return base + sep + "&".join(parts)
