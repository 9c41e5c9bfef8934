"""chaos/run: a Switchboard cluster under faults, driven from the outside.

See chaos/README.md. Exit status: 0 all checks passed; 1 a check failed (lost
write, non-linearizable history, no convergence, node crash); 2 harness error.
"""

import argparse
import atexit
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import checker  # noqa: E402
import cluster as cl  # noqa: E402
import dnsq  # noqa: E402
import nemesis as nm  # noqa: E402
import netenv  # noqa: E402
import workload as wl  # noqa: E402

APEX = "apps.example.test."
CLUSTERS = {"mt1": "198.51.100.1", "mt2": "198.51.100.2", "mt3": "198.51.100.3", "mt4": "198.51.100.4"}
ZONE = """apex = "apps.example.test."
environment = "prod"
ns = ["ns1.example.test."]
[[rules]]
kind = "service-tenant"
services = ["ws"]
target = "{service}-{cluster}.example.test."
[[rules]]
kind = "tenant-host"
ttl = 60
"""
ACME_RULE = '[[rules]]\nkind = "acme"\n'



def nemesis_table(rows):
    """The rounds summed up per nemesis: DNS availability on live nodes and
    time to converge, as the issue asks them reported."""
    by = {}
    for row in rows:
        by.setdefault(row["nemesis"], []).append(row)
    hdr = (f"{'nemesis':<18} {'rounds':>6} {'ops':>6} {'acked':>6} {'unkn':>5} "
           f"{'DNS answered':>19} {'converge max':>12}")
    lines = [hdr, "-" * len(hdr)]
    for name in sorted(by):
        rs = by[name]
        sent = sum(r["dns_sent"] for r in rs)
        ans = sum(r["dns_answered"] for r in rs)
        convs = [r["converge_s"] for r in rs if r["converge_s"] is not None]
        dns = f"{ans}/{sent} " + (f"{100.0 * ans / sent:.2f}%" if sent else "-")
        conv = "FAILED" if len(convs) < len(rs) else f"{max(convs):.1f}s"
        lines.append(f"{name:<18} {len(rs):>6} {sum(r['ops'] for r in rs):>6} {sum(r['acked'] for r in rs):>6} "
                     f"{sum(r['unknown'] for r in rs):>5} {dns:>19} {conv:>12}")
    lines.append("-" * len(hdr))
    return lines

class HarnessError(Exception):
    pass


def repo_root():
    return os.path.dirname(HERE)


def default_bin():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(repo_root(), "target")
    return os.path.join(target, "debug", "switchboard")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="chaos/run", description="Chaos tests of a Switchboard cluster (3 voters, 2 learners, and an edge that follows them).")
    p.add_argument("--quick", action="store_true", help="self-test, then one round of each nemesis (CI; a few minutes)")
    p.add_argument("--rounds", type=int, default=None, help="number of nemesis rounds (default 10; --quick: one per nemesis)")
    p.add_argument("--nemesis", default="all",
                   help=f"comma-separated groups or variants: {','.join(nm.GROUPS)} or e.g. kill-leader,partition-split (default all)")
    p.add_argument("--seed", type=int, default=None, help="reproduce the schedule of an earlier run")
    p.add_argument("--bin", default=None, help="switchboard binary (default ${CARGO_TARGET_DIR:-<repo>/target}/debug/switchboard)")
    p.add_argument("--clients", type=int, default=6, help="concurrent workload clients (default 6)")
    p.add_argument("--tenants", type=int, default=8, help="tenants under test (default 8)")
    p.add_argument("--fault-seconds", type=float, default=None, help="how long each nemesis stays on (default 4-8 s; --quick 5 s)")
    p.add_argument("--converge-timeout", type=float, default=120.0, help="seconds allowed to converge after healing (default 120)")
    p.add_argument("--strict-reads", action="store_true",
                   help="check `tenant get` (a local read on the node asked) as a linearizable read too")
    p.add_argument("--no-netns", action="store_true", help="run on loopback even where network namespaces work")
    p.add_argument("--no-install", action="store_true", help="do not apt-get install nftables/faketime when missing")
    p.add_argument("--keep", action="store_true", help="keep the run directory even when everything passes")
    p.add_argument("--skip-selftest", action="store_true", help="do not run the checker's self-test first")
    return p.parse_args(argv)


