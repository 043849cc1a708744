"""A minimal OpenSSH ControlMaster multiplexing client (stdlib only).

It speaks the same protocol the `openssh` crate's `native-mux` feature speaks (OpenSSH's
PROTOCOL.mux, version 4): connect to the master's Unix socket, exchange hellos, send
MUX_C_NEW_SESSION with the command, pass stdin/stdout/stderr as file descriptors
(SCM_RIGHTS), then wait for MUX_S_EXIT_MESSAGE. No `ssh` process is spawned per command,
which makes it the floor for "one native-mux command" that salve's executor can reach.
"""

import os
import socket
import struct

MUX_MSG_HELLO = 0x00000001
MUX_C_NEW_SESSION = 0x10000002
MUX_C_ALIVE_CHECK = 0x10000004
MUX_S_ALIVE = 0x80000005
MUX_S_FAILURE = 0x80000003
MUX_S_EXIT_MESSAGE = 0x80000004
MUX_S_SESSION_OPENED = 0x80000006
MUX_S_PERMISSION_DENIED = 0x80000002
MUX_S_TTY_ALLOC_FAIL = 0x80000008
MUX_VERSION = 4


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _packet(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def _read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            raise ConnectionError("mux master closed the connection")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_packet(sock: socket.socket) -> bytes:
    (length,) = struct.unpack(">I", _read_exact(sock, 4))
    return _read_exact(sock, length)


def _hello(sock: socket.socket) -> None:
    sock.sendall(_packet(struct.pack(">II", MUX_MSG_HELLO, MUX_VERSION)))
    hello = _read_packet(sock)
    (kind,) = struct.unpack(">I", hello[:4])
    if kind != MUX_MSG_HELLO:
        raise ConnectionError(f"unexpected mux hello 0x{kind:08x}")


def alive(control_path: str) -> int:
    """MUX_C_ALIVE_CHECK (what `ssh -O check` and the crate's `Session::check` send); returns
    the master's PID."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(control_path)
        _hello(sock)
        sock.sendall(_packet(struct.pack(">II", MUX_C_ALIVE_CHECK, 1)))
        reply = _read_packet(sock)
        kind, _rid, pid = struct.unpack(">III", reply[:12])
        if kind != MUX_S_ALIVE:
            raise ConnectionError(f"unexpected mux reply 0x{kind:08x}")
        return pid


def run(control_path: str, command: str, on_sent=None) -> tuple[int, bytes]:
    """Runs `command` through the master at `control_path`; returns (exit status, stdout).

    `on_sent`, if given, is called right after the session request went out (for timing).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        sock.connect(control_path)
        _hello(sock)
        request = (
            struct.pack(">II", MUX_C_NEW_SESSION, 1)
            + _string(b"")  # reserved
            + struct.pack(">IIIII", 0, 0, 0, 0, 0xFFFFFFFF)  # tty, x11, agent, subsystem, escape
            + _string(b"")  # terminal type
            + _string(command.encode())
        )
        sock.sendall(_packet(request))
        for fd in (null, out_w, err_w):
            socket.send_fds(sock, [b"\0"], [fd])
        if on_sent is not None:
            on_sent()
        os.close(out_w)
        os.close(err_w)
        out_w = err_w = -1
        exit_status = None
        while exit_status is None:
            reply = _read_packet(sock)
            (kind,) = struct.unpack(">I", reply[:4])
            if kind == MUX_S_SESSION_OPENED:
                continue
            if kind == MUX_S_EXIT_MESSAGE:
                _session, exit_status = struct.unpack(">II", reply[4:12])
            elif kind in (MUX_S_FAILURE, MUX_S_PERMISSION_DENIED, MUX_S_TTY_ALLOC_FAIL):
                raise ConnectionError(f"mux request refused: {reply[12:]!r}")
            else:
                raise ConnectionError(f"unexpected mux reply 0x{kind:08x}")
        stdout = b""
        while True:
            chunk = os.read(out_r, 65536)
            if not chunk:
                break
            stdout += chunk
        return exit_status, stdout
    finally:
        sock.close()
        for fd in (out_r, err_r, null, out_w, err_w):
            if fd >= 0:
                os.close(fd)
