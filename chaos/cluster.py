"""Real `switchboard` node processes: configs, start, kill -9, SIGSTOP/SIGCONT,
clock skew (libfaketime), tmpfs data dirs, and the CLI to talk to them."""

import json
import random
import os
import re
import shutil
import signal
import subprocess
import threading
import time

import netenv
from proxy import Proxy

RAFT = """[raft]
heartbeat_ms = 50
election_timeout_min_ms = 300
election_timeout_max_ms = 600
snapshot_every_entries = 200
keep_entries_after_snapshot = 50
[storage]
# The data dirs of the diskfull nemesis are 256 MiB tmpfs, of which RocksDB
# preallocates 64 MiB of write-ahead log; the default margin (128 MiB)
# would leave too little room to run in.
free_space_min_mb = 32
"""

FAKETIME_LIBS = [
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
]

# gRPC codes after which a write certainly did not take effect (decided by the
# server, also for a retry: the request id answers with the first result).
DEFINITE = {"Aborted", "NotFound", "InvalidArgument", "FailedPrecondition", "AlreadyExists", "OutOfRange",
            "PermissionDenied", "Unauthenticated", "Unimplemented"}

_ERR = re.compile(r"error: ([A-Za-z]+): (.*)")
_CURRENT = re.compile(r"it is at revision (\d+)")


def faketime_lib():
    for p in FAKETIME_LIBS:
        if os.path.exists(p):
            return p
    return None


class CliResult:
    __slots__ = ("rc", "out", "err", "code", "timed_out", "elapsed")

    def __init__(self, rc, out, err, timed_out, elapsed):
        self.rc, self.out, self.err, self.timed_out, self.elapsed = rc, out, err, timed_out, elapsed
        self.code = None
        if timed_out:
            self.code = "Timeout"
        elif rc != 0:
            m = _ERR.search(err)
            self.code = m.group(1) if m else "Transport"

    @property
    def ok(self):
        return self.rc == 0 and not self.timed_out

    def json(self):
        return json.loads(self.out)

    def current(self):
        m = _CURRENT.search(self.err)
        return int(m.group(1)) if m else None

    def definite_failure(self):
        return self.code in DEFINITE