def selftest():
    import test_checker
    suite = unittest.defaultTestLoader.loadTestsFromModule(test_checker)
    res = unittest.TextTestRunner(stream=sys.stdout, verbosity=0).run(suite)
    return res.wasSuccessful()


class Harness:
    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 10**9)
        self.rng = random.Random(self.seed)
        self.root = None
        self.net = None
        self.cluster = None
        self.workload = None
        self.prober = None
        self.acme = None
        self.history = None
        self.window = "setup"
        self.rounds = []
        self.failures = []
        self.notes = []
        # A write the diskfull nemesis may make without touching what the
        # workload checks: one of the clusters put again as it is.
        self.probe_cluster = None
        self.ingress = None
        self.keep = args.keep
        self.cleaned = False
        self.caps = {"proxy": True}
        self.tenants = [f"t{i}" for i in range(args.tenants)]

    # --- output --------------------------------------------------------------------

    def log(self, msg):
        line = f"[{time.monotonic() - self.t0:7.1f}s] {msg}"
        print(line, flush=True)
        if self.root:
            try:
                with open(os.path.join(self.root, "chaos.log"), "a") as f:
                    f.write(line + "\n")
            except OSError:
                pass

    def now(self):
        return time.monotonic() - self.t0

    def sleep(self, s):
        time.sleep(s)

    def fail(self, msg):
        self.failures.append(msg)
        self.log(f"FAIL: {msg}")

    # --- setup -----------------------------------------------------------------------

    def setup(self):
        a = self.args
        binary = a.bin or default_bin()
        if not os.path.isfile(binary):
            raise HarnessError(f"no switchboard binary at {binary} (build it, or pass --bin)")
        self.root = tempfile.mkdtemp(prefix=f"sbchaos-{self.seed}-")
        self.run_id = f"r{self.seed}-{os.getpid()}"
        os.makedirs(os.path.join(self.root, "bin"))
        self.bin = os.path.join(self.root, "bin", "switchboard")
        shutil.copy2(binary, self.bin)  # it may be rebuilt under us
        self.log(f"run directory {self.root}; binary {binary} copied")
        self.net = netenv.make_net(6, self.log, want_netns=not a.no_netns, allow_install=not a.no_install)
        self.caps["partition"] = self.net.can_partition
        self.caps["loss"] = self.net.can_loss
        # Health checks need an ingress address every node reaches and one
        # node can be cut off from: the harness's own, on the bridge.
        self.caps["health"] = self.net.mode == "netns" and self.net.can_partition
        self.log(f"network: {self.net.mode} ({', '.join(f'{i}={ip}' for i, ip in self.net.ips.items())})")
        self.selection = self.select()
        groups = {n.group for n in self.selection}
        if "clock" in groups:
            self.caps["faketime"] = self._ensure_faketime()
        if "diskfull" in groups:
            self.caps["tmpfs"] = True
        self.cluster = cl.Cluster(self.root, self.bin, self.net, self.log, seed=self.seed, t0=self.t0)
        self.cluster.run_id = self.run_id
        if "diskfull" in groups:
            try:
                for nd in self.cluster.nodes.values():
                    self.cluster.mount_tmpfs(nd, 256)
            except Exception as e:
                self.caps["tmpfs"] = False
                self.cluster.unmount_all()
                for nd in self.cluster.nodes.values():
                    nd.tmpfs = False
                self.log(f"SKIP diskfull: cannot mount a tmpfs as a data dir ({e})")
        skipped = [n for n in self.selection if not all(self.caps.get(c) for c in n.needs)]
        for n in skipped:
            self.notes.append(f"skipped nemesis {n.name}: needs {', '.join(c for c in n.needs if not self.caps.get(c))}")
            self.log(f"SKIP nemesis {n.name}: this machine lacks {', '.join(c for c in n.needs if not self.caps.get(c))}")
        self.selection = [n for n in self.selection if n not in skipped]
        if not self.selection:
            raise HarnessError("no nemesis left to run on this machine")
        self.history = wl.History(os.path.join(self.root, "history.jsonl"), self.now)
        self.cluster.start_all()
        lid = self.cluster.leader(timeout=60)
        if lid is None:
            raise HarnessError("no leader within 60 s of starting the cluster")
        self.log(f"cluster up: leader {lid}")
        if not nm.wait_until(self._members_joined, 60, 0.5):
            raise HarnessError("learners did not join within 60 s")
        self.log("learners joined")
        self._seed_data(lid)

    def _ensure_faketime(self):
        if cl.faketime_lib():
            return True
        if not self.args.no_install and os.geteuid() == 0 and shutil.which("apt-get"):
            self.log("libfaketime not found: installing faketime with apt-get (use --no-install to skip)")
            env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
            for cmd in (["apt-get", "install", "-y", "-qq", "faketime"], ["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "faketime"]):
                try:
                    subprocess.run(cmd, capture_output=True, timeout=300, env=env)
                except subprocess.TimeoutExpired:
                    break
                if cl.faketime_lib():
                    break
        if cl.faketime_lib():
            if self.cluster:
                self.cluster.faketime = cl.faketime_lib()
            return True
        self.log("SKIP clock: libfaketime is not available (apt-get install faketime)")
        return False

    def _members_joined(self):
        lid = self.cluster.leader(timeout=5)
        if lid is None:
            return False
        r = self.cluster.cli(self.cluster.nodes[lid], ["member", "list"], timeout=5)
        try:
            return r.ok and {m["id"] for m in r.json()} >= set(self.cluster.nodes)
        except (ValueError, KeyError, TypeError):
            return False

    def _admin(self, args, what, tries=20):
        """A setup write through the leader, retried with one request id."""
        rid = f"{self.run_id}-setup-{what}"
        last = None
        for k in range(tries):
            lid = getattr(self, "_setup_leader", None) if k == 0 else None
            lid = lid or self.cluster.leader(timeout=10)
            nd = self.cluster.nodes[lid] if lid else self.cluster.voters[0]
            r = self.cluster.cli(nd, ["--request-id", rid] + args, timeout=15)
            if r.ok:
                self._setup_leader = lid
                return r
            last = r
            if r.definite_failure():
                break
            time.sleep(0.5)
        raise HarnessError(f"setup {what} failed: {last.code if last else '?'}: {last.err.strip() if last else ''}")

    def _seed_data(self, lid):
        help_ = subprocess.run([self.bin, "acme", "--help"], capture_output=True, text=True)
        acme = help_.returncode == 0
        zone_path = os.path.join(self.root, "zone.toml")
        with open(zone_path, "w") as f:
            f.write(ZONE + (ACME_RULE if acme else ""))
        try:
            self._admin(["zone", "put", zone_path], "zone")
        except HarnessError as e:
            if not acme:
                raise
            self.log(f"zone with an acme rule refused ({e}); ACME ops skipped")
            acme = False
            with open(zone_path, "w") as f:
                f.write(ZONE)
            self._admin(["zone", "put", zone_path], "zone-plain")
        for c, ip in CLUSTERS.items():
            self._admin(["cluster", "put", c, "--ipv4", ip], f"cluster-{c}")
            self.probe_cluster = self.probe_cluster or (c, "--ipv4", ip)
        if self.caps.get("health"):
            # A health-checked cluster (no tenants) whose ingress is a
            # listener of the harness's: the health nemeses kill it or cut
            # one prober off from it.
            self.ingress = nm.Ingress(self.net.harness_ip)
            self._admin(["cluster", "put", nm.CHECKED, "--ipv4", self.net.harness_ip, "--check", f"tcp:{self.ingress.port}",
                         "--check-interval-ms", "500", "--check-failures", "2", "--check-successes", "2"], "cluster-checked")
        clusters = sorted(CLUSTERS)
        for i, t in enumerate(self.tenants):
            c = clusters[i % len(clusters)]
            op = {"id": self.history.new_id(), "process": "setup", "tenant": t, "f": "create", "expect": 0, "cluster": c,
                  "round": "setup", "invoke": self.now()}
            r = self._admin(["--expect-revision", 0, "tenant", "create", t, "--cluster", c], f"tenant-{t}")
            j = r.json()
            op.update(status="ok", complete=self.now(), rev=j["revision"], pinned=j["tenant"]["pinned"])
            self.history.add(op)
        if acme:
            self.acme = self._try_acme()
        else:
            note = "ACME ops skipped: this switchboard has no `acme` command"
            self.notes.append(note)
            self.log(note)

    def _try_acme(self):
        a = wl.Acme(self.cluster, self.history, APEX, self.seed)
        name = f"setup.{APEX}".rstrip(".")
        try:
            self._admin(["acme", "set", name, "hello", "--expires-in", "3600"], "acme-set")
            lid = self.cluster.leader(timeout=10)
            r = self.cluster.cli(self.cluster.nodes[lid], ["acme", "list"], timeout=10)
            seen = wl.parse_challenges(r.json()) if r.ok else {}
            if seen.get(name.lower()) != {"hello"}:
                raise HarnessError(f"`acme list --json` did not show the value just set: {r.out.strip()[:300]} {r.err.strip()[:300]}")
            self._admin(["acme", "clear", name], "acme-clear")
        except (HarnessError, ValueError) as e:
            note = f"ACME ops skipped: {e}"
            self.notes.append(note)
            self.log(note)
            return None
        self.log("ACME commands present: set/clear included in the workload")
        return a

    def select(self):
        cat = nm.catalogue(self)
        by_name = {n.name: n for ns in cat.values() for n in ns}
        want = [w.strip() for w in self.args.nemesis.split(",") if w.strip()]
        chosen = []
        for w in want:
            if w == "all":
                chosen += [n for g in nm.GROUPS for n in cat[g]]
            elif w in cat:
                chosen += cat[w]
            elif w in by_name:
                chosen.append(by_name[w])
            else:
                raise HarnessError(f"--nemesis: unknown {w!r}; groups: {', '.join(nm.GROUPS)}; variants: {', '.join(sorted(by_name))}")
        seen, out = set(), []
        for n in chosen:
            if n.name not in seen:
                seen.add(n.name)
                out.append(n)
        return out

    def schedule(self):
        a = self.args
        if a.quick and a.rounds is None:
            names = {n.name: n for n in self.selection}
            plan = [names[q] for q in nm.QUICK if q in names]
            plan += [n for n in self.selection if n.name not in nm.QUICK and a.nemesis != "all"]
            self.rng.shuffle(plan)
            return plan
        rounds = a.rounds if a.rounds is not None else 10
        # every selected nemesis once per pass, in a seeded order
        plan = []
        while len(plan) < rounds:
            batch = list(self.selection)
            self.rng.shuffle(batch)
            plan += batch
        return plan[:rounds]

    # --- rounds --------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.setup()
        first = self.converge("setup")
        if first is None:
            raise HarnessError("the fresh cluster did not converge")
        self.workload = wl.Workload(self.cluster, self.history, self.tenants, sorted(CLUSTERS), self.seed,
                                    clients=a.clients, round_label=lambda: self.window, acme=self.acme,
                                    strict_reads=a.strict_reads)
        for t in self.tenants:
            self.workload.known[t] = max(op["rev"] for op in self.history.ops if op.get("tenant") == t and op["f"] == "create")
        self.prober = wl.DnsProber(self.cluster, self.tenants, APEX, lambda: self.window, sorted(CLUSTERS))
        self.prober.start()
        self.workload.start()
        plan = self.schedule()
        self.log(f"schedule ({len(plan)} rounds): {', '.join(n.name for n in plan)}")
        self.window = "steady"
        self.sleep(2.0)
        for k, n in enumerate(plan, 1):
            if not self.one_round(k, n):
                break
        self.window = "final"
        self.log("stopping the workload")
        self.workload.stop(timeout=60)
        self.finish_checks()

    def one_round(self, k, n):
        a = self.args
        dur = a.fault_seconds if a.fault_seconds is not None else (5.0 if a.quick else self.rng.uniform(4.0, 8.0))
        nrng = random.Random(self.rng.random())
        label = f"r{k}:{n.name}"
        ops_before = len(self.history.ops)
        self.window = label
        t_start = self.now()
        try:
            desc = n.start(nrng)
        except Exception as e:
            raise HarnessError(f"round {k} {n.name}: starting the fault failed: {type(e).__name__}: {e}")
        self.log(f"round {k}: {n.name}: {desc} for {dur:.1f} s")
        self.sleep(dur)
        try:
            n.heal()
        except Exception as e:
            raise HarnessError(f"round {k} {n.name}: healing failed: {type(e).__name__}: {e}")
        self.window = f"heal{k}"
        self._ensure_all_running()
        t_heal = self.now()
        sent, ans, wrong = self.prober.totals(label)
        # quiesce: let in-flight operations finish, then measure convergence
        if not self.workload.gate.close(timeout=60):
            self.log("  some client operations still running after 60 s; checking convergence anyway")
        took = self.converge(label)
        self.workload.gate.reopen()
        ops = [op for op in self.history.ops[ops_before:] if op.get("f") in ("move", "pin", "get", "probe")]
        writes = [op for op in ops if op["f"] in ("move", "pin")]
        row = {"round": k, "nemesis": n.name, "what": desc, "seconds": round(dur, 1), "ops": len(ops),
               "writes": len(writes), "acked": sum(op["status"] == "ok" for op in writes),
               "unknown": sum(op["status"] == "info" for op in writes),
               "retried": sum(len(op.get("attempts", [])) > 1 for op in writes),
               "dns_sent": sent, "dns_answered": ans, "dns_wrong": wrong,
               "converge_s": None if took is None else round(took, 2), "heal_at": round(t_heal, 2),
               "started_at": round(t_start, 2)}
        self.rounds.append(row)
        self.log(f"  round {k} done: {row['ops']} ops ({row['acked']} writes acked, {row['unknown']} unknown), "
                 f"DNS {ans}/{sent}, converged in {row['converge_s']} s")
        self.window = "steady"
        if took is None:
            return False
        self.sleep(1.0)
        return True

    def _ensure_all_running(self):
        for nd in self.cluster.nodes.values():
            if nd.paused:
                nd.resume()
            if not nd.running():
                self.log(f"  node {nd.id} is not running after healing: starting it")
                nd.start()

    # --- convergence -------------------------------------------------------------------------

    def _node_view(self, nd):
        s = self.cluster.status(nd, timeout=5)
        r = self.cluster.cli(nd, ["tenant", "list"], timeout=10)
        if s is None or not r.ok:
            return None
        try:
            tenants = sorted(r.json(), key=lambda t: t["id"])
        except (ValueError, TypeError, KeyError):
            return None
        view = {"applied": s.get("applied_revision"), "role": s.get("role"), "leader": s.get("leader_id"),
                "tenants": tenants}
        if self.acme is not None:
            ar = self.cluster.cli(nd, ["acme", "list"], timeout=10)
            if not ar.ok:
                return None
            try:
                view["acme"] = {k: sorted(v) for k, v in wl.parse_challenges(ar.json()).items()}
            except ValueError:
                return None
        return view

    def _dns_agrees(self, nd, tenants, acme):
        for t in tenants:
            if t["id"] not in self.tenants:
                continue
            r = dnsq.query(nd.dns, f"ws-{t['id']}.{APEX}", "CNAME", timeout=1.0, tries=3)
            want = [(f"ws-{t['id']}.{APEX}", "CNAME", f"ws-{t['cluster']}.example.test.")]
            if r is None or r["answers"] != want:
                return f"node {nd.id}: ws-{t['id']} CNAME {r and r['answers']} != {want}"
            r = dnsq.query(nd.dns, f"{t['id']}.{APEX}", "A", timeout=1.0, tries=3)
            want = [(f"{t['id']}.{APEX}", "A", CLUSTERS[t["cluster"]])]
            if r is None or r["answers"] != want:
                return f"node {nd.id}: {t['id']} A {r and r['answers']} != {want}"
        for name, values in (acme or {}).items():
            r = dnsq.query(nd.dns, f"_acme-challenge.{name}.", "TXT", timeout=1.0, tries=3)
            got = sorted(d for (_, typ, d) in (r["answers"] if r else []) if typ == "TXT")
            if r is None or got != sorted(values):
                return f"node {nd.id}: _acme-challenge.{name} TXT {got} != {sorted(values)}"
        return None

    def converge(self, label):
        """Wait until every node has the same applied revision, tenants and DNS answers.
        Records the agreed state as a linearizable read of every tenant; returns seconds or None."""
        bound = self.args.converge_timeout
        start = self.now()
        deadline = time.monotonic() + bound
        last = None
        while True:
            views = {}
            for nd in self.cluster.nodes.values():
                v = self._node_view(nd) if nd.live() else None
                views[nd.id] = v
            if all(v is not None for v in views.values()):
                ref = views[1]
                same = all(v["applied"] == ref["applied"] and v["tenants"] == ref["tenants"] and v.get("acme") == ref.get("acme")
                           for v in views.values())
                leaders = {v["leader"] for v in views.values()}
                has_leader = any(v["role"] == "leader" for v in views.values()) and len(leaders) == 1 and 0 not in leaders
                if same and has_leader:
                    bad = None
                    for nd in self.cluster.nodes.values():
                        bad = self._dns_agrees(nd, ref["tenants"], ref.get("acme"))
                        if bad:
                            break
                    if bad is None:
                        end = self.now()
                        self._record_agreed(label, start, end, ref)
                        return end - start
                    last = f"state agrees at revision {ref['applied']} but DNS differs: {bad}"
                else:
                    last = "nodes differ: " + "; ".join(
                        f"{i}: applied {v['applied']} {v['role']} leader {v['leader']}" for i, v in views.items())
            else:
                last = "no answer from node(s) " + ",".join(str(i) for i, v in views.items() if v is None)
            if time.monotonic() > deadline:
                self.fail(f"{label}: the nodes did not converge within {bound:.0f} s after healing: {last}")
                self.keep = True
                return None
            time.sleep(0.3)

    def _record_agreed(self, label, start, end, ref):
        by_id = {t["id"]: t for t in ref["tenants"]}
        for t in self.tenants:
            v = by_id.get(t)
            value = None if v is None else {"cluster": v["cluster"], "pinned": v["pinned"], "rev": v["revision"],
                                            "history": v.get("history", [])}
            self.history.add({"id": self.history.new_id(), "process": "checker", "tenant": t, "f": "final",
                              "round": label, "invoke": start, "complete": end, "status": "ok", "value": value})
        if self.acme is not None:
            problems = self.acme.check({k: set(v) for k, v in (ref.get("acme") or {}).items()})
            for p in problems:
                self.fail(f"{label}: ACME: {p}")

    # --- the end ---------------------------------------------------------------------------

    def finish_checks(self):
        for nd in self.cluster.nodes.values():
            if nd.paused:
                nd.resume()
        self.net.heal()
        for p in self.cluster.proxies.values():
            p.faults.clear()
        self._ensure_all_running()
        took = self.converge("final")
        self.final_converge = took
        self.prober.stop()
        self.history.close()
        self.log("checking the history")
        t = time.monotonic()
        self.result = checker.check(self.history.ops)
        self.log(f"checked {self.result['ops']} ops in {time.monotonic() - t:.1f} s")
        if not self.result["linearizable"]:
            self.fail("history is not linearizable")
        if self.result["lost"]:
            self.fail(f"{self.result['lost']} acknowledged write(s) lost")
        if self.result["read_anomalies"]:
            self.fail(f"{self.result['read_anomalies']} local read(s) went back in time on one node")
        for a in self.result["batch_anomalies"]:
            self.fail(f"batch {a['batch']}: {a['why']} (ops {a['ops']})")
        for line in checker.explain(self.history.ops, self.result):
            self.log("  " + line)
        for e in self.workload.errors:
            self.fail(f"workload: {e}")
        for e in self.cluster.events:
            if e["kind"] == "node-exit":
                if e["panicked"]:
                    self.fail(f"node {e['node']} panicked (incarnation {e['incarnation']}, exit {e['rc']}) at +{e['t']}s")
                else:
                    self.fail(f"node {e['node']} exited unexpectedly (rc {e['rc']}) at +{e['t']}s")
        self.scan_logs()

    def scan_logs(self):
        for nd in self.cluster.nodes.values():
            try:
                with open(nd.log_path, errors="replace") as f:
                    lines = f.readlines()
            except OSError:
                continue
            for k, line in enumerate(lines):
                if "panicked" in line:
                    self.fail(f"node {nd.id} log has a panic: {line.strip()[:300]}")
                    break

    def summary(self):
        r = getattr(self, "result", None)
        lines = []
        hdr = (f"{'round':>5}  {'nemesis':<18} {'ops':>5} {'acked':>5} {'retry':>5} {'unkn':>4} "
               f"{'DNS answered':>17} {'converge':>9}")
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for row in self.rounds:
            dns = f"{row['dns_answered']}/{row['dns_sent']}"
            pct = f"{100.0 * row['dns_answered'] / row['dns_sent']:.0f}%" if row["dns_sent"] else "-"
            conv = "FAILED" if row["converge_s"] is None else f"{row['converge_s']:.1f}s"
            lines.append(f"{row['round']:>5}  {row['nemesis']:<18} {row['ops']:>5} {row['acked']:>5} {row['retried']:>5} "
                         f"{row['unknown']:>4} {dns + ' ' + pct:>17} {conv:>9}")
        lines.append("-" * len(hdr))
        if len(self.rounds) > len({row["nemesis"] for row in self.rounds}):
            lines += [""] + nemesis_table(self.rounds) + [""]
        sent, ans, wrong = self.prober.totals() if self.prober else (0, 0, 0)
        convs = [row["converge_s"] for row in self.rounds if row["converge_s"] is not None]
        if r:
            lines.append(f"rounds {len(self.rounds)}, nemeses {len({row['nemesis'] for row in self.rounds})}, "
                         f"ops {r['ops']}, writes {r['writes']}, acked {r['acked']}, unknown {r['unknown']}, "
                         f"lost {r['lost']}, linearizable {'yes' if r['linearizable'] else 'NO'}, "
                         f"local-read anomalies {r['read_anomalies']}, batches {r['batches']} "
                         f"({len(r['batch_anomalies'])} inconsistent)")
        lines.append(f"DNS availability on live nodes: {ans}/{sent}"
                     f" ({100.0 * ans / sent:.2f}%)" if sent else "DNS: no queries")
        if wrong:
            lines.append(f"DNS answers with an unknown CNAME target: {wrong}")
        if convs:
            fc = getattr(self, "final_converge", None)
            lines.append(f"time to converge after healing: max {max(convs):.1f}s, mean {sum(convs) / len(convs):.1f}s; "
                         f"final {'-' if fc is None else f'{fc:.1f}s'}")
        if self.acme is not None:
            lines.append(f"ACME ops: {self.acme.ops}")
        return lines

    # --- cleanup ------------------------------------------------------------------------------

    def cleanup(self):
        if self.cleaned:
            return
        self.cleaned = True
        if self.workload:
            self.workload.gate.stop()
        if self.prober:
            self.prober.stopped = True
        keep = self.keep or bool(self.failures)
        if self.cluster:
            try:
                self.cluster.stop()
            except Exception as e:
                print(f"cleanup: stopping nodes: {e}", file=sys.stderr)
            try:
                self.cluster.unmount_all(keep_copy_to=self.root if keep else None)
            except Exception as e:
                print(f"cleanup: unmounting: {e}", file=sys.stderr)
        if self.net:
            try:
                self.net.cleanup()
            except Exception as e:
                print(f"cleanup: network: {e}", file=sys.stderr)
        if self.history:
            try:
                self.history.close()
            except Exception:
                pass
        if self.root:
            if keep:
                try:
                    os.unlink(self.bin)  # the copy is big; the summary names the original
                except OSError:
                    pass
                print(f"kept: {self.root} (node logs and data in node*/, history.jsonl, summary.json, chaos.log)")
            else:
                shutil.rmtree(self.root, ignore_errors=True)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.quick and not args.skip_selftest:
        print("== checker self-test", flush=True)
        if not selftest():
            print("checker self-test FAILED", flush=True)
            return 2
    h = Harness(args)
    print(f"== switchboard chaos: seed {h.seed} (reproduce with --seed {h.seed})", flush=True)

    def on_signal(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell starting us in the background may have set it to ignored
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    atexit.register(h.cleanup)
    status = 0
    try:
        h.run()
    except HarnessError as e:
        h.failures.append(f"harness error: {e}")
        h.log(f"HARNESS ERROR: {e}")
        status = 2
    except KeyboardInterrupt:
        h.failures.append("interrupted")
        h.log("interrupted: cleaning up")
        status = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        h.failures.append(f"harness error: {type(e).__name__}: {e}")
        status = 2
    finally:
        lines = h.summary() if h.rounds or getattr(h, "result", None) else []
        total = time.monotonic() - h.t0
        if h.root and os.path.isdir(h.root):
            try:
                with open(os.path.join(h.root, "summary.json"), "w") as f:
                    json.dump({"seed": h.seed, "args": vars(args), "rounds": h.rounds, "failures": h.failures,
                               "notes": h.notes, "events": h.cluster.events if h.cluster else [],
                               "result": {k: v for k, v in getattr(h, "result", {}).items() if k != "tenants"},
                               "tenants": {t: {k: v for k, v in r.items() if k != "info"}
                                           for t, r in getattr(h, "result", {}).get("tenants", {}).items()},
                               "seconds": round(total, 1)}, f, indent=1, default=str)
            except Exception as e:
                print(f"writing summary.json: {e}", file=sys.stderr)
        print("\n== summary (seed %d, %s network, %.0f s)" % (h.seed, h.net.mode if h.net else "no", total))
        for line in lines:
            print(line)
        for n in h.notes:
            print(f"note: {n}")
        for f in h.failures:
            print(f"FAILED: {f}")
        if status == 0 and h.failures:
            status = 1
        print("RESULT: " + ("PASS" if status == 0 else "FAIL") + f" (reproduce with --seed {h.seed})", flush=True)
        h.cleanup()
        # one closing line a CI log reader understands: each check passed or failed
        r = getattr(h, "result", None)
        checks = [
            r is not None and status in (0, 1),                                   # the run completed
            r is not None and r["lost"] == 0,                                     # no lost write
            r is not None and r["linearizable"],                                  # linearizable
            r is not None and r["read_anomalies"] == 0,                           # local reads
            r is not None and not any("converge" in f for f in h.failures),       # convergence
            r is not None and not any(f.startswith(("node ", "workload", "ACME")) or "ACME" in f
                                      for f in h.failures),                       # nodes, workload, ACME
        ]
        print(f"chaos: {sum(checks)} passed, {len(checks) - sum(checks)} failed", flush=True)
    return status
