"""Opening an SSH connection to a target: host keys checked, keys or ssh-agent only (never a
password), dead peers detected; every failure is one sentence saying what to do.
"""

from __future__ import annotations

import contextlib
import shlex
import socket
from typing import Protocol

from edgebench.errors import CaseError
from edgebench.redaction import redact
from edgebench.retry import ConnectionLost

from .ssh_hostkeys import (
    AcceptKey,
    HostKey,
    UnknownHostKey,
    fingerprint,
    known_hosts_file_of,
    load_known_hosts,
    missing_key_policy,
    record_host_key,
    revoked_keys,
)
from .ssh_target import SSHTarget

# What edgebench uses of paramiko's objects (paramiko ships no type hints): mypy checks the
# devices against these; paramiko's own classes satisfy them.


class SFTPAttributes(Protocol):
    st_mode: int | None


class SFTPClient(Protocol):
    def put(self, localpath: str, remotepath: str) -> object: ...
    def get(self, remotepath: str, localpath: str) -> None: ...
    def stat(self, path: str) -> SFTPAttributes: ...
    def mkdir(self, path: str, mode: int = 0o777) -> None: ...
    def chmod(self, path: str, mode: int) -> None: ...
    def close(self) -> None: ...


class ChannelFile(Protocol):
    def read(self) -> bytes: ...


class Channel(Protocol):
    """A session channel: one remote command."""

    def exec_command(self, command: str) -> None: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def recv_ready(self) -> bool: ...
    def recv(self, nbytes: int) -> bytes: ...
    def recv_stderr_ready(self) -> bool: ...
    def recv_stderr(self, nbytes: int) -> bytes: ...
    def exit_status_ready(self) -> bool: ...
    def recv_exit_status(self) -> int: ...
    def makefile(self, mode: str) -> ChannelFile: ...
    def makefile_stderr(self, mode: str) -> ChannelFile: ...
    def close(self) -> None: ...


class Transport(Protocol):
    def is_active(self) -> bool: ...
    def open_session(self, timeout: float | None = None) -> Channel: ...


class SSHClient(Protocol):
    """A connected ``paramiko.SSHClient``."""

    def get_transport(self) -> Transport | None: ...
    def open_sftp(self) -> SFTPClient: ...
    def close(self) -> None: ...


def connect(target: SSHTarget, *, accept_unknown: AcceptKey | None = None) -> SSHClient:
    """A connected ``paramiko.SSHClient``.

    The host key must be in the target's known_hosts and not ``@revoked``, or match the
    URI's ``hostkey=``; an unknown one is accepted only by ``accept_unknown`` or, without
    it, by ``StrictHostKeyChecking accept-new`` (then recorded). Every failure is a
    :class:`CaseError` of one sentence saying what to do, or :class:`ConnectionLost` when
    the host cannot be reached (a retry may work).
    """
    import paramiko

    if accept_unknown is None and target.accept_new_keys:
        def accept_unknown(key: HostKey) -> bool:
            record_host_key(target, key)
            return True

    client = paramiko.SSHClient()
    for path in target.known_hosts:
        load_known_hosts(client.get_host_keys(), path)
    pinned = target.options.get("hostkey")
    client.set_missing_host_key_policy(missing_key_policy(
        accept_unknown or (lambda key: pinned is not None and fingerprint(key) == pinned)))
    sock = paramiko.ProxyCommand(target.proxy_command) if target.proxy_command else None
    tried = ", ".join(target.key_files) if target.key_files else "~/.ssh/id_*"
    try:
        client.connect(
            target.hostname, port=target.port, username=target.user,
            key_filename=list(target.key_files) or None,
            allow_agent=not (target.identities_only and target.key_files),
            look_for_keys=not target.key_files, timeout=target.connect_timeout,
            banner_timeout=target.connect_timeout, auth_timeout=target.connect_timeout,
            sock=sock, passphrase=None, password=None)
    except UnknownHostKey as exc:
        client.close()
        if pinned is not None:
            raise _pin_mismatch(target, exc.key, pinned) from None
        raise CaseError(
            f"the host key of {target.known_hosts_name} is not known "
            f"({exc.key.get_name()} {fingerprint(exc.key)}); if that is the device's key, "
            f"accept it with: edgebench devices --accept-new-host-keys -d "
            f"{shlex.quote(redact(target.uri))} (or add hostkey={fingerprint(exc.key)} to "
            "the URI)") from None
    except paramiko.BadHostKeyException as exc:
        client.close()
        name = target.known_hosts_name
        key_file = known_hosts_file_of(target.known_hosts, name, exc.expected_key)
        where = key_file or "known_hosts"
        remove = ["ssh-keygen", "-R", name, *(("-f", key_file) if key_file else ())]
        raise CaseError(
            f"the host key of {name} has CHANGED (now {fingerprint(exc.key)}, {where} has "
            f"{fingerprint(exc.expected_key)}): refusing to connect; if the device was "
            f"reinstalled, remove the old key with {shlex.join(remove)}") from None
    except paramiko.PasswordRequiredException:
        client.close()
        raise CaseError(f"the key {tried} is encrypted: add it to ssh-agent (ssh-add) so "
                        "edgebench never handles its passphrase") from None
    except paramiko.AuthenticationException:
        client.close()
        raise CaseError(f"{target.label} refused the key (tried ssh-agent and {tried}); "
                        f"install your public key there (ssh-copy-id -p {target.port} "
                        f"{target.user}@{target.hostname}) or pass key=PATH") from None
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        if "no authentication methods" in str(exc).lower():
            raise CaseError(f"no key to log in to {target.label} with: start ssh-agent and "
                            "ssh-add your key, or pass key=PATH") from None
        raise ConnectionLost(f"cannot reach {target.label}: {reason(exc)}") from None
    server_key: HostKey = client.get_transport().get_remote_server_key()
    revoked = revoked_keys(target.known_hosts).get(server_key.get_base64())
    if revoked is not None:
        client.close()
        raise CaseError(f"the host key of {target.known_hosts_name} "
                        f"({fingerprint(server_key)}) is marked @revoked in {revoked}: "
                        "refusing to connect")
    if pinned is not None and fingerprint(server_key) != pinned:
        client.close()
        raise _pin_mismatch(target, server_key, pinned)
    client.get_transport().set_keepalive(15)
    _detect_dead_peer(client.get_transport().sock)
    connected: SSHClient = client
    return connected