class Node:
    def __init__(self, cluster, i, role):
        self.c = cluster
        self.id = i
        self.role = role
        self.ip = cluster.net.ips[i]
        self.ports = cluster.net.ports(i)
        self.dir = os.path.join(cluster.root, f"node{i}")
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "node.toml")
        self.log_path = os.path.join(self.dir, "node.log")
        self.proc = None
        self.incarnation = 0
        self.paused = False
        self.skew = 0
        self.tmpfs = False
        self.expected_down = True
        self.lock = threading.RLock()
        os.makedirs(self.data, exist_ok=True)

    @property
    def api(self):
        return f"{self.ip}:{self.ports['api']}"

    @property
    def server(self):
        return f"http://{self.api}"

    @property
    def dns(self):
        return (self.ip, self.ports["dns"])

    @property
    def peer_advertised(self):
        return f"{self.ip}:{self.ports['proxy']}" if self.c.use_proxy and self.role == "voter" else f"{self.ip}:{self.ports['peer']}"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def live(self):
        """Running and not paused: expected to answer."""
        return self.running() and not self.paused

    def write_config(self, voters, join):
        p = self.ports
        text = (f'node_id = {self.id}\ndata_dir = "{self.data}"\n[listen]\n'
                f'dns = "{self.ip}:{p["dns"]}"\napi = "{self.ip}:{p["api"]}"\n'
                f'peer = "{self.ip}:{p["peer"]}"\nhttp = "{self.ip}:{p["http"]}"\n{RAFT}'
                f'[api]\nbootstrap_token_file = "{self.c.token_file}"\n'
                f'[cluster]\nname = "chaos"\nrole = "{self.role}"\nmax_stale_ms = 5000\n'
                f'secret_file = "{self.c.secret_file}"\n')
        if self.role == "voter":
            for v in voters:
                text += f'[[cluster.voters]]\nid = {v.id}\npeer = "{v.peer_advertised}"\napi = "{v.api}"\n'
        elif self.role == "edge":
            # The learners are its relays; the first voter last.
            ups = [f"http://{r.ip}:{r.ports['peer']}" for r in self.c.learners] + [f"http://{voters[0].peer_advertised}"]
            text += "upstreams = [" + ", ".join(f'"{u}"' for u in ups) + "]\n"
        else:
            text += "join = [" + ", ".join(f'"{v.server}"' for v in join) + "]\n"
        with open(self.config, "w") as f:
            f.write(text)

    def start(self, skew=0):
        with self.lock:
            if self.running():
                return
            self.incarnation += 1
            self.skew = skew
            env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
            env.setdefault("RUST_BACKTRACE", "1")
            if skew:
                env["LD_PRELOAD"] = self.c.faketime
                env["FAKETIME"] = f"{skew:+d}s"
            log = open(self.log_path, "a")
            log.write(f"\n===== chaos: start incarnation {self.incarnation} at +{self.c.now():.3f}s"
                      f"{f' clock skew {skew:+d}s' if skew else ''} =====\n")
            log.flush()
            cmd = self.c.net.exec_prefix(self.id) + [self.c.bin, "serve", "--config", self.config]
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env,
                                         start_new_session=True)
            log.close()
            self.paused = False
            self.expected_down = False

    def kill(self):
        """kill -9: no chance to flush or shut down."""
        with self.lock:
            self.expected_down = True
            if self.proc is not None:
                try:
                    self.proc.send_signal(signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            self.paused = False

    def pause(self):
        with self.lock:
            if self.running():
                self.proc.send_signal(signal.SIGSTOP)
                self.paused = True

    def resume(self):
        with self.lock:
            if self.proc is not None and self.paused:
                try:
                    self.proc.send_signal(signal.SIGCONT)
                except ProcessLookupError:
                    pass
            self.paused = False

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.readlines()[-n:]
        except OSError:
            return []


class Cluster:
    def __init__(self, root, binary, net, log, voters=3, learners=2, edges=1, use_proxy=True, seed=0, t0=None):
        self.root = root
        self.bin = binary
        self.net = net
        self.log = log
        self.use_proxy = use_proxy
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.faketime = faketime_lib()
        # Every API call goes through auth, as in production: the nodes'
        # APIs listen beyond loopback, so they refuse to start without it.
        self.token = "chaos-bootstrap-%016x" % random.Random(seed).getrandbits(64)
        self.token_file = os.path.join(root, "bootstrap.token")
        with open(self.token_file, "w") as f:
            f.write(self.token + "\n")
        # Peer ports beyond loopback with API tokens need a cluster secret.
        self.secret_file = os.path.join(root, "cluster.secret")
        with open(self.secret_file, "w") as f:
            f.write("chaos-secret-%032x\n" % random.Random(seed + 1).getrandbits(128))
        n = voters + learners + edges
        role = lambda i: "voter" if i <= voters else "learner" if i <= voters + learners else "edge"  # noqa: E731
        self.nodes = {i: Node(self, i, role(i)) for i in range(1, n + 1)}
        self.voters = [nd for nd in self.nodes.values() if nd.role == "voter"]
        self.learners = [nd for nd in self.nodes.values() if nd.role == "learner"]
        self.edges = [nd for nd in self.nodes.values() if nd.role == "edge"]
        self.proxies = {}
        self.mounts = []
        self.events = []  # unexpected exits and other things the report must say
        self.events_lock = threading.Lock()
        if use_proxy:
            for v in self.voters:
                self.proxies[v.id] = Proxy(f"n{v.id}", (v.ip, v.ports["proxy"]), (v.ip, v.ports["peer"]),
                                           netns=net.ns(v.id), seed=seed * 31 + v.id)
        for nd in self.nodes.values():
            nd.write_config(self.voters, self.voters)
        self._watch_stop = False
        self._watcher = threading.Thread(target=self._watch, daemon=True, name="node-watch")
        self._watcher.start()

    def now(self):
        return time.monotonic() - self.t0

    def event(self, kind, **kw):
        with self.events_lock:
            e = dict(kind=kind, t=round(self.now(), 3), **kw)
            self.events.append(e)
        if kw.pop("quiet", False):
            e.pop("quiet", None)
            last = next((x for x in reversed(kw.get("log_tail", [])) if x.strip()), "")
            self.log(f"  event: {kind} node {kw.get('node')} rc {kw.get('rc')}: {last[:200]}")
        else:
            self.log(f"  event: {kind} {kw}")

    def _watch(self):
        seen = []  # the exited Popen objects already reported (kept alive, compared by identity)
        while not self._watch_stop:
            for nd in self.nodes.values():
                # one consistent view: start() and kill() change these under the lock
                with nd.lock:
                    p, inc, expected = nd.proc, nd.incarnation, nd.expected_down
                    rc = None if p is None or expected else p.poll()
                if rc is not None and not any(q is p for q in seen):
                    seen.append(p)
                    tail = nd.log_tail(30)
                    panicked = any("panicked" in line for line in tail)
                    self.event("node-exit", node=nd.id, incarnation=inc, rc=rc, panicked=panicked,
                               log_tail=[line.rstrip("\n") for line in tail[-12:]], quiet=True)
            time.sleep(0.2)

    # --- tmpfs data dirs (disk full) ------------------------------------------

    def mount_tmpfs(self, nd, size_mb):
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", f"sbchaos-n{nd.id}", nd.data],
                           capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError(p.stderr.strip())
        self.mounts.append(nd.data)
        nd.tmpfs = True

    def unmount_all(self, keep_copy_to=None):
        for m in reversed(self.mounts):
            if keep_copy_to:
                dst = os.path.join(keep_copy_to, os.path.relpath(m, self.root))
                try:
                    shutil.copytree(m, dst + ".tmpfs-copy", ignore=shutil.ignore_patterns("chaos-filler*"))
                except Exception as e:
                    self.log(f"could not keep a copy of {m}: {e}")
            for _ in range(20):
                if subprocess.run(["umount", m], capture_output=True).returncode == 0:
                    break
                time.sleep(0.25)
            else:
                subprocess.run(["umount", "-l", m], capture_output=True)
        self.mounts = []

    # --- CLI ----------------------------------------------------------------------

    def cli(self, nd, args, timeout=10.0, json_out=True):
        cmd = [self.bin, "--server", nd.server] + (["--json"] if json_out else []) + [str(a) for a in args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
        env["SWITCHBOARD_TOKEN"] = self.token
        t = time.monotonic()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
            return CliResult(p.returncode, p.stdout, p.stderr, False, time.monotonic() - t)
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            return CliResult(None, out, "", True, time.monotonic() - t)

    def status(self, nd, timeout=5.0):
        r = self.cli(nd, ["status"], timeout=timeout)
        if not r.ok:
            return None
        try:
            return r.json()
        except ValueError:
            return None

    def leader(self, among=None, timeout=30.0):
        """The id of the voter that says it leads (highest term wins), waiting up to timeout."""
        deadline = time.monotonic() + timeout
        while True:
            best = None
            for nd in (among or self.voters):
                if not nd.live():
                    continue
                s = self.status(nd, timeout=3)
                if s and s.get("role") == "leader":
                    if best is None or s.get("term", 0) > best[1]:
                        best = (nd.id, s.get("term", 0))
            if best:
                return best[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.2)

    def live_nodes(self):
        return [nd for nd in self.nodes.values() if nd.live()]

    # --- lifecycle ------------------------------------------------------------------

    def start_all(self):
        for nd in self.nodes.values():
            nd.start()

    def stop(self):
        self._watch_stop = True
        for nd in self.nodes.values():
            nd.resume()
            nd.kill()
        for p in self.proxies.values():
            p.stop()
