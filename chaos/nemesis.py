"""Nemeses: what each round does to the cluster, and how it heals.

Each nemesis has a group (the names --nemesis takes), a start that breaks
something and returns a description, and a heal that undoes it: afterwards
every node runs, unpaused, with no drop rules, no proxy faults, free disk
and a true clock.
"""

import os
import socket
import threading
import time
import urllib.error
import urllib.request

GROUPS = ["kill", "pause", "partition", "proxy", "loss", "restart", "diskfull", "clock", "health"]


class Nemesis:
    group = None
    name = None
    needs = ()

    def __init__(self, h):
        self.h = h  # the harness: .cluster, .net, .log, .leader()

    @property
    def c(self):
        return self.h.cluster

    def start(self, rng):
        raise NotImplementedError

    def heal(self):
        pass


def _voter_ids(h):
    return [v.id for v in h.cluster.voters]


def _pick_leader(h, rng):
    lid = h.cluster.leader(timeout=15)
    return lid if lid is not None else rng.choice(_voter_ids(h))


class Kill(Nemesis):
    group = "kill"

    def __init__(self, h, target):
        super().__init__(h)
        self.target = target
        self.name = f"kill-{target}"
        self.killed = []

    def _choose(self, rng):
        lid = self.c.leader(timeout=15)
        voters = _voter_ids(self.h)
        if self.target == "leader":
            return [lid if lid is not None else rng.choice(voters)]
        if self.target == "follower":
            return [rng.choice([v for v in voters if v != lid] or voters)]
        if self.target == "learner":
            return [rng.choice([n.id for n in self.c.learners])]
        if self.target == "relay":
            # The node the edge follows now: it must fail over to another
            # and go on with no gap and no revision twice.
            edge = self.c.edges[0]
            s = self.c.status(edge, timeout=5)
            up = (s or {}).get("upstream_id")
            return [up if up in self.c.nodes else rng.choice([n.id for n in self.c.learners])]
        if self.target == "edge":
            return [rng.choice([n.id for n in self.c.edges])]
        return [rng.choice(sorted(self.c.nodes))]

    def start(self, rng):
        self.killed = self._choose(rng)
        for i in self.killed:
            self.c.nodes[i].kill()
        return f"kill -9 node {','.join(map(str, self.killed))}"

    def heal(self):
        for i in self.killed:
            self.c.nodes[i].start()


class Pause(Nemesis):
    group = "pause"

    def __init__(self, h, target):
        super().__init__(h)
        self.target = target
        self.name = f"pause-{target}"
        self.paused = []

    def start(self, rng):
        if self.target == "leader":
            self.paused = [_pick_leader(self.h, rng)]
        else:
            self.paused = [rng.choice(sorted(self.c.nodes))]
        for i in self.paused:
            self.c.nodes[i].pause()
        return f"SIGSTOP node {','.join(map(str, self.paused))}"

    def heal(self):
        for i in self.paused:
            self.c.nodes[i].resume()


class Partition(Nemesis):
    group = "partition"
    needs = ("partition",)

    def __init__(self, h, kind):
        super().__init__(h)
        self.kind = kind
        self.name = f"partition-{kind}"

    def start(self, rng):
        ids = sorted(self.c.nodes)
        net = self.h.net
        if self.kind == "leader":
            lid = _pick_leader(self.h, rng)
            net.partition([[lid], [i for i in ids if i != lid]])
            return f"isolate leader {lid}"
        if self.kind == "split":
            voters = _voter_ids(self.h)
            rng.shuffle(voters)
            minority = [voters[0]] + [n.id for n in self.c.learners if rng.random() < 0.5]
            majority = [i for i in ids if i not in minority]
            net.partition([minority, majority])
            return f"split {minority} | {majority}"
        if self.kind == "oneway":
            lid = _pick_leader(self.h, rng)
            if rng.random() < 0.5:
                for i in ids:
                    if i != lid:
                        net.drop(lid, i)
                return f"one-way: leader {lid} -> others dropped"
            for i in ids:
                if i != lid:
                    net.drop(i, lid)
            return f"one-way: others -> leader {lid} dropped"
        if self.kind == "bridge":
            # Majorities that overlap in one node: 1-2-3 where 1 and 3 cannot talk.
            voters = _voter_ids(self.h)
            rng.shuffle(voters)
            a, mid, b = voters
            net.drop(a, b)
            net.drop(b, a)
            return f"bridge: {a} x {b}, both reach {mid}"
        raise ValueError(self.kind)

    def heal(self):
        self.h.net.heal()


