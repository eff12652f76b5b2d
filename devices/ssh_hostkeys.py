"""SSH host keys as OpenSSH keeps them: known_hosts read (plain, hashed and ``@revoked``
entries) and written, fingerprints, and the policy for a host not known yet.

Host keys are checked against known_hosts (plain and hashed entries; a key marked
``@revoked`` is refused); an unknown host is refused with its fingerprint and how to accept
it (``edgebench devices --accept-new-host-keys -d URI``, or ``hostkey=SHA256:...`` in the
URI), unless ``~/.ssh/config`` says ``StrictHostKeyChecking accept-new`` (or ``no``) for
it: then its key is recorded as OpenSSH would (hashed under ``HashKnownHosts yes``). A
changed key is always refused.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from edgebench.errors import CaseError

from .ssh_target import SSHTarget


class HostKey(Protocol):
    """What edgebench uses of a ``paramiko.PKey`` (paramiko ships no type hints)."""

    def get_name(self) -> str:
        """The key type, e.g. ``ssh-ed25519``."""
        ...

    def get_base64(self) -> str:
        """The public key as in a known_hosts line."""
        ...

    def asbytes(self) -> bytes:
        """The public key blob that fingerprints hash."""
        ...


AcceptKey = Callable[[HostKey], bool]
"""Decides on the key of a host that known_hosts does not know: ``True`` accepts it."""


def fingerprint(key: HostKey) -> str:
    """OpenSSH's ``SHA256:...`` fingerprint of a key (as ``ssh-keygen -lf`` prints it)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


class UnknownHostKey(Exception):
    """The host offered ``key``, which known_hosts does not know and nobody accepted."""

    def __init__(self, key: HostKey) -> None:
        super().__init__("unknown host key")
        self.key = key


def missing_key_policy(accept: AcceptKey | None = None) -> Any:
    """A ``paramiko.MissingHostKeyPolicy`` that refuses an unknown host's key with
    :class:`UnknownHostKey` (default) unless ``accept(key)`` says yes."""
    import paramiko

    class Policy(paramiko.MissingHostKeyPolicy):  # type: ignore[misc]  # paramiko is untyped
        def missing_host_key(self, client: Any, hostname: str, key: HostKey) -> None:
            if accept is not None and accept(key):
                return
            raise UnknownHostKey(key)

    return Policy()


def record_host_key(target: SSHTarget, key: HostKey) -> Path:
    """Append ``key`` for the target to the first known_hosts file (hashed with
    ``HashKnownHosts yes``), as ``ssh`` does when it accepts a new host."""
    import paramiko

    name = target.known_hosts_name
    if target.hash_known_hosts:
        name = str(paramiko.HostKeys.hash_host(name))
    path = Path(target.known_hosts[0])
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(path, "a", encoding="ascii") as f:
        f.write(f"{name} {key.get_name()} {key.get_base64()}\n")
    return path


def load_known_hosts(keys: Any, path: str) -> None:
    """Add the entries of an OpenSSH known_hosts file to ``keys``, a ``paramiko.HostKeys``.

    As ``ssh`` does: plain and hashed (``|1|``) host names; lines it cannot parse and
    marker lines (``@cert-authority``, ``@revoked``: see :func:`revoked_keys`) are skipped
    (paramiko's own loader gives up on the whole file). Only read: never written back.
    """
    from paramiko.hostkeys import HostKeyEntry

    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CaseError(f"known_hosts file {path} cannot be read: {exc.strerror or exc}") from None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", "@")):
            continue
        try:
            entry = HostKeyEntry.from_line(line, lineno)
        except Exception:  # bad base64, unknown key type: OpenSSH skips these too
            continue
        if entry is not None and entry.key is not None:
            for name in entry.hostnames:
                keys.add(name, entry.key.get_name(), entry.key)


def revoked_keys(paths: Sequence[str]) -> dict[str, str]:
    """``{base64 key: file}`` of the ``@revoked`` lines of known_hosts files (paramiko
    skips marker lines, so a revoked key would otherwise pass as known)."""
    found: dict[str, str] = {}
    for path in paths:
        try:
            lines = Path(path).read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[0] == "@revoked":
                found[fields[3]] = path
    return found


def known_hosts_file_of(paths: Sequence[str], name: str, key: HostKey) -> str | None:
    """The first of the known_hosts files ``paths`` that holds ``key`` for the host
    ``name`` (``host`` or ``[host]:port``, plain or hashed entry), or ``None``: the file a
    changed key must be removed from (``ssh-keygen -R NAME -f FILE``)."""
    import paramiko

    for path in paths:
        keys = paramiko.HostKeys()
        try:
            load_known_hosts(keys, path)
        except CaseError:
            continue
        entry = keys.lookup(name)
        if entry is not None and any(k.get_base64() == key.get_base64()
                                     for k in entry.values()):
            return path
    return None