def _pin_mismatch(target: SSHTarget, key: HostKey, pinned: str) -> CaseError:
    """The host offered ``key``, which is not the URI's ``hostkey=`` pin."""
    return CaseError(
        f"the host key of {target.known_hosts_name} ({key.get_name()} {fingerprint(key)}) "
        f"does not match the hostkey={pinned} pinned in the URI: refusing to connect; if "
        "the device was reinstalled, check its new key on it (ssh-keygen -lf "
        "/etc/ssh/ssh_host_ed25519_key.pub) and pin that one")


def _detect_dead_peer(sock: object, seconds: int = 30) -> None:
    """A board that reboots or drops off the network sends no FIN: without this, TCP
    retransmits for many minutes before the connection counts as lost. With unanswered
    data (paramiko's keepalive every 15 s) for ``seconds``, the socket fails instead."""
    if not isinstance(sock, socket.socket):
        return  # a ProxyCommand pipe
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 4),
                            ("TCP_USER_TIMEOUT", seconds * 1000)):
            option: int | None = getattr(socket, name, None)  # Linux has all four
            if option is not None:
                sock.setsockopt(socket.IPPROTO_TCP, option, value)


def reason(exc: BaseException) -> str:
    """What went wrong, in a few words: the OS's words for a socket error (of the first
    address paramiko tried), else the first line of the exception's message."""
    from paramiko.ssh_exception import NoValidConnectionsError

    if isinstance(exc, NoValidConnectionsError) and exc.errors:
        first: BaseException = next(iter(exc.errors.values()))
        return reason(first)
    if isinstance(exc, socket.timeout):
        return "timed out"
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def alive(client: SSHClient | None) -> bool:
    """Whether ``client``'s connection is still up (as far as SSH knows)."""
    transport = client.get_transport() if client is not None else None
    return bool(transport is not None and transport.is_active())


def open_channel(client: SSHClient | None, label: str) -> Channel:
    """A new session channel for one command on ``client`` (``label``: the host, for the
    message); :class:`ConnectionLost` when the connection is gone."""
    transport = client.get_transport() if client is not None else None
    try:
        if transport is None:
            raise EOFError("not connected")
        return transport.open_session(timeout=30)
    except Exception as exc:
        raise ConnectionLost(f"the connection to {label} was lost: {reason(exc)}") from None


def run_line(client: SSHClient | None, label: str, command: str, timeout_s: float
             ) -> tuple[int, str, str]:
    """Run a shell line on ``client`` (no PID line, no work dir: for housekeeping such as
    killing a runner or removing the work dir); ``(status, stdout, stderr)``.
    :class:`ConnectionLost` when the connection is gone or fails meanwhile."""
    if not alive(client):
        raise ConnectionLost(f"the connection to {label} was lost")
    channel = open_channel(client, label)
    try:
        channel.settimeout(timeout_s)
        channel.exec_command(command)
        out = channel.makefile("rb").read()
        err = channel.makefile_stderr("rb").read()
        return channel.recv_exit_status(), out.decode("utf-8", "replace"), \
            err.decode("utf-8", "replace")
    except (OSError, EOFError) as exc:
        raise ConnectionLost(f"{label}: {reason(exc)}") from None
    finally:
        channel.close()