class ProxyFaults(Nemesis):
    group = "proxy"
    name = "proxy"
    needs = ("proxy",)

    def start(self, rng):
        delay = rng.choice([10, 20, 50, 150])
        jitter = rng.choice([0, 20, 100])
        resets = rng.choice([0.0, 0.2, 0.5])
        which = sorted(self.c.proxies)
        if rng.random() < 0.5:
            which = [rng.choice(which)]
        for i in which:
            f = self.c.proxies[i].faults
            f.delay_ms, f.jitter_ms, f.reset_per_s = delay, jitter, resets
        return f"peer proxy of voter(s) {which}: delay {delay}+{jitter} ms, resets {resets}/s"

    def heal(self):
        for p in self.c.proxies.values():
            p.faults.clear()


class Loss(Nemesis):
    group = "loss"
    name = "loss"
    needs = ("loss",)

    def start(self, rng):
        pct = rng.choice([5, 10, 20, 35])
        nodes = sorted(self.c.nodes) if rng.random() < 0.5 else [_pick_leader(self.h, rng)]
        self.h.net.loss(pct, nodes)
        return f"drop {pct}% of peer packets into node(s) {nodes}"

    def heal(self):
        self.h.net.heal()


class Restart(Nemesis):
    group = "restart"
    name = "restart-all"

    def start(self, rng):
        for nd in self.c.nodes.values():
            nd.kill()
        self.h.sleep(rng.uniform(0.2, 1.5))
        for nd in self.c.nodes.values():
            nd.start()
        return "kill -9 every node, restart every node"


class DiskFull(Nemesis):
    """Fill a node's data dir (a tmpfs) and keep it full while the workload
    runs. The node must stay up (an exit fails the run, as at any time),
    and while full refuse writes and say "disk full" on /readyz; after the
    filler is deleted it must take a write within RECOVER_WITHIN seconds,
    as the same process (no restart). A full leader must hand over: another
    voter leads before the heal."""
    group = "diskfull"
    name = "diskfull"
    needs = ("tmpfs",)
    RECOVER_WITHIN = 30.0

    def __init__(self, h):
        super().__init__(h)
        self.node = None
        self.filler = None

    def start(self, rng):
        lid = self.c.leader(timeout=15)
        self.node = lid if (lid is not None and rng.random() < 0.5) else rng.choice(sorted(self.c.nodes))
        nd = self.c.nodes[self.node]
        self.filler = os.path.join(nd.data, "chaos-filler")
        self.incarnation = nd.incarnation
        self.was_leader = self.node == lid
        fill(self.filler)
        st = os.statvfs(nd.data)
        return (f"fill the data dir (tmpfs) of node {self.node}{' (leader)' if self.node == lid else ''} "
                f"({st.f_bavail * st.f_frsize} bytes left)")

    def heal(self):
        nd = self.c.nodes[self.node]
        if self.was_leader:
            # It stops its heartbeats: another voter, with room, leads.
            lid = self.c.leader(among=[self.c.nodes[v] for v in _voter_ids(self.h) if v != self.node], timeout=10)
            if lid is None:
                self.h.fail(f"diskfull: node {self.node} kept leading on its full disk")
        ready = readyz(nd)
        if "disk full" not in ready:
            self.h.fail(f"diskfull: node {self.node}'s /readyz said {ready!r} while its disk was full")
        refused = self.c.cli(nd, ["cluster", "put", *self.h.probe_cluster])
        if refused.ok or "ResourceExhausted" not in refused.err or f"node {self.node}" not in refused.err:
            self.h.fail(f"diskfull: a write to node {self.node} on its full disk was not refused naming it: "
                        f"rc {refused.rc} {refused.err.strip()[-200:]}")
        try:
            os.unlink(self.filler)
        except FileNotFoundError:
            pass
        self.filler = None
        t0 = time.monotonic()
        while True:
            r = self.c.cli(nd, ["cluster", "put", *self.h.probe_cluster])
            if r.ok:
                self.h.log(f"  node {self.node} took a write {time.monotonic() - t0:.1f} s after space returned")
                break
            if time.monotonic() - t0 > self.RECOVER_WITHIN:
                self.h.fail(f"diskfull: node {self.node} took no write within {self.RECOVER_WITHIN:.0f} s of space "
                            f"returning: {r.code} {r.err.strip()[-200:]}")
                break
            time.sleep(0.5)
        if nd.incarnation != self.incarnation or not nd.running():
            self.h.fail(f"diskfull: node {self.node} did not stay up through its full disk")
            if not nd.running():
                nd.start()


