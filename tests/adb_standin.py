"""A test-only stand-in for adbd: the device end of the ADB wire protocol, over TCP.

The real ``adb`` server connects to it (``adb connect 127.0.0.1:PORT``) exactly as to a phone
in TCP/IP debugging mode, so the real adb client and server are what the tests exercise.
It implements what edgebench uses:

- the connection handshake: ``CNXN`` answered straight back (no ``AUTH``), or, in the
  ``unauthorized`` mode, ``AUTH`` tokens that no key ever satisfies, or, in the ``offline``
  mode, no answer at all;
- streams: ``OPEN`` / ``OKAY`` / ``WRTE`` / ``CLSE`` with one write in flight per direction;
- ``shell,v2,...:CMD`` (exit codes, stdout and stderr apart) and plain ``shell:CMD``;
- ``sync:`` with ``STAT``, ``LIST``, ``SEND``, ``RECV`` and ``QUIT`` (protocol v1).

Shell commands run on the host with ``sh -c`` in their own session (as adbd's ``setsid``),
inside the stand-in's private directory, so the device-side Python runner works through it.
Paths are host paths: tests point the device at a work dir under :attr:`AdbStandin.root`.
``props`` gives the "phone" a ``getprop``; ``python`` puts a ``python3`` on its PATH (as
Termux would), which is then found by ``command -v python3``.
"""

from __future__ import annotations

import os
import shlex
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

A_CNXN, A_AUTH, A_OPEN = 0x4E584E43, 0x48545541, 0x4E45504F
A_OKAY, A_CLSE, A_WRTE = 0x59414B4F, 0x45534C43, 0x45545257
A_VERSION = 0x01000001
MAX_PAYLOAD = 256 * 1024
SYNC_DATA_MAX = 64 * 1024
HEADER = struct.Struct("<6I")
FEATURES = "shell_v2,cmd"


