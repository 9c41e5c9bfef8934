"""Checks a recorded history: lost acknowledged writes, per-tenant
linearizability (Wing-Gong/Lowe search, P-compositional over tenants), and
the weaker guarantees of local (follower) reads.

An operation is a dict (one JSON line of history.jsonl):

    id        unique int
    process   the client that issued it
    tenant    the tenant it touches (the unit of P-compositionality)
    f         create | move | pin | probe | get | final
    invoke    seconds (monotonic, since the run started)
    complete  seconds, or None when the outcome is unknown (open-ended)
    status    ok | fail | info   (info: timed out / unavailable: maybe applied)

writes (create, move, pin):
    expect    the compare-and-set revision sent (--expect-revision)
    cluster   the target cluster
    rev       (ok) the revision the write committed at
    pinned    (ok, optional) the tenant's pinned flag in the response
    code      (fail) gRPC code name, e.g. Aborted, NotFound
    current   (fail Aborted) the tenant's revision the server reported

A row of a batch (`switchboard batch`) is a write of its tenant like any
other, with `batch` (the call's id), `atomic` and `row`; a row an atomic
batch did not apply because another row was refused has status fail and
code NotApplied. Beside each tenant's check, `_batch_anomalies` checks each
batch whole: the rows that took effect share one revision, and an atomic
batch's rows took effect all or none.

probe: a compare-and-set with an impossible expected revision; the server
    refuses it inside `apply`, so the ABORTED reply's `current` is a
    linearizable read of the tenant's revision.

get (local read from one node's replica) / final (agreed state of all nodes
after healing, a linearizable read):
    value     {"cluster", "pinned", "rev"} or None when NotFound
    node, incarnation   (get) which node process answered
    strict    (get, optional) true: check it as a linearizable read

The model of one tenant is a register with a revision: state
(cluster, pinned, rev), rev 0 and cluster None when it does not exist.
"""

import math

ABSENT = (None, None, 0)
INF = math.inf
WRITES = ("create", "move", "pin")


class Undecided(Exception):
    pass


def _pinned_after(op, state):
    if op["f"] in ("create", "pin"):
        return True
    return state[1]


class TenantModel:
    """Step function of the register-with-revision model for one tenant's ops."""

    def __init__(self, ops, track_versions):
        self.track = track_versions
        acked = {op["rev"] for op in ops if op["f"] in WRITES and op["status"] == "ok"}
        observed = set()
        for op in ops:
            if op["f"] in WRITES:
                observed.add(op.get("expect"))
                if op["status"] == "fail" and op.get("current") is not None:
                    observed.add(op["current"])
            elif op["f"] == "probe" and op.get("current") is not None:
                observed.add(op["current"])
            elif op["f"] in ("get", "final") and op.get("value"):
                observed.add(op["value"]["rev"])
        # Revisions an unknown write may have committed at: seen somewhere, not
        # produced by an acknowledged write (a revision names one version).
        self.candidates = sorted(r for r in observed if isinstance(r, int) and r > 0 and r not in acked)

    def init(self):
        return (ABSENT, frozenset([ABSENT])) if self.track else (ABSENT, None)

    def _with(self, st, new):
        cur, versions = st
        return (new, versions | {new}) if self.track else (new, None)

    def step(self, st, op):
        """The states op can lead to from st (empty: op cannot happen here)."""
        cur, versions = st
        f, status = op["f"], op["status"]
        rev = cur[2]
        if f in WRITES:
            if status == "ok":
                if rev != op["expect"] or not isinstance(rev, int) or op["rev"] <= rev:
                    return []
                new = (op["cluster"], _pinned_after(op, cur), op["rev"])
                if op.get("pinned") is not None and op["pinned"] != new[1]:
                    return []
                return [self._with(st, new)]
            if status == "fail":
                if op.get("code") == "Aborted" and op.get("current") is not None:
                    if rev != op["current"] or op["current"] == op["expect"]:
                        return []
                return [st]
            # info: maybe applied, at a revision we may or may not have seen.
            out = [st]
            if rev == op["expect"] and isinstance(rev, int):
                pinned = _pinned_after(op, cur)
                for r in self.candidates:
                    if r > rev:
                        out.append(self._with(st, (op["cluster"], pinned, r)))
                out.append(self._with(st, (op["cluster"], pinned, ("unseen", op["id"]))))
            return out
        if f == "probe":
            if status != "ok" or op.get("current") is None:
                return [st]
            return [st] if rev == op["current"] else []
        if f in ("get", "final"):
            if status != "ok":
                return [st]
            v = op.get("value")
            seen = ABSENT if v is None else (v["cluster"], v["pinned"], v["rev"])
            if f == "final" or op.get("strict"):
                return [st] if seen == cur else []
            return [st] if seen in versions else []
        raise ValueError(f"unknown op kind {f!r}")


class _Entry:
    __slots__ = ("op", "call", "match", "prev", "next", "time")

    def __init__(self, op, call, time):
        self.op, self.call, self.time = op, call, time
        self.match = self.prev = self.next = None