def readyz(nd):
    """The body of the node's /readyz, or the error reaching it."""
    try:
        with urllib.request.urlopen(f"http://{nd.ip}:{nd.ports['http']}/readyz", timeout=5) as r:
            return r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.read().decode(errors="replace")
    except OSError as e:
        return f"unreachable: {e}"


def fill(path):
    """Write zeros until the file system is full."""
    chunk = b"\0" * (1 << 20)
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError:
                break
        small = b"\0" * 4096
        while True:
            try:
                f.write(small)
            except OSError:
                break


class ClockSkew(Nemesis):
    group = "clock"
    name = "clock"
    needs = ("faketime",)

    def __init__(self, h):
        super().__init__(h)
        self.skewed = []

    def start(self, rng):
        lid = _pick_leader(self.h, rng)
        others = [i for i in sorted(self.c.nodes) if i != lid]
        self.skewed = [lid] + rng.sample(others, rng.choice([0, 1, 2]))
        parts = []
        for i in self.skewed:
            skew = rng.choice([-1, 1]) * rng.choice([5, 30, 120, 600])
            nd = self.c.nodes[i]
            nd.kill()
            nd.start(skew=skew)
            parts.append(f"{i}:{skew:+d}s")
        return f"restart with the clock skewed: {', '.join(parts)}"

    def heal(self):
        for i in self.skewed:
            nd = self.c.nodes[i]
            nd.kill()
            nd.start(skew=0)


# The health-checked cluster the harness puts (no tenants live on it).
CHECKED = "checked"