class _Stream:
    """One open stream: bytes from the host, and our writes gated on the host's OKAY."""

    def __init__(self, conn: _Connection, local_id: int, remote_id: int) -> None:
        self.conn, self.local_id, self.remote_id = conn, local_id, remote_id
        self._buf = bytearray()
        self._cond = threading.Condition()
        self._acked = threading.Event()
        self._acked.set()
        self.closed = False

    def feed(self, data: bytes) -> None:
        with self._cond:
            self._buf += data
            self._cond.notify_all()

    def read_exact(self, n: int) -> bytes | None:
        with self._cond:
            while len(self._buf) < n and not self.closed:
                self._cond.wait()
            if len(self._buf) < n:
                return None
            out = bytes(self._buf[:n])
            del self._buf[:n]
            return out

    def write(self, data: bytes) -> bool:
        for i in range(0, len(data), self.conn.max_payload):
            while not self._acked.wait(0.2):
                if self.closed:
                    return False
            if self.closed:
                return False
            self._acked.clear()
            self.conn.send(A_WRTE, self.local_id, self.remote_id, data[i:i + self.conn.max_payload])
        return True

    def acked(self) -> None:
        self._acked.set()

    def mark_closed(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()
        self._acked.set()

    def close(self) -> None:
        if not self.closed:
            self.mark_closed()
            self.conn.send(A_CLSE, self.local_id, self.remote_id)
            self.conn.forget(self.local_id)


class _Connection:
    def __init__(self, standin: AdbStandin, sock: socket.socket) -> None:
        self.standin, self.sock = standin, sock
        self.max_payload = 4096
        self._send_lock = threading.Lock()
        self._streams: dict[int, _Stream] = {}
        self._next_id = 1
        self._lock = threading.Lock()

    def send(self, cmd: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        header = HEADER.pack(cmd, arg0, arg1, len(data), sum(data) & 0xFFFFFFFF, cmd ^ 0xFFFFFFFF)
        with self._send_lock:
            try:
                self.sock.sendall(header + data)
            except OSError:
                pass

    def forget(self, local_id: int) -> None:
        with self._lock:
            self._streams.pop(local_id, None)

    def _recv_exact(self, n: int) -> bytes | None:
        chunks = bytearray()
        while len(chunks) < n:
            try:
                chunk = self.sock.recv(n - len(chunks))
            except OSError:
                return None
            if not chunk:
                return None
            chunks += chunk
        return bytes(chunks)

    def serve(self) -> None:
        try:
            while True:
                header = self._recv_exact(HEADER.size)
                if header is None:
                    return
                cmd, arg0, arg1, length, _check, _magic = HEADER.unpack(header)
                data = self._recv_exact(length) if length else b""
                if data is None:
                    return
                self._dispatch(cmd, arg0, arg1, data)
        finally:
            for stream in list(self._streams.values()):
                stream.mark_closed()
            self.sock.close()

    def _dispatch(self, cmd: int, arg0: int, arg1: int, data: bytes) -> None:
        mode = self.standin.mode
        if cmd == A_CNXN:
            self.max_payload = min(arg1 or 4096, MAX_PAYLOAD)
            if mode == "device":
                self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.standin.banner())
            elif mode == "unauthorized":
                self.send(A_AUTH, 1, 0, os.urandom(20))  # a token no key can sign for us
        elif cmd == A_AUTH:
            if arg0 == 2:  # a signature: never accepted, ask again
                self.send(A_AUTH, 1, 0, os.urandom(20))
            # arg0 == 3 (public key): the user never taps "allow"
        elif cmd == A_OPEN and mode == "device":
            with self._lock:
                local_id = self._next_id
                self._next_id += 1
                stream = _Stream(self, local_id, arg0)
                self._streams[local_id] = stream
            service = data.rstrip(b"\0").decode("utf-8", "replace")
            handler = self.standin.handler_for(service)
            if handler is None:
                self.forget(local_id)
                self.send(A_CLSE, 0, arg0)
                return
            self.send(A_OKAY, local_id, arg0)
            threading.Thread(target=self._run, args=(handler, stream, service),
                             daemon=True).start()
        elif cmd == A_WRTE:
            stream = self._streams.get(arg1)
            if stream is not None:
                stream.feed(data)
                self.send(A_OKAY, arg1, arg0)
        elif cmd == A_OKAY:
            stream = self._streams.get(arg1)
            if stream is not None:
                stream.acked()
        elif cmd == A_CLSE:
            stream = self._streams.pop(arg1, None)
            if stream is not None:
                stream.mark_closed()

    @staticmethod
    def _run(handler: Callable[[_Stream, str], None], stream: _Stream, service: str) -> None:
        try:
            handler(stream, service)
        finally:
            stream.close()


class AdbStandin:
    """Listens on 127.0.0.1; ``mode`` is ``device``, ``unauthorized`` or ``offline``."""

    def __init__(self, root: Path, *, mode: str = "device", port: int = 0,
                 model: str = "EdgebenchStandin", props: dict[str, str] | None = None,
                 python: str | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.model = model
        bin_dir = root / "system" / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        if props is not None:
            cases = "".join(f"  {shlex.quote(k)}) echo {shlex.quote(v)};;\n"
                            for k, v in props.items())
            getprop = bin_dir / "getprop"
            getprop.write_text(f'#!/bin/sh\ncase "$1" in\n{cases}  *) echo;;\nesac\n')
            getprop.chmod(0o755)
        if python is not None:  # a wrapper, not a symlink: a venv's python needs its path
            wrapper = bin_dir / "python3"
            wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(python)} "$@"\n')
            wrapper.chmod(0o755)
        self.env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                    "HOME": str(root), "TMPDIR": str(root), "LANG": "C.UTF-8"}
        self.shell_commands: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port = self._listener.getsockname()[1]
        if 5555 <= self.port <= 5585:  # the adb server scans these for emulators
            raise RuntimeError("the stand-in must not listen on 5555-5585")
        self._connections: list[_Connection] = []
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stopped = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def serial(self) -> str:
        return f"127.0.0.1:{self.port}"

    def banner(self) -> bytes:
        props = (f"ro.product.name=standin;ro.product.model={self.model};"
                 f"ro.product.device=standin;features={FEATURES}")
        return f"device::{props}".encode()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Connection(self, sock)
            self._connections.append(conn)
            threading.Thread(target=conn.serve, daemon=True).start()

    def drop_connections(self) -> None:
        """Cut every connection, as a cable pulled out (the listener stays)."""
        for conn in self._connections:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._connections.clear()

    def stop(self) -> None:
        self._stopped = True
        try:  # wakes the blocked accept(); close() alone leaves it accepting on Linux
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        self.drop_connections()
        for proc in self._procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, 9)
                except ProcessLookupError:
                    pass

    # -- services --------------------------------------------------------------------------

    def handler_for(self, service: str) -> Callable[[_Stream, str], None] | None:
        if service.startswith("shell"):
            return self._shell
        if service.startswith("sync:"):
            return self._sync
        return None

    def _shell(self, stream: _Stream, service: str) -> None:
        options, _, command = service.partition(":")
        v2 = "v2" in options.split(",")
        self.shell_commands.append(command)
        proc = subprocess.Popen(["sh", "-c", command or "exit 0"], cwd=self.root, env=self.env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True)
        self._procs.append(proc)

        def pump(pipe: object, ident: int) -> None:
            assert hasattr(pipe, "read1")
            while True:
                chunk = pipe.read1(SYNC_DATA_MAX)
                if not chunk:
                    return
                payload = struct.pack("<BI", ident, len(chunk)) + chunk if v2 else chunk
                if not stream.write(payload):
                    return

        pumps = [threading.Thread(target=pump, args=(proc.stdout, 1), daemon=True),
                 threading.Thread(target=pump, args=(proc.stderr, 2 if v2 else 1), daemon=True)]
        for t in pumps:
            t.start()
        for t in pumps:
            t.join()
        code = proc.wait()
        if v2:
            stream.write(struct.pack("<BI", 3, 1) + bytes([code & 0xFF]))

    def _sync(self, stream: _Stream, service: str) -> None:
        while True:
            head = stream.read_exact(8)
            if head is None:
                return
            ident, length = head[:4], struct.unpack("<I", head[4:])[0]
            if ident == b"QUIT":
                return
            arg = stream.read_exact(length) or b""
            if ident == b"STAT":
                stream.write(b"STAT" + _stat(arg.decode()))
            elif ident == b"LIST":
                self._list(stream, arg.decode())
            elif ident == b"SEND":
                if not self._send(stream, arg.decode()):
                    return
            elif ident == b"RECV":
                self._recv(stream, arg.decode())
            else:
                _fail(stream, f"unknown sync request {ident!r}")
                return

    @staticmethod
    def _list(stream: _Stream, path: str) -> None:
        try:
            names = sorted(os.listdir(path))
        except OSError:
            names = []
        for name in names:
            raw = name.encode()
            stream.write(b"DENT" + _stat(os.path.join(path, name)) + struct.pack("<I", len(raw))
                         + raw)
        stream.write(b"DONE" + bytes(16))

    @staticmethod
    def _send(stream: _Stream, spec: str) -> bool:
        path, _, mode = spec.rpartition(",")
        error: str | None = None
        try:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
            out = open(path, "wb")  # noqa: SIM115 - closed below, also on errors
        except OSError as exc:
            error, out = f"{exc.strerror}: {path}", None
        try:
            while True:
                head = stream.read_exact(8)
                if head is None:
                    return False
                ident, length = head[:4], struct.unpack("<I", head[4:])[0]
                if ident == b"DONE":
                    break
                if ident != b"DATA":
                    _fail(stream, f"expected DATA, got {ident!r}")
                    return False
                chunk = stream.read_exact(length)
                if chunk is None:
                    return False
                if out is not None and error is None:
                    try:
                        out.write(chunk)
                    except OSError as exc:
                        error = exc.strerror or str(exc)
        finally:
            if out is not None:
                try:
                    out.close()
                except OSError as exc:
                    error = error or exc.strerror or str(exc)
        if error is None:
            try:
                os.chmod(path, int(mode or "644") & 0o7777)
            except (OSError, ValueError) as exc:
                error = str(exc)
        if error is not None:
            _fail(stream, error)
        else:
            stream.write(b"OKAY" + bytes(4))
        return True

    @staticmethod
    def _recv(stream: _Stream, path: str) -> None:
        try:
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(SYNC_DATA_MAX)
                    if not chunk:
                        break
                    stream.write(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
        except OSError as exc:
            _fail(stream, exc.strerror or str(exc))
            return
        stream.write(b"DONE" + bytes(4))


def _stat(path: str) -> bytes:
    try:
        st = os.lstat(path)
    except OSError:
        return bytes(12)
    return struct.pack("<III", st.st_mode & 0xFFFFFFFF, st.st_size & 0xFFFFFFFF,
                       int(st.st_mtime) & 0xFFFFFFFF)


def _fail(stream: _Stream, message: str) -> None:
    raw = message.encode()
    stream.write(b"FAIL" + struct.pack("<I", len(raw)) + raw)
