"""A loopback TCP proxy a test can take down and bring back, to fault a shared database
server without stopping it (other tests use the same server at the same time)."""

from __future__ import annotations

import socket
import threading


class Proxy:
    """Forward ``127.0.0.1:<port>`` to ``target``. :meth:`down` cuts every open connection
    and refuses new ones (what clients see when the server stops); :meth:`up` serves again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port: int = self.listener.getsockname()[1]
        self.accepting = True
        self.flowing = threading.Event()
        self.flowing.set()
        self.closed = False
        self.refused = 0
        self.accepted = 0
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True, name="proxy-accept").start()

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.accepting:
                self.refused += 1
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            self.accepted += 1
            with self._lock:
                self._sockets.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                while not self.flowing.wait(0.1):  # frozen: hold the bytes, answer nothing
                    if self.closed:
                        return
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                _reset(sock)
                with self._lock:
                    self._sockets.discard(sock)

    def down(self) -> None:
        """The database "stops": cut every connection, refuse new ones."""
        self.accepting = False
        with self._lock:
            sockets = list(self._sockets)
            self._sockets.clear()
        for sock in sockets:
            _reset(sock)

    def up(self) -> None:
        """The database is back."""
        self.accepting = True
        self.flowing.set()

    def freeze(self) -> None:
        """The database hangs: connections stay open (the kernel still answers), but no byte
        goes through either way, like a server that is stopped (SIGSTOP) or swapping."""
        self.flowing.clear()

    def close(self) -> None:
        self.closed = True
        self.down()
        self.listener.close()


def _reset(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
