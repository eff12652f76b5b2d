"""Keeping secrets out of messages: device URIs as they may be shown to anyone."""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["SAFE_OPTIONS", "SECRET_KEY", "redact"]

SAFE_OPTIONS = frozenset({"python", "key", "known_hosts", "hostkey", "tmpdir",
                          "connect_timeout", "adb", "onnxruntime_perf_test", "benchmark_model",
                          "benchncnn"})
"""URI options whose values are no secret although :data:`SECRET_KEY` matches their names
(``key`` is a path, ``hostkey`` a fingerprint); listed in full for readers."""

SECRET_KEY = re.compile(r"pass|pwd|token|secret|auth|cred|key|sig|cookie|session|private",
                        re.IGNORECASE)
"""An option name that may carry a secret (``password``, ``passphrase``, ``token``,
``api_key``, ``auth``...): its value is hidden in messages (URIs with such options are
refused anyway). Other options (a labgrid board tag, ``count``) are shown as given."""


def redact(uri: str) -> str:
    """``uri`` fit for a message: a password (``user:***@``) and the value of every option
    whose name :data:`SECRET_KEY` matches, unless it is one of :data:`SAFE_OPTIONS`,
    replaced by ``***``; ``labgrid://?board=x&count=0`` is returned unchanged."""
    uri = re.sub(r"(//[^/@:]*):[^/@]*@", r"\1:***@", uri)
    base, sep, query = uri.partition("?")
    if not sep:
        return uri
    parts = []
    for part in query.split("&"):
        key, eq, _ = part.partition("=")
        name = unquote(key)
        secret = eq and name not in SAFE_OPTIONS and SECRET_KEY.search(name)
        parts.append(f"{key}=***" if secret else part)
    return base + sep + "&".join(parts)
