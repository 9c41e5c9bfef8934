"""A fault-injecting TCP proxy for Raft peer traffic.

Each voter advertises its peer address as a proxy listener; the proxy forwards
to the node's real peer listener. Normally it passes bytes straight through;
the `proxy` nemesis adds delay (with jitter) to every chunk and resets
connections at random (gRPC reconnects). Byte order within a connection is
always kept: a TCP stream cannot lose bytes in the middle and stay valid.

In the network-namespace mode the listener is created inside the target
node's namespace (setns on a short-lived thread), so connections reach it
from the other nodes' own addresses and partitions still apply to them.
"""

import collections
import ctypes
import os
import random
import socket
import threading
import time

CLONE_NEWNET = 0x40000000


def socket_in_netns(netns_name, family=socket.AF_INET, kind=socket.SOCK_STREAM):
    """A socket created inside the named network namespace (by a helper thread)."""
    if netns_name is None:
        return socket.socket(family, kind)
    out = {}

    def make():
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            fd = os.open(f"/run/netns/{netns_name}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns")
            finally:
                os.close(fd)
            out["sock"] = socket.socket(family, kind)
        except Exception as e:  # reported to the caller
            out["err"] = e

    t = threading.Thread(target=make, daemon=True)
    t.start()
    t.join()
    if "err" in out:
        raise out["err"]
    return out["sock"]


class Faults:
    """Current fault settings of one proxy (read by every pump)."""

    def __init__(self):
        self.delay_ms = 0
        self.jitter_ms = 0
        self.reset_per_s = 0.0  # chance per second that a connection is reset

    def clear(self):
        self.delay_ms = self.jitter_ms = 0
        self.reset_per_s = 0.0


class _Pipe:
    """One direction of a connection: reader -> delay queue -> writer."""

    def __init__(self, link, src, dst, rng):
        self.link, self.src, self.dst, self.rng = link, src, dst, rng
        self.q = collections.deque()
        self.cv = threading.Condition()
        self.eof = False

    def read_loop(self):
        try:
            while not self.link.closed:
                data = self.src.recv(65536)
                f = self.link.faults
                delay = 0.0
                if f.delay_ms or f.jitter_ms:
                    delay = (f.delay_ms + self.rng.uniform(0, f.jitter_ms)) / 1000.0
                with self.cv:
                    if not data:
                        self.eof = True
                    else:
                        # never reorder: a chunk leaves no earlier than the one before it
                        due = time.monotonic() + delay
                        if self.q and self.q[-1][0] > due:
                            due = self.q[-1][0]
                        self.q.append((due, data))
                    self.cv.notify()
                if not data:
                    return
        except OSError:
            pass
        self.link.close()

    def write_loop(self):
        try:
            while True:
                with self.cv:
                    while not self.q and not self.eof and not self.link.closed:
                        self.cv.wait(0.5)
                    if self.link.closed:
                        return
                    if not self.q and self.eof:
                        try:
                            self.dst.shutdown(socket.SHUT_WR)
                        except OSError:
                            pass
                        return
                    due, data = self.q[0]
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(min(wait, 0.5))
                    continue
                with self.cv:
                    self.q.popleft()
                self.dst.sendall(data)
        except OSError:
            self.link.close()


class _Link:
    def __init__(self, proxy, client, upstream, rng):
        self.proxy, self.client, self.upstream = proxy, client, upstream
        self.faults = proxy.faults
        self.closed = False
        self.lock = threading.Lock()
        self.pipes = [_Pipe(self, client, upstream, rng), _Pipe(self, upstream, client, rng)]

    def start(self):
        for p in self.pipes:
            threading.Thread(target=p.read_loop, daemon=True, name="proxy-r").start()
            threading.Thread(target=p.write_loop, daemon=True, name="proxy-w").start()

    def close(self):
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for s in (self.client, self.upstream):
            # shutdown first: it wakes the pump blocked in recv and sends FIN
            # now (a bare close waits for that recv to let go of the socket).
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass
        for p in self.pipes:
            with p.cv:
                p.cv.notify_all()
        self.proxy._forget(self)


class Proxy:
    """Listens on listen_addr (inside netns, if given) and forwards to upstream."""

    def __init__(self, name, listen_addr, upstream, netns=None, seed=0):
        self.name, self.listen_addr, self.upstream = name, listen_addr, upstream
        self.faults = Faults()
        self.rng = random.Random(seed)
        self.links = set()
        self.lock = threading.Lock()
        self.stopped = False
        self.connections = 0
        self.resets = 0
        self.sock = socket_in_netns(netns)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(listen_addr)
        self.sock.listen(64)
        self.sock.settimeout(0.5)
        threading.Thread(target=self._accept_loop, daemon=True, name=f"proxy-{name}").start()
        threading.Thread(target=self._chaos_loop, daemon=True, name=f"proxy-{name}-chaos").start()

    def _accept_loop(self):
        while not self.stopped:
            try:
                client, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=3)
                up.settimeout(None)
                client.settimeout(None)
                for s in (client, up):
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                client.close()
                continue
            link = _Link(self, client, up, random.Random(self.rng.random()))
            with self.lock:
                if self.stopped:
                    link.close()
                    return
                self.links.add(link)
                self.connections += 1
            link.start()

    def _chaos_loop(self):
        while not self.stopped:
            time.sleep(0.25)
            p = self.faults.reset_per_s * 0.25
            if p <= 0:
                continue
            with self.lock:
                victims = [link for link in self.links if self.rng.random() < p]
            for link in victims:
                self.resets += 1
                link.close()

    def _forget(self, link):
        with self.lock:
            self.links.discard(link)

    def reset_all(self):
        with self.lock:
            links = list(self.links)
        for link in links:
            link.close()

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.reset_all()
