"""The workload: client threads doing compare-and-set writes and reads on a
few tenants through the CLI, batches of compare-and-set moves of several
tenants in one call (`switchboard batch`, all or nothing or row by row),
ACME set/clear when the binary has them, and continuous DNS queries to
every live node."""

import json
import os
import random
import subprocess
import threading
import time

import dnsq

PROBE_REVISION = 999_999_999_999  # never a tenant's revision: the CAS is refused, revealing the current one


class History:
    """Operations as JSON lines, in memory and on disk."""

    def __init__(self, path, clock):
        self.path = path
        self.clock = clock
        self.ops = []
        self.lock = threading.Lock()
        self.next_id = 1
        self.f = open(path, "w")

    def new_id(self):
        with self.lock:
            i = self.next_id
            self.next_id += 1
            return i

    def add(self, op):
        with self.lock:
            self.ops.append(op)
            self.f.write(json.dumps(op, sort_keys=True) + "\n")
            self.f.flush()

    def close(self):
        with self.lock:
            self.f.close()


class Gate:
    """Lets the clients run, or holds them between operations (quiesce)."""

    def __init__(self):
        self.cv = threading.Condition()
        self.open = True
        self.busy = 0
        self.stopped = False

    def enter(self):
        with self.cv:
            while not self.open and not self.stopped:
                self.cv.wait(0.2)
            if self.stopped:
                return False
            self.busy += 1
            return True

    def leave(self):
        with self.cv:
            self.busy -= 1
            self.cv.notify_all()

    def close(self, timeout):
        """Stop new operations and wait for those in flight; True if all finished."""
        deadline = time.monotonic() + timeout
        with self.cv:
            self.open = False
            while self.busy and time.monotonic() < deadline:
                self.cv.wait(0.2)
            return self.busy == 0

    def reopen(self):
        with self.cv:
            self.open = True
            self.cv.notify_all()

    def stop(self):
        with self.cv:
            self.stopped = True
            self.cv.notify_all()