def wgl(ops, model, max_steps=20_000_000):
    """Wing-Gong/Lowe search with Lowe's memoisation of (linearized set, state).

    Returns (ok, info): info holds the longest linearizable prefix found and,
    on failure, the operations that could not be placed after it.
    """
    index = {op["id"]: i for i, op in enumerate(ops)}
    events = []
    for op in ops:
        end = INF if op["complete"] is None else op["complete"]
        events.append((op["invoke"], 0, index[op["id"]], op))
        events.append((end, 1, index[op["id"]], op))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Entry(None, False, -INF)
    prev = head
    calls = {}
    for t, kind, i, op in events:
        e = _Entry(op, kind == 0, t)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
            e.match = calls[i]
        prev.next = e
        e.prev = prev
        prev = e

    def lift(e):
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(e):
        m = e.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    state = model.init()
    linearized = 0
    cache = set()
    stack = []  # (call entry, state before)
    # The deepest prefix linearized so far, for the explanation: the op ids
    # as a chain shared with the stack (newest first), so recording it is
    # O(1) rather than a copy of the stack at every new depth.
    chain = None  # (op id, rest) for the calls on the stack
    best_len, best_chain, best_state = 0, None, None
    blocked = []
    entry = head.next
    steps = 0
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            raise Undecided(f"search exceeded {max_steps} steps")
        if entry.call:
            i = index[entry.op["id"]]
            nl = linearized | (1 << i)
            moved = False
            for ns in model.step(state, entry.op):
                key = (nl, ns)
                if key in cache:
                    continue
                cache.add(key)
                stack.append((entry, state))
                chain = (entry.op["id"], chain)
                state, linearized = ns, nl
                lift(entry)
                if len(stack) + 1 > best_len:
                    best_len, best_chain, best_state = len(stack) + 1, chain, state
                entry = head.next
                moved = True
                break
            if not moved:
                entry = entry.next
        else:
            if len(stack) + 1 >= best_len:
                # At the deepest prefix: this op had to take effect by now and
                # could not, nor could the calls pending before its return.
                blocked = [entry.op["id"]]
                e = head.next
                while e is not None and e is not entry and len(blocked) < 12:
                    if e.call and e.op["id"] not in blocked:
                        blocked.append(e.op["id"])
                    e = e.next
            if not stack:
                ids, c = [], best_chain
                while c is not None:
                    ids.append(c[0])
                    c = c[1]
                return False, {"linearized": ids[::-1],
                               "state_after": best_state[0] if best_len else ABSENT,
                               "blocked": blocked, "steps": steps}
            e, state = stack.pop()
            chain = chain[1]
            linearized &= ~(1 << index[e.op["id"]])
            unlift(e)
            entry = e  # retry it: alternatives already tried are in the cache
    return True, {"steps": steps}


def _lost(ops, snapshot):
    """Acknowledged writes that a converged snapshot of the tenant contradicts."""
    if snapshot.get("value") is None:
        return [op["id"] for op in ops
                if op["f"] in WRITES and op["status"] == "ok" and op["complete"] < snapshot["invoke"]]
    v = snapshot["value"]
    at = snapshot["invoke"]
    acked = sorted((op for op in ops if op["f"] in WRITES and op["status"] == "ok" and op["complete"] < at),
                   key=lambda op: op["rev"])
    by_rev = {op["rev"]: op for op in acked}
    history = v.get("history") or []
    complete_from = 0 if len(history) < 16 else (history[0]["revision"] if history else 0)
    tomb = {h["revision"]: h for h in history}
    lost = []
    for op in acked:
        r = op["rev"]
        if r > v["rev"] or (r == v["rev"] and op["cluster"] != v["cluster"]):
            lost.append(op["id"])
            continue
        before = by_rev.get(op["expect"])
        if before is not None and before["cluster"] != op["cluster"] and r >= complete_from and r > 0:
            t = tomb.get(r)
            if t is None or t.get("to") != op["cluster"] or t.get("from") != before["cluster"]:
                lost.append(op["id"])
    return lost


def _local_read_anomalies(ops):
    """Local reads from one node process must never go back in revision.
    Strict (`--consistent`) reads are not local: the node asked passes them
    to the leader, which may be ahead of it, so they are left out here (the
    linearizability search checks them)."""
    out = []
    by_node = {}
    for op in ops:
        if op["f"] == "get" and op["status"] == "ok" and op.get("node") is not None and not op.get("strict"):
            by_node.setdefault((op["node"], op.get("incarnation")), []).append(op)
    for (node, inc), reads in by_node.items():
        reads.sort(key=lambda op: op["invoke"])
        best = None  # highest revision among reads that completed before this one began
        done = sorted(reads, key=lambda op: op["complete"])
        j = 0
        for op in reads:
            while j < len(done) and done[j]["complete"] < op["invoke"]:
                r = 0 if done[j]["value"] is None else done[j]["value"]["rev"]
                if best is None or r > best[0]:
                    best = (r, done[j]["id"])
                j += 1
            r = 0 if op["value"] is None else op["value"]["rev"]
            if best is not None and r < best[0]:
                out.append({"node": node, "incarnation": inc, "read": op["id"], "rev": r,
                            "after_read": best[1], "after_rev": best[0]})
    return out