class Ingress:
    """A TCP listener on the harness's bridge address standing in for a
    cluster's ingress: it accepts and closes connections until stopped."""

    def __init__(self, ip):
        self.ip = ip
        self.port = None
        self.sock = None
        self.start()

    def start(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((self.ip, self.port or 0))
        self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.sock.settimeout(0.1)
        sock = self.sock
        threading.Thread(target=self._accept, args=(sock,), daemon=True).start()

    def _accept(self, sock):
        while self.sock is sock:
            try:
                conn, _ = sock.accept()
                conn.close()
            except OSError:
                pass

    def stop(self):
        sock, self.sock = self.sock, None
        if sock:
            sock.close()


def checked_cluster(h):
    """The checked cluster as the leader shows it, or None."""
    lid = h.cluster.leader(timeout=10)
    if lid is None:
        return None
    r = h.cluster.cli(h.cluster.nodes[lid], ["cluster", "get", CHECKED], timeout=10)
    try:
        return r.json() if r.ok else None
    except ValueError:
        return None


class ProbeCut(Nemesis):
    """One voter's probes cut off from the checked ingress (nftables in its
    namespace): its own verdict turns down, but no quorum agrees, so no
    health change may commit; the cluster stays healthy at its revision."""
    group = "health"
    name = "probe-cut"
    needs = ("health",)

    def failed_probes(self):
        """The cut voter's failed probes so far, from its /metrics (None if unreadable)."""
        nd = self.c.nodes[self.voter]
        try:
            with urllib.request.urlopen(f"http://{nd.ip}:{nd.ports['http']}/metrics", timeout=5) as r:
                for line in r.read().decode(errors="replace").splitlines():
                    if line.startswith("switchboard_health_probes_failed_total ") or line.startswith("switchboard_health_probes_failed "):
                        return float(line.split()[1])
        except OSError:
            return None
        return None

    def start(self, rng):
        self.before = checked_cluster(self.h)
        self.voter = rng.choice(_voter_ids(self.h))
        self.failed_before = self.failed_probes()
        ing = self.h.ingress
        self.h.net._nft(self.voter, f"add rule inet sbchaos output ip daddr {ing.ip} tcp dport {ing.port} drop\n")
        return f"voter {self.voter}'s probes of {ing.ip}:{ing.port} dropped"

    def heal(self):
        after = checked_cluster(self.h)
        failed = self.failed_probes()
        self.h.net.heal()
        if self.failed_before is not None and failed is not None:
            if failed <= self.failed_before:
                self.h.fail(f"probe-cut: voter {self.voter}'s probes did not fail while cut off ({failed} failed)")
            else:
                self.h.log(f"  voter {self.voter} saw {failed - self.failed_before:.0f} probes fail while cut off")
        if self.before is None or after is None:
            self.h.log("  probe-cut: the checked cluster could not be read; nothing compared")
            return
        if after.get("revision") != self.before.get("revision") or after.get("health") != "healthy":
            self.h.fail(f"probe-cut: one prober cut off changed the checked cluster: revision "
                        f"{self.before.get('revision')} -> {after.get('revision')}, health {after.get('health')}, "
                        f"down {after.get('down')}")
        else:
            self.h.log(f"  no health change committed (cluster {CHECKED} at revision {after.get('revision')}, healthy)")


class IngressDown(Nemesis):
    """The checked ingress dies: every prober sees it, a quorum agrees, and
    the leader commits it down; it returns and is committed healthy. Each
    within HEALTH_WITHIN seconds, across whatever else the cluster went through."""
    group = "health"
    name = "ingress-down"
    needs = ("health",)
    HEALTH_WITHIN = 20.0

    def _await(self, health):
        t0 = time.monotonic()
        if wait_until(lambda: (checked_cluster(self.h) or {}).get("health") == health, self.HEALTH_WITHIN, 0.3):
            self.h.log(f"  checked cluster committed {health} {time.monotonic() - t0:.1f} s later")
        else:
            self.h.fail(f"ingress-down: the checked cluster was not committed {health} within {self.HEALTH_WITHIN:.0f} s: "
                        f"{checked_cluster(self.h)}")

    def start(self, rng):
        self.h.ingress.stop()
        return f"ingress {self.h.ingress.ip}:{self.h.ingress.port} stopped"

    def heal(self):
        self._await("down")
        self.h.ingress.start()
        self._await("healthy")


def catalogue(h):
    """Every nemesis variant by group."""
    return {
        "kill": [Kill(h, "leader"), Kill(h, "follower"), Kill(h, "learner"), Kill(h, "relay"), Kill(h, "edge"),
                 Kill(h, "random")],
        "pause": [Pause(h, "leader"), Pause(h, "random")],
        "partition": [Partition(h, "leader"), Partition(h, "split"), Partition(h, "oneway"), Partition(h, "bridge")],
        "proxy": [ProxyFaults(h)],
        "loss": [Loss(h)],
        "restart": [Restart(h)],
        "diskfull": [DiskFull(h)],
        "clock": [ClockSkew(h)],
        "health": [ProbeCut(h), IngressDown(h)],
    }


# One round of each, in the order the seed shuffles: what --quick runs.
QUICK = ["kill-leader", "kill-follower", "kill-relay", "kill-edge", "pause-leader", "partition-leader", "partition-split",
         "partition-oneway", "proxy", "loss", "restart-all", "diskfull", "clock", "probe-cut", "ingress-down"]


def wait_until(pred, timeout, step=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