class Workload:
    def __init__(self, cluster, history, tenants, clusters, seed, clients=4, round_label=lambda: "",
                 write_deadline=25.0, cli_timeout=4.0, acme=None, strict_reads=False):
        self.c = cluster
        self.h = history
        self.tenants = tenants
        self.clusters = clusters
        self.seed = seed
        self.n = clients
        self.round_label = round_label
        self.write_deadline = write_deadline
        self.cli_timeout = cli_timeout
        self.gate = Gate()
        self.threads = []
        self.known = {}  # tenant -> last revision any client saw
        self.known_lock = threading.Lock()
        self.acme = acme
        self.strict_reads = strict_reads
        # `tenant get --consistent` (a read the leader confirms with a
        # quorum): half the reads use it and are checked as linearizable.
        help_ = subprocess.run([cluster.bin, "tenant", "get", "--help"], capture_output=True, text=True)
        self.consistent_reads = "--consistent" in help_.stdout
        help_ = subprocess.run([cluster.bin, "--help"], capture_output=True, text=True)
        self.batches = " batch " in help_.stdout
        self.errors = []

    # --- helpers ------------------------------------------------------------------

    def _pick_node(self, rng):
        live = self.c.live_nodes()
        return rng.choice(live) if live else None

    def _learn(self, tenant, rev):
        if rev is None:
            return
        with self.known_lock:
            if rev > self.known.get(tenant, 0):
                self.known[tenant] = rev

    def start(self):
        for p in range(self.n):
            t = threading.Thread(target=self._client, args=(p,), daemon=True, name=f"client-{p}")
            t.start()
            self.threads.append(t)

    def stop(self, timeout=60):
        self.gate.close(timeout)
        self.gate.stop()
        for t in self.threads:
            t.join(timeout=max(1.0, timeout))

    # --- the client loop -------------------------------------------------------------------

    def _client(self, p):
        rng = random.Random(f"{self.seed}-client-{p}")
        seq = 0
        while True:
            if not self.gate.enter():
                return
            try:
                seq += 1
                r = rng.random()
                if self.acme is not None and r < 0.12:
                    self.acme.step(p, rng, seq, self.round_label())
                    continue
                if self.batches and r < 0.22 and len(self.tenants) > 1:
                    self.batch(p, rng, seq)
                    continue
                tenant = rng.choice(self.tenants)
                r = rng.random()
                if r < 0.42:
                    self.write(p, rng, seq, tenant, "move")
                elif r < 0.55:
                    self.write(p, rng, seq, tenant, "pin")
                elif r < 0.88:
                    self.read(p, rng, tenant)
                else:
                    self.probe(p, rng, tenant)
            except Exception as e:  # a harness bug: report it, keep going
                self.errors.append(f"client {p}: {type(e).__name__}: {e}")
            finally:
                self.gate.leave()
            time.sleep(rng.uniform(0, 0.05))

    def write(self, p, rng, seq, tenant, f, expect=None, cluster=None):
        with self.known_lock:
            known = self.known.get(tenant, 0)
        if expect is None:
            # mostly the newest revision this client knows; sometimes an old one (a CAS that must fail)
            expect = known if rng.random() < 0.9 else max(1, known - rng.randint(1, 5))
        cluster = cluster or rng.choice(self.clusters)
        rid = f"{self.c.run_id}-p{p}-{seq}"
        op = {"id": self.h.new_id(), "process": p, "tenant": tenant, "f": f, "expect": expect, "cluster": cluster,
              "request_id": rid, "round": self.round_label(), "invoke": self.c.now(), "attempts": []}
        args = ["--expect-revision", expect, "--request-id", rid, "tenant", "move" if f == "move" else "pin", tenant, cluster]
        deadline = time.monotonic() + self.write_deadline
        # a quarter of the writes give up after one indeterminate attempt, so
        # the checker also sees operations whose outcome is never learnt
        impatient = rng.random() < 0.25
        while True:
            nd = self._pick_node(rng)
            if nd is None:
                time.sleep(0.2)
                if time.monotonic() > deadline:
                    op.update(status="info", complete=None, code="NoLiveNode")
                    break
                continue
            r = self.c.cli(nd, args, timeout=self.cli_timeout)
            op["attempts"].append({"node": nd.id, "code": r.code or "OK", "t": round(self.c.now(), 3),
                                   "err": r.err.strip()[-200:] if r.err else None})
            if r.ok:
                try:
                    j = r.json()
                    op.update(status="ok", complete=self.c.now(), rev=j["revision"], node=nd.id,
                              pinned=j.get("tenant", {}).get("pinned"),
                              result_cluster=j.get("tenant", {}).get("cluster"))
                    if op["result_cluster"] is not None and op["result_cluster"] != cluster:
                        self.errors.append(f"write {op['id']} acked with cluster {op['result_cluster']} != {cluster}")
                    self._learn(tenant, op["rev"])
                except (ValueError, KeyError) as e:
                    # acknowledged, but we cannot tell at which revision: keep it open-ended
                    op.update(status="info", complete=None, code="Unparsed", parse_error=str(e))
                break
            if r.definite_failure():
                op.update(status="fail", complete=self.c.now(), code=r.code, current=r.current(), node=nd.id)
                self._learn(tenant, op["current"])
                break
            if time.monotonic() > deadline or impatient:
                # give up: the outcome stays unknown (open-ended in the history)
                op.update(status="info", complete=None, code=r.code)
                break
            time.sleep(rng.uniform(0.1, 0.4))  # then the SAME request id again, maybe through another node
        self.h.add(op)
        return op

    def batch(self, p, rng, seq):
        """Moves of 2-3 tenants in one `switchboard batch` call, each row
        with its own compare-and-set, all or nothing half of the time. Each
        row goes into the history as a write of its tenant (so the checker
        checks it with that tenant's other operations), tagged with the
        batch; the checker also checks the batch whole (one revision for
        the rows that took effect; an atomic batch all or nothing)."""
        tenants = rng.sample(self.tenants, min(len(self.tenants), rng.randint(2, 3)))
        atomic = rng.random() < 0.5
        rid = f"{self.c.run_id}-p{p}-{seq}"
        batch_id = self.h.new_id()
        rows = []
        for t in tenants:
            with self.known_lock:
                known = self.known.get(t, 0)
            expect = known if rng.random() < 0.9 else max(1, known - rng.randint(1, 5))
            rows.append({"tenant": t, "expect": expect, "cluster": rng.choice(self.clusters)})
        path = os.path.join(self.c.root, f"batch-p{p}.jsonl")
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps({"move_tenant": {"id": r["tenant"], "cluster": r["cluster"]},
                                    "expected_revision": r["expect"]}) + "\n")
        invoke = self.c.now()
        args = ["--request-id", rid, "batch", path] + (["--atomic"] if atomic else [])
        deadline = time.monotonic() + self.write_deadline
        impatient = rng.random() < 0.25
        attempts, results, outcome = [], None, None
        while True:
            nd = self._pick_node(rng)
            if nd is None:
                time.sleep(0.2)
                if time.monotonic() > deadline:
                    outcome = ("info", "NoLiveNode")
                    break
                continue
            r = self.c.cli(nd, args, timeout=self.cli_timeout)
            attempts.append({"node": nd.id, "code": r.code or "OK", "t": round(self.c.now(), 3),
                             "err": r.err.strip()[-200:] if r.err else None})
            # The call was answered (rows refused or not) when it printed its rows.
            try:
                results = r.json()["rows"] if (r.ok or r.out.strip()) and not r.timed_out else None
            except (ValueError, KeyError, TypeError):
                results = None
            if results is not None:
                break
            if r.definite_failure():
                outcome = ("fail", r.code)
                break
            if time.monotonic() > deadline or impatient:
                outcome = ("info", r.code)
                break
            time.sleep(rng.uniform(0.1, 0.4))
        complete = self.c.now()
        if results is not None and len(results) != len(rows):
            self.errors.append(f"batch {batch_id}: {len(results)} results for {len(rows)} rows")
            results, outcome = None, ("info", "Unparsed")
        for i, row in enumerate(rows):
            op = {"id": self.h.new_id(), "process": p, "tenant": row["tenant"], "f": "move", "expect": row["expect"],
                  "cluster": row["cluster"], "request_id": rid, "round": self.round_label(), "invoke": invoke,
                  "batch": batch_id, "atomic": atomic, "row": i, "attempts": attempts}
            if results is None:
                status, code = outcome
                op.update(status=status, code=code, complete=None if status == "info" else complete)
            elif not results[i].get("code"):
                op.update(status="ok", complete=complete, rev=results[i]["revision"])
                self._learn(row["tenant"], op["rev"])
            else:
                message = results[i].get("message", "")
                current = _current_in(message)
                # A row an atomic batch undid for another row's refusal did nothing.
                code = "NotApplied" if "not applied" in message else _code_of(results[i]["code"])
                op.update(status="fail", complete=complete, code=code, current=current if code == "Aborted" else None,
                          message=message[:200])
                if op["current"] is not None:
                    self._learn(row["tenant"], op["current"])
            self.h.add(op)

    def read(self, p, rng, tenant):
        nd = self._pick_node(rng)
        if nd is None:
            return
        inc = nd.incarnation
        consistent = self.consistent_reads and rng.random() < 0.5
        op = {"id": self.h.new_id(), "process": p, "tenant": tenant, "f": "get", "node": nd.id,
              "round": self.round_label(), "invoke": self.c.now(), "strict": self.strict_reads or consistent}
        args = ["tenant", "get", tenant] + (["--consistent"] if consistent else [])
        r = self.c.cli(nd, args, timeout=self.cli_timeout)
        op["complete"] = self.c.now()
        if nd.incarnation != inc:
            inc = None  # the node restarted meanwhile: which process answered is unclear
        op["incarnation"] = inc
        if r.ok:
            try:
                j = r.json()
                op.update(status="ok", value={"cluster": j["cluster"], "pinned": j["pinned"], "rev": j["revision"],
                                              "history": j.get("history", [])})
                self._learn(tenant, j["revision"])
            except (ValueError, KeyError) as e:
                op.update(status="fail", code="Unparsed", error=str(e))
        elif r.code == "NotFound":
            op.update(status="ok", value=None)
        else:
            op.update(status="fail", code=r.code)
        self.h.add(op)

    def probe(self, p, rng, tenant):
        nd = self._pick_node(rng)
        if nd is None:
            return
        op = {"id": self.h.new_id(), "process": p, "tenant": tenant, "f": "probe", "node": nd.id,
              "round": self.round_label(), "invoke": self.c.now()}
        r = self.c.cli(nd, ["--expect-revision", PROBE_REVISION, "tenant", "move", tenant, self.clusters[0]],
                       timeout=self.cli_timeout)
        op["complete"] = self.c.now()
        if r.code == "Aborted" and r.current() is not None:
            op.update(status="ok", code="Aborted", current=r.current())
            self._learn(tenant, op["current"])
        elif r.ok:
            op.update(status="ok", code="OK", error="a probe with an impossible revision was applied")
            self.errors.append(f"probe {op['id']} on {tenant} was applied: {r.out.strip()[:200]}")
        else:
            op.update(status="fail", code=r.code)
        self.h.add(op)


