"""Self-test of the chaos checker: it must reject histories with a lost write
or a stale linearizable read, and accept valid ones, unknown outcomes included.

    python3 -m unittest chaos/test_checker.py        (from the repository root)
    python3 -m unittest discover -s chaos             (same)
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402


class H:
    """A small history builder for one tenant."""

    def __init__(self, tenant="t0"):
        self.ops = []
        self.tenant = tenant

    def _add(self, **kw):
        op = {"id": len(self.ops) + 1, "tenant": self.tenant, "process": kw.pop("p", 0)}
        op.update(kw)
        self.ops.append(op)
        return op

    def create(self, t0, t1, rev, cluster="mt1", status="ok"):
        return self._add(f="create", invoke=t0, complete=t1, status=status, expect=0, cluster=cluster,
                         rev=rev if status == "ok" else None)

    def move(self, t0, t1, expect, cluster, rev=None, status="ok", code=None, current=None, p=0):
        return self._add(f="move", invoke=t0, complete=t1, status=status, expect=expect, cluster=cluster,
                         rev=rev, code=code, current=current, p=p)

    def pin(self, t0, t1, expect, cluster, rev=None, status="ok", code=None, current=None, p=0):
        return self._add(f="pin", invoke=t0, complete=t1, status=status, expect=expect, cluster=cluster,
                         rev=rev, code=code, current=current, p=p)

    def probe(self, t0, t1, current, p=0):
        return self._add(f="probe", invoke=t0, complete=t1, status="ok", code="Aborted", current=current, p=p)

    def get(self, t0, t1, cluster, rev, pinned=True, node=1, incarnation=1, strict=False, p=0):
        value = None if rev == 0 else {"cluster": cluster, "pinned": pinned, "rev": rev, "history": []}
        return self._add(f="get", invoke=t0, complete=t1, status="ok", value=value, node=node,
                         incarnation=incarnation, strict=strict, p=p)

    def final(self, t0, t1, cluster, rev, pinned=True, history=None):
        value = {"cluster": cluster, "pinned": pinned, "rev": rev, "history": history or []}
        return self._add(f="final", invoke=t0, complete=t1, status="ok", value=value)

    def check(self):
        return checker.check(self.ops)


def tomb(frm, to, rev):
    return {"from": frm, "to": to, "revision": rev}


class ValidHistories(unittest.TestCase):
    def test_sequential_writes_reads_and_final(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.probe(4, 5, current=8)
        h.pin(6, 7, expect=8, cluster="mt2", rev=9)
        h.move(8, 9, expect=5, cluster="mt3", status="fail", code="Aborted", current=9)
        h.get(10, 11, "mt2", 9, strict=True)
        h.final(20, 21, "mt2", 9, history=[tomb("mt1", "mt2", 8)])
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))
        self.assertEqual(r["lost"], 0)
        self.assertEqual(r["acked"], 3)

    def test_concurrent_cas_either_order(self):
        h = H()
        h.create(0, 1, rev=5)
        # Two clients race on revision 5: the one that completed first committed second.
        h.move(2, 10, expect=5, cluster="mt2", rev=7, p=1)
        h.move(3, 6, expect=5, cluster="mt3", status="fail", code="Aborted", current=7, p=2)
        h.probe(4, 5, current=5, p=3)  # linearized before the winner
        h.final(20, 21, "mt2", 7, history=[tomb("mt1", "mt2", 7)])
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))

    def test_unknown_write_that_took_effect(self):
        h = H()
        h.create(0, 1, rev=5)
        # Timed out; a later read shows it applied at revision 11.
        h.move(2, None, expect=5, cluster="mt4", status="info")
        h.move(3, 4, expect=5, cluster="mt2", status="fail", code="Aborted", current=11)
        h.get(5, 6, "mt4", 11, node=2)
        h.move(7, 8, expect=11, cluster="mt1", rev=12)
        h.final(20, 21, "mt1", 12, history=[tomb("mt1", "mt4", 11), tomb("mt4", "mt1", 12)])
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))
        self.assertEqual(r["unknown"], 1)

    def test_unknown_write_that_never_happened(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, None, expect=5, cluster="mt4", status="info")
        h.move(3, 4, expect=5, cluster="mt2", rev=9)
        h.final(20, 21, "mt2", 9, history=[tomb("mt1", "mt2", 9)])
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))

    def test_unknown_write_applied_after_final_read(self):
        # An open-ended op may take effect after every completed op.
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, None, expect=5, cluster="mt4", status="info")
        h.final(20, 21, "mt1", 5)
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))

    def test_stale_local_read_is_allowed(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.get(4, 5, "mt1", 5, node=4)  # a lagging learner
        h.get(6, 7, "mt2", 8, node=4)
        h.final(20, 21, "mt2", 8, history=[tomb("mt1", "mt2", 8)])
        r = h.check()
        self.assertTrue(r["ok"], checker.explain(h.ops, r))

    def test_local_read_before_create_applied(self):
        h = H()
        h.create(0, 1, rev=5)
        h.get(2, 3, None, 0, node=5)  # NotFound on a learner that lags
        h.final(20, 21, "mt1", 5)
        self.assertTrue(h.check()["ok"])


class BrokenHistories(unittest.TestCase):
    def test_lost_acknowledged_write(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.final(20, 21, "mt1", 5)  # after healing the move is gone
        r = h.check()
        self.assertFalse(r["ok"])
        self.assertEqual(r["lost"], 1)
        self.assertFalse(r["linearizable"])

    def test_lost_write_overwritten_by_a_later_one(self):
        # The final revision is higher, but the tombstones show the acked move never happened.
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.final(20, 21, "mt3", 12, history=[tomb("mt1", "mt3", 12)])
        r = h.check()
        self.assertEqual(r["lost"], 1)
        self.assertFalse(r["ok"])

    def test_stale_linearizable_read(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.probe(4, 5, current=5)  # through the log, after the move was acknowledged
        h.final(20, 21, "mt2", 8, history=[tomb("mt1", "mt2", 8)])
        r = h.check()
        self.assertFalse(r["linearizable"])
        self.assertFalse(r["ok"])
        self.assertEqual(r["lost"], 0)
        lines = "\n".join(checker.explain(h.ops, r))
        self.assertIn("probe", lines)

    def test_stale_strict_read(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.get(4, 5, "mt1", 5, strict=True)
        h.final(20, 21, "mt2", 8)
        self.assertFalse(h.check()["linearizable"])

    def test_two_cas_wins_on_one_revision(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8, p=1)
        h.move(4, 5, expect=5, cluster="mt3", rev=9, p=2)
        h.final(20, 21, "mt3", 9)
        self.assertFalse(h.check()["linearizable"])

    def test_retry_applied_twice(self):
        # The first attempt applied at 8; the retry (same request id) was not
        # deduplicated and came back ABORTED at the write's own revision.
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 6, expect=5, cluster="mt2", status="fail", code="Aborted", current=8)
        h.final(20, 21, "mt2", 8, history=[tomb("mt1", "mt2", 8)])
        self.assertFalse(h.check()["linearizable"])

    def test_phantom_local_read(self):
        h = H()
        h.create(0, 1, rev=5)
        h.get(2, 3, "mt3", 7, node=2)  # no write ever produced this
        h.final(20, 21, "mt1", 5)
        self.assertFalse(h.check()["linearizable"])

    def test_future_local_read(self):
        h = H()
        h.create(0, 1, rev=5)
        h.get(2, 3, "mt2", 8, node=2)  # returned before the write was even sent
        h.move(4, 5, expect=5, cluster="mt2", rev=8)
        h.final(20, 21, "mt2", 8)
        self.assertFalse(h.check()["linearizable"])

    def test_local_reads_going_back_on_one_node(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.get(4, 5, "mt2", 8, node=3)
        h.get(6, 7, "mt1", 5, node=3)
        h.final(20, 21, "mt2", 8)
        r = h.check()
        self.assertEqual(r["read_anomalies"], 1)
        self.assertFalse(r["ok"])

    def test_consistent_read_ahead_of_the_node_asked_is_not_a_regression(self):
        # A --consistent read sent to node 3 is answered by the leader,
        # which is ahead of node 3; node 3's next local read is older.
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", rev=8)
        h.get(4, 5, "mt2", 8, node=3, strict=True)
        h.get(6, 7, "mt1", 5, node=3)
        h.final(20, 21, "mt2", 8, history=[tomb("mt1", "mt2", 8)])
        r = h.check()
        self.assertEqual(r["read_anomalies"], 0)
        self.assertTrue(r["ok"])

    def test_failed_write_that_took_effect(self):
        h = H()
        h.create(0, 1, rev=5)
        h.move(2, 3, expect=5, cluster="mt2", status="fail", code="Aborted", current=5)  # nonsense reply
        h.final(20, 21, "mt1", 5)
        self.assertFalse(h.check()["linearizable"])


class Independence(unittest.TestCase):
    def test_tenants_are_checked_separately(self):
        a, b = H("a"), H("b")
        a.create(0, 1, rev=5)
        a.final(20, 21, "mt1", 5)
        b.create(0, 1, rev=6)
        b.move(2, 3, expect=6, cluster="mt2", rev=9)
        b.final(20, 21, "mt1", 6)  # b lost its move
        ops = a.ops + [dict(op, id=op["id"] + 100) for op in b.ops]
        r = checker.check(ops)
        self.assertTrue(r["tenants"]["a"]["linearizable"])
        self.assertFalse(r["tenants"]["b"]["linearizable"])
        self.assertEqual(r["lost"], 1)

    def test_larger_random_valid_history(self):
        import random
        rng = random.Random(7)
        h = H()
        h.create(0, 1, rev=5)
        rev, cluster, t, nextrev = 5, "mt1", 2.0, 6
        for i in range(400):
            kind = rng.random()
            if kind < 0.4:
                c = rng.choice(["mt1", "mt2", "mt3"])
                nextrev += rng.randint(1, 3)
                h.move(t, t + 0.5, expect=rev, cluster=c, rev=nextrev, p=i % 4)
                rev, cluster = nextrev, c
            elif kind < 0.6:
                h.move(t, t + 0.5, expect=rev - 1, cluster="mt1", status="fail", code="Aborted", current=rev, p=i % 4)
            elif kind < 0.7:
                h.move(t, None, expect=rev - 1, cluster="mt2", status="info", p=i % 4)
            else:
                h.probe(t, t + 0.5, current=rev, p=i % 4)
            t += 0.3  # overlaps with the previous op
        h.final(t + 10, t + 11, cluster, rev)
        r = h.check()
        self.assertTrue(r["linearizable"], checker.explain(h.ops, r))



class Batches(unittest.TestCase):
    """A batch's rows are checked with their tenants, and as one call."""

    def rows(self, atomic, results):
        """Two tenants created at 1 and 2; then one batch moving both, its
        rows' (status, rev, code) as given, and a final read of each."""
        a, b = H("a"), H("b")
        a.create(0, 0.5, rev=1)
        b.create(0, 0.5, rev=2)
        for h, expect, (status, rev, code) in zip((a, b), (1, 2), results):
            op = h.move(1, 2, expect=expect, cluster="mt2", rev=rev, status=status, code=code)
            op.update(batch=99, atomic=atomic)
        for h, (status, rev, _code), start in zip((a, b), results, (1, 2)):
            if status == "ok":
                h.final(5, 6, "mt2", rev, history=[tomb("mt1", "mt2", rev)])
            else:
                h.final(5, 6, "mt1", start)
        ops = a.ops + [dict(op, id=op["id"] + 100) for op in b.ops]
        return checker.check(ops)

    def test_rows_at_one_revision_pass(self):
        r = self.rows(False, [("ok", 5, None), ("ok", 5, None)])
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["batches"], 1)
        r = self.rows(False, [("ok", 5, None), ("fail", None, "NotFound")])
        self.assertTrue(r["ok"], r)

    def test_rows_at_two_revisions_fail(self):
        r = self.rows(False, [("ok", 5, None), ("ok", 6, None)])
        self.assertFalse(r["ok"])
        self.assertIn("revisions", r["batch_anomalies"][0]["why"])

    def test_an_atomic_batch_in_part_fails(self):
        r = self.rows(True, [("ok", 5, None), ("fail", None, "NotFound")])
        self.assertFalse(r["ok"])
        self.assertIn("in part", r["batch_anomalies"][0]["why"])
        r = self.rows(True, [("fail", None, "NotApplied"), ("fail", None, "NotFound")])
        self.assertTrue(r["ok"], r)


if __name__ == "__main__":
    unittest.main()