def _batch_anomalies(history):
    """Batches whose rows disagree: rows that took effect at different
    revisions, or an atomic batch of which some rows took effect and others
    did not (decided either way: unknown rows are left out)."""
    batches = {}
    for op in history:
        if op.get("batch") is not None and op.get("f") in WRITES:
            batches.setdefault(op["batch"], []).append(op)
    out = []
    for b, rows in sorted(batches.items()):
        applied = [op for op in rows if op["status"] == "ok"]
        refused = [op for op in rows if op["status"] == "fail"]
        revs = sorted({op["rev"] for op in applied})
        if len(revs) > 1:
            out.append({"batch": b, "why": f"rows took effect at revisions {revs}", "ops": [op["id"] for op in rows]})
        if rows[0].get("atomic") and applied and refused:
            out.append({"batch": b, "why": "an atomic batch took effect in part", "ops": [op["id"] for op in rows]})
    return out


def check_tenant(ops, max_steps=20_000_000):
    ops = sorted(ops, key=lambda op: (op["invoke"], op["id"]))
    track = any(op["f"] == "get" and not op.get("strict") for op in ops)
    model = TenantModel(ops, track)
    try:
        ok, info = wgl(ops, model, max_steps)
        undecided = None
    except Undecided as e:
        ok, info, undecided = False, {}, str(e)
    lost = set()
    for snap in ops:
        if snap["f"] == "final" and snap["status"] == "ok":
            lost.update(_lost(ops, snap))
    anomalies = _local_read_anomalies(ops)
    return {
        "ops": len(ops),
        "linearizable": ok and undecided is None,
        "undecided": undecided,
        "info": info,
        "lost": sorted(lost),
        "read_anomalies": anomalies,
    }


def check(history, max_steps=20_000_000):
    """Check a whole history; returns a dict with a verdict per tenant and totals."""
    by_tenant = {}
    for op in history:
        if op.get("tenant") is not None and op["f"] in WRITES + ("probe", "get", "final"):
            by_tenant.setdefault(op["tenant"], []).append(op)
    tenants = {t: check_tenant(ops, max_steps) for t, ops in sorted(by_tenant.items())}
    writes = [op for op in history if op.get("f") in WRITES]
    batches = _batch_anomalies(history)
    return {
        "tenants": tenants,
        "ops": sum(1 for op in history if op.get("f") in WRITES + ("probe", "get")),
        "writes": len(writes),
        "acked": sum(1 for op in writes if op["status"] == "ok"),
        "unknown": sum(1 for op in writes if op["status"] == "info"),
        "lost": sum(len(r["lost"]) for r in tenants.values()),
        "linearizable": all(r["linearizable"] for r in tenants.values()),
        "read_anomalies": sum(len(r["read_anomalies"]) for r in tenants.values()),
        "batches": len({op["batch"] for op in writes if op.get("batch") is not None}),
        "batch_anomalies": batches,
        "ok": not batches and all(r["linearizable"] and not r["lost"] and not r["read_anomalies"] for r in tenants.values()),
    }


def explain(history, result, limit=12):
    """Human-readable lines about every failing tenant, quoting history lines."""
    by_id = {op["id"]: op for op in history}
    lines = []
    for t, r in result["tenants"].items():
        if r["linearizable"] and not r["lost"] and not r["read_anomalies"]:
            continue
        lines.append(f"tenant {t}: linearizable={r['linearizable']} lost={r['lost']} "
                     f"read_anomalies={len(r['read_anomalies'])}")
        if r["undecided"]:
            lines.append(f"  undecided: {r['undecided']}")
        if not r["linearizable"] and r["info"]:
            lin = r["info"].get("linearized", [])
            lines.append(f"  longest linearizable prefix: {len(lin)} ops, ending in state {r['info'].get('state_after')}")
            for oid in lin[-limit:]:
                lines.append(f"    ok  {fmt(by_id[oid])}")
            lines.append("  could not place next (first pending):")
            for oid in r["info"].get("blocked", [])[:limit]:
                lines.append(f"    !!  {fmt(by_id[oid])}")
        for oid in r["lost"][:limit]:
            lines.append(f"  lost: {fmt(by_id[oid])}")
        for a in r["read_anomalies"][:limit]:
            lines.append(f"  read went back on node {a['node']}: {fmt(by_id[a['read']])} after {fmt(by_id[a['after_read']])}")
    return lines


def fmt(op):
    keys = ("id", "process", "f", "status", "expect", "cluster", "rev", "code", "current", "value", "node",
            "request_id", "invoke", "complete")
    parts = []
    for k in keys:
        if k in op and op[k] is not None:
            v = op[k]
            if k == "value" and isinstance(v, dict):
                v = {"cluster": v.get("cluster"), "pinned": v.get("pinned"), "rev": v.get("rev")}
            if isinstance(v, float):
                v = round(v, 3)
            parts.append(f"{k}={v}")
    return " ".join(parts)