def _current_in(message):
    """The revision an ABORTED row's message says its tenant is at."""
    import re
    m = re.search(r"it is at revision (\d+)", message)
    return int(m.group(1)) if m else None


def _code_of(name):
    """A row's gRPC code name (ABORTED) as the CLI's errors spell it (Aborted)."""
    return "".join(w.capitalize() for w in name.split("_"))


class Acme:
    """ACME set/clear on names each owned by one client (so no two ops on a
    name are concurrent), with the set of values each name must and may hold."""

    def __init__(self, cluster, history, apex, seed):
        self.c = cluster
        self.h = history
        self.apex = apex
        self.seed = seed
        self.must = {}   # name -> values an acknowledged op left there
        self.may = {}    # name -> values an op of unknown outcome may have left there
        self.lock = threading.Lock()
        self.ops = 0

    def names_of(self, p):
        return [f"c{p}-{k}.{self.apex}".rstrip(".") for k in range(2)]

    def step(self, p, rng, seq, label=None):
        name = rng.choice(self.names_of(p))
        with self.lock:
            must = set(self.must.get(name, set()))
        r = rng.random()
        if r < 0.6 or not must:
            value = f"v{p}x{seq}"
            args = ["acme", "set", name, value, "--ttl", "60", "--expires-in", "3600"]
            kind = "set"
        elif r < 0.85:
            value = rng.choice(sorted(must))
            args = ["acme", "clear", name, value]
            kind = "clear"
        else:
            value = None
            args = ["acme", "clear", name]
            kind = "clear-all"
        rid = f"{self.c.run_id}-acme-p{p}-{seq}"
        op = {"id": self.h.new_id(), "process": p, "f": f"acme-{kind}", "name": name, "value": value,
              "request_id": rid, "round": label, "invoke": self.c.now(), "attempts": []}
        deadline = time.monotonic() + 25
        while True:
            live = self.c.live_nodes()
            if not live:
                time.sleep(0.2)
                if time.monotonic() > deadline:
                    op.update(status="info", complete=None)
                    break
                continue
            nd = rng.choice(live)
            res = self.c.cli(nd, ["--request-id", rid] + args, timeout=4)
            op["attempts"].append({"node": nd.id, "code": res.code or "OK"})
            if res.ok:
                op.update(status="ok", complete=self.c.now())
                break
            if res.definite_failure():
                op.update(status="fail", complete=self.c.now(), code=res.code, err=res.err.strip()[-200:])
                break
            if time.monotonic() > deadline:
                op.update(status="info", complete=None, code=res.code)
                break
            time.sleep(rng.uniform(0.1, 0.4))
        with self.lock:
            m, y = self.must.setdefault(name, set()), self.may.setdefault(name, set())
            if op["status"] == "ok":
                if kind == "set":
                    m.add(value)
                    y.discard(value)
                elif kind == "clear":
                    m.discard(value)
                    y.discard(value)
                else:
                    m.clear()
                    y.clear()
            elif op["status"] == "info":
                if kind == "set":
                    if value not in m:
                        y.add(value)
                elif kind == "clear":
                    if value in m:
                        m.discard(value)
                        y.add(value)
                else:
                    y |= m
                    m.clear()
            self.ops += 1
        self.h.add(op)

    def check(self, observed):
        """Compare one agreed `acme list` (name -> set of values) with what must/may be there."""
        problems = []
        with self.lock:
            for name in sorted(set(self.must) | set(self.may)):
                got = observed.get(name, set())
                must, may = self.must.get(name, set()), self.may.get(name, set())
                missing = must - got
                extra = got - must - may
                if missing:
                    problems.append(f"{name}: acknowledged value(s) missing: {sorted(missing)}")
                if extra:
                    problems.append(f"{name}: value(s) present that were cleared or never set: {sorted(extra)}")
                # what is there now is known; values of unknown ops stay possible
                self.must[name] = set(got) - may
        return problems


def parse_challenges(j):
    """name -> set of values from an `acme list --json` output, whatever its exact shape."""
    out = {}

    def walk(x):
        if isinstance(x, dict):
            if "name" in x and "values" in x and isinstance(x["values"], list):
                vals = set()
                for v in x["values"]:
                    vals.add(v.get("value") if isinstance(v, dict) else v)
                name = str(x["name"]).lower().rstrip(".")
                if name.startswith("_acme-challenge."):
                    name = name[len("_acme-challenge."):]
                out[name] = vals
                return
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(j)
    return out


class DnsProber:
    """One thread per node: queries while the node is live, counting answered/sent per window."""

    def __init__(self, cluster, tenants, apex, window, clusters):
        self.c = cluster
        self.tenants = tenants
        self.apex = apex
        self.window = window  # callable: the current window label
        self.valid_targets = {f"ws-{c}.example.test." for c in clusters}
        self.stats = {}  # (window, node) -> [sent, answered, wrong]
        self.lock = threading.Lock()
        self.stopped = False
        self.threads = []

    def start(self):
        for nd in self.c.nodes.values():
            t = threading.Thread(target=self._loop, args=(nd,), daemon=True, name=f"dns-{nd.id}")
            t.start()
            self.threads.append(t)

    def stop(self):
        self.stopped = True
        for t in self.threads:
            t.join(timeout=5)

    def _loop(self, nd):
        rng = random.Random(nd.id)
        k = 0
        while not self.stopped:
            k += 1
            if not nd.live():
                time.sleep(0.05)
                continue
            inc, win = nd.incarnation, self.window()
            tenant = rng.choice(self.tenants)
            if k % 2:
                name, qtype = f"ws-{tenant}.{self.apex}", "CNAME"
            else:
                name, qtype = f"{tenant}.{self.apex}", "A"
            resp = dnsq.query(nd.dns, name, qtype, timeout=1.0)
            if not nd.live() or nd.incarnation != inc or self.window() != win:
                continue  # the node went down or the window changed meanwhile: no sample
            answered = resp is not None and resp["rcode"] == "NOERROR" and resp["aa"]
            wrong = False
            if answered and qtype == "CNAME":
                wrong = not resp["answers"] or resp["answers"][0][2] not in self.valid_targets
            with self.lock:
                s = self.stats.setdefault((win, nd.id), [0, 0, 0])
                s[0] += 1
                s[1] += 1 if answered else 0
                s[2] += 1 if wrong else 0
            time.sleep(0.04)

    def totals(self, window=None):
        with self.lock:
            sent = sum(v[0] for (w, _), v in self.stats.items() if window is None or w == window)
            ans = sum(v[1] for (w, _), v in self.stats.items() if window is None or w == window)
            wrong = sum(v[2] for (w, _), v in self.stats.items() if window is None or w == window)
        return sent, ans, wrong
