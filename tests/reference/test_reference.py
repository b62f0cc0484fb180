#!/usr/bin/env python3
"""Self-checks of the numpy reference (no pytest needed).

Run: /usr/bin/python3 tests/reference/test_reference.py   (exits non-zero on failure)
 or: cd tests/reference && /usr/bin/python3 -m unittest test_reference
"""

import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import exit_policy as xp  # noqa: E402
import looped_moe as lm  # noqa: E402
import safetensors_io as st  # noqa: E402
from fixture_configs import fixture_config, init_weights  # noqa: E402


def small_model(overrides=None, seed=0, fixture="base"):
    raw, _, _ = fixture_config(fixture)
    raw.update(overrides or {})
    w = init_weights(raw, seed)
    return lm.Model(lm.complete_config(raw), w), raw, w


IDS = [3, 17, 5, 90, 41, 7]


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_all_dtypes(self):
        rng = np.random.default_rng(1)
        t = {"a.f32": rng.standard_normal((3, 5)).astype(np.float32),
             "b.f16": rng.standard_normal((4,)).astype(np.float16),
             "c.i32": rng.integers(-9, 9, (2, 3)).astype(np.int32),
             "d.i64": rng.integers(-2**40, 2**40, (5,)).astype(np.int64),
             "e.bf16": rng.standard_normal((2, 2, 3)).astype(np.float32),
             "f.scalar": np.array(2.5, dtype=np.float32)}
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "x.safetensors")
            st.save_file(p, t, dtypes={"e.bf16": "BF16"}, metadata={"format": "pt"})
            back, dts = st.load_file(p, with_dtypes=True)
            _, meta, start = st.read_header(p)
            self.assertEqual(start % 8, 0)
        self.assertEqual(meta, {"format": "pt"})
        self.assertEqual(dts, {"a.f32": "F32", "b.f16": "F16", "c.i32": "I32", "d.i64": "I64",
                               "e.bf16": "BF16", "f.scalar": "F32"})
        for k in t:
            want = st.round_to_dtype(t[k], "BF16") if k == "e.bf16" else t[k]
            np.testing.assert_array_equal(back[k], want)
            self.assertEqual(back[k].shape, t[k].shape)
        self.assertLess(np.max(np.abs(back["e.bf16"] - t["e.bf16"]) /
                               np.abs(t["e.bf16"])), 2.0 ** -8)

    def test_bf16_round_to_nearest_even(self):
        one_ulp = 2.0 ** -7  # bf16 spacing at 1.0
        x = np.array([1.0, 1 + one_ulp / 2, 1 + 3 * one_ulp / 2, 1 + one_ulp / 2 + 2 ** -20,
                      -1 - one_ulp / 2, 3.0e38, np.inf, -np.inf], dtype=np.float32)
        want = np.array([1.0, 1.0, 1 + 2 * one_ulp, 1 + one_ulp, -1.0,
                         np.float32(3.0e38), np.inf, -np.inf], dtype=np.float32)
        got = st.round_to_dtype(x, "BF16")
        np.testing.assert_array_equal(got[:5], want[:5])
        self.assertTrue(np.isinf(got[5]) or abs(got[5] - 3.0e38) / 3.0e38 < 2 ** -8)
        np.testing.assert_array_equal(got[6:], want[6:])
        self.assertTrue(np.isnan(st.round_to_dtype(np.array([np.nan], np.float32), "BF16")[0]))
        self.assertEqual(st.f32_to_bf16_bits(np.array([1.0], np.float32))[0], 0x3F80)

    def test_sharded_checkpoint(self):
        _, raw, w = small_model()
        with tempfile.TemporaryDirectory() as d:
            st.save_sharded(d, w, 2)
            with open(os.path.join(d, "config.json"), "w") as f:
                json.dump(raw, f)
            self.assertEqual(len([f for f in os.listdir(d) if f.startswith("model-")]), 2)
            back = st.load_checkpoint(d)
            m = lm.load(d)
        self.assertEqual(set(back), set(w))
        for k in w:
            np.testing.assert_array_equal(back[k], w[k])
        self.assertEqual(m.cfg["num_loops"], raw["num_loops"])


class ModelTest(unittest.TestCase):
    def test_strict_weights(self):
        _, raw, w = small_model()
        cfg = lm.complete_config(raw)
        bad = dict(w)
        bad["model.recurrent.1.mlp.gate.weight"] = np.zeros((4, 47), np.float32)
        with self.assertRaisesRegex(ValueError, r"recurrent\.1\.mlp\.gate\.weight: "
                                                r"expected \[4, 48\], found \[4, 47\]"):
            lm.Model(cfg, bad)
        bad = dict(w)
        del bad["model.norm.weight"]
        bad["model.extra"] = np.zeros(2, np.float32)
        with self.assertRaisesRegex(ValueError, "model.norm.weight: missing.*model.extra"):
            lm.Model(cfg, bad)

    def test_zero_up_adaln_equals_plain_block(self):
        m_ada, raw, w = small_model({"iter_adaln_rank": 8}, seed=3)
        for i in range(raw["num_recurrent_layers"]):
            w[f"model.recurrent.{i}.adaln.up.weight"][:] = 0
            w[f"model.recurrent.{i}.adaln.up.bias"][:] = 0
        m_ada = lm.Model(lm.complete_config(raw), w)
        plain_raw = dict(raw, iter_adaln_rank=0)
        plain_w = {k: v for k, v in w.items() if ".adaln." not in k}
        m_plain = lm.Model(lm.complete_config(plain_raw), plain_w)
        a = m_ada.score(lm.Sequence(m_ada), IDS)
        b = m_plain.score(lm.Sequence(m_plain), IDS)
        np.testing.assert_array_equal(a["exit_logits"], b["exit_logits"])
        np.testing.assert_array_equal(a["hidden"], b["hidden"])
        # ... and a non-zero up does change things.
        m_nz, _, _ = small_model({"iter_adaln_rank": 8}, seed=3)
        c = m_nz.score(lm.Sequence(m_nz), IDS)
        self.assertGreater(np.abs(c["exit_logits"] - a["exit_logits"]).max(), 1e-3)

    def test_looped_equals_unrolled(self):
        over = {"num_prelude_layers": 1, "num_coda_layers": 1, "num_loops": 3,
                "iter_adaln_rank": 0}
        m, raw, w = small_model(over, seed=4)
        R, L = raw["num_recurrent_layers"], raw["num_loops"]
        un_raw = dict(raw, num_recurrent_layers=R * L, num_loops=1)
        un_w = {k: v for k, v in w.items() if not k.startswith("model.recurrent.")}
        for j in range(R * L):
            src = f"model.recurrent.{j % R}."
            for k, v in w.items():
                if k.startswith(src):
                    un_w[f"model.recurrent.{j}." + k[len(src):]] = v
        un = lm.Model(lm.complete_config(un_raw), un_w)
        a = m.score(lm.Sequence(m), IDS)
        b = un.score(lm.Sequence(un), IDS)
        np.testing.assert_allclose(a["exit_logits"][L - 1], b["exit_logits"][0],
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(a["hidden"][L - 1], b["hidden"][0], rtol=1e-12, atol=1e-12)
        for t in range(L):
            for i in range(R):
                np.testing.assert_array_equal(a["routers"][("recurrent", i, t)],
                                              b["routers"][("recurrent", t * R + i, 0)])

    def test_router_ties_go_to_lower_index(self):
        s = np.array([0.1, 0.3, 0.2, 0.3, 0.3])
        np.testing.assert_array_equal(lm.topk_lower_index(s, 2), [1, 3])
        np.testing.assert_array_equal(lm.topk_lower_index(s, 4), [1, 3, 4, 2])
        m, raw, w = small_model(seed=5)
        g = w["model.recurrent.0.mlp.gate.weight"]
        g[3] = g[1]  # experts 1 and 3 score identically for every input
        m = lm.Model(lm.complete_config(raw), w)
        x = np.ones(raw["hidden_size"]) * np.sign(g[1]) * 1.0
        _, top = m.moe("model.recurrent.0.", x)
        self.assertEqual(list(top), [1, 3])
        m.cfg["num_experts_per_tok"] = 1
        _, top = m.moe("model.recurrent.0.", x)
        self.assertEqual(list(top), [1])

    def test_scoring_matches_sequential_full_depth(self):
        for fixture in ("base", "prelude_coda", "bf16"):
            m, raw, _ = small_model(seed=6, fixture=fixture)
            L, T = m.L, len(IDS)
            sc = m.score(lm.Sequence(m), IDS)
            seq = lm.Sequence(m)
            full = xp.Policy("never", 0.0, 1, L, "reuse")
            for j, tok in enumerate(IDS):
                r = xp.decode_step(m, seq, tok, full)
                np.testing.assert_array_equal(r.logits, sc["exit_logits"][L - 1, j])
                self.assertEqual(r.flops_done, r.flops_full)
            # Intermediate rows are probes: z_t of the last position over final coda K/V.
            prefix = lm.Sequence(m)
            m.score(prefix, IDS[:-1])
            for t in range(L):
                r = xp.decode_step(m, prefix.copy(), IDS[-1], xp.Policy("never", 0, 1, t + 1))
                np.testing.assert_allclose(r.logits, sc["exit_logits"][t, T - 1], atol=1e-12)


class RopeTest(unittest.TestCase):
    def test_rotate_half_values_and_relative_positions(self):
        x = np.array([[1.0, 2.0, 3.0, 4.0]])
        inv = np.array([1.0, 10000.0 ** -0.5])  # theta^(-2i/d), i = 0, 1, d = 4
        c, s = np.cos(5 * inv), np.sin(5 * inv)
        want = [1 * c[0] - 3 * s[0], 2 * c[1] - 4 * s[1], 3 * c[0] + 1 * s[0], 4 * c[1] + 2 * s[1]]
        np.testing.assert_allclose(lm.rope(x, 5, 10000.0)[0], want, atol=1e-15)
        rng = np.random.default_rng(0)
        q, k = rng.standard_normal((1, 16)), rng.standard_normal((1, 16))
        a = lm.rope(q, 9, 500.0) @ lm.rope(k, 4, 500.0).T
        b = lm.rope(q, 25, 500.0) @ lm.rope(k, 20, 500.0).T
        np.testing.assert_allclose(a, b, atol=1e-12)


class FixtureTest(unittest.TestCase):
    def test_fixtures_are_deterministic(self):
        import make_fixtures
        outs = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as d:
                make_fixtures.make_fixture("vanilla", d)
                with open(os.path.join(d, "vanilla", "golden.json")) as f:
                    g = f.read()
                with open(os.path.join(d, "vanilla", "golden.safetensors"), "rb") as f:
                    outs.append((g, f.read()))
        self.assertEqual(outs[0], outs[1])
        cases = json.loads(outs[0][0])["cases"]
        self.assertTrue(all(len(c["tokens"]) == c["max_tokens"] == len(c["exit_loops"])
                            for c in cases))


class ExitTest(unittest.TestCase):
    def _prefilled(self, over=None, fixture="base"):
        m, _, _ = small_model(over, seed=7, fixture=fixture)
        seq = lm.Sequence(m)
        m.score(seq, IDS)
        return m, seq

    def test_reuse_vs_propagate(self):
        m, seq = self._prefilled({"iter_adaln_rank": 8})
        L, R, p = m.L, m.cfg["num_recurrent_layers"], seq.pos
        runs = {}
        for fill in xp.KV_FILLS:
            s = seq.copy()
            r = xp.decode_step(m, s, 11, xp.Policy("never", 0, 1, 1, fill))
            self.assertEqual(r.exit_loop, 0)
            runs[fill] = (s, r)
        (sr, rr), (sp, rp) = runs["reuse"], runs["propagate"]
        np.testing.assert_array_equal(rr.logits, rp.logits)  # the exit itself is the same
        for i in range(R):
            np.testing.assert_array_equal(sr.cache.read(("recurrent", i, 0), p)[0],
                                          sp.cache.read(("recurrent", i, 0), p)[0])
            for t in range(1, L):
                kr, _ = sr.cache.read(("recurrent", i, t), p)
                kp, _ = sp.cache.read(("recurrent", i, t), p)
                np.testing.assert_array_equal(kr, sr.cache.read(("recurrent", i, 0), p)[0])
                self.assertGreater(np.abs(kr - kp).max(), 1e-6)
        s1 = seq.copy()  # exit at loop 1: reuse copies instance (i, 1), not (i, 0)
        xp.decode_step(m, s1, 11, xp.Policy("never", 0, 1, 2, "reuse"))
        for i in range(R):
            k1 = s1.cache.read(("recurrent", i, 1), p)[0]
            self.assertGreater(np.abs(k1 - s1.cache.read(("recurrent", i, 0), p)[0]).max(), 1e-6)
            for t in range(2, L):
                np.testing.assert_array_equal(s1.cache.read(("recurrent", i, t), p)[0], k1)
        full = xp.Policy("never", 0, 1, L)
        nr = xp.decode_step(m, sr, rr.token, full)
        np_ = xp.decode_step(m, sp, rr.token, full)
        self.assertGreater(np.abs(nr.logits - np_.logits).max(), 1e-6)
        # A full-depth token fills nothing: both modes agree.
        a = xp.decode_step(m, seq.copy(), 11, xp.Policy("never", 0, 1, L, "reuse"))
        b = xp.decode_step(m, seq.copy(), 11, xp.Policy("never", 0, 1, L, "propagate"))
        np.testing.assert_array_equal(a.logits, b.logits)
        self.assertEqual(a.flops_done, b.flops_done)

    def test_propagate_is_projection_of_h_e(self):
        m, seq = self._prefilled()
        p, s = seq.pos, seq.copy()
        scratch = seq.copy().cache  # h_e needs the prompt's K/V
        h = m.loop(0, m.prelude(11, p, scratch), p, scratch)
        xp.decode_step(m, s, 11, xp.Policy("never", 0, 1, 1, "propagate"))
        x = lm.rmsnorm(h, m.w["model.recurrent.1.input_layernorm.weight"], m.eps)
        k, v = m.kv_proj("model.recurrent.1.", x, p)
        for t in range(1, m.L):
            kk, vv = s.cache.read(("recurrent", 1, t), p)
            np.testing.assert_allclose(kk, k, atol=1e-12)
            np.testing.assert_allclose(vv, v, atol=1e-12)

    def test_exit_rules_and_flops(self):
        m, seq = self._prefilled({"exit_gate": True})
        L = m.L
        for crit in xp.CRITERIA:
            for mn in (1, 2):
                for tau in {"max_prob": (0.0, 1.1), "margin": (0.0, 1.1),
                            "entropy": (100.0, -1.0), "kl": (1e9, -1.0),
                            "top1_stable": (0.0, 99), "hidden_cosine": (-2.0, 2.0),
                            "gate": (0.0, 2.0), "never": (0.0,)}[crit]:
                    pol = xp.Policy(crit, tau, mn, L)
                    r = xp.decode_step(m, seq.copy(), 11, pol)
                    always = crit != "never" and tau in (0.0, 100.0, 1e9, -2.0)
                    want = (mn - 1 + (crit in ("kl", "hidden_cosine") and mn == 1)
                            if always else L - 1)
                    self.assertEqual(r.exit_loop, want, (crit, mn, tau))
                    self.assertEqual(r.head_loops, xp.head_boundaries(pol, r.exit_loop))
                    if crit == "never":
                        self.assertEqual(r.flops_done, r.flops_full)
        cfg = m.cfg
        pol = xp.Policy("max_prob", 0.5, 1, L, "propagate")
        p = seq.pos
        n_head = xp.head_flops(cfg, p + 1)
        self.assertEqual(xp.flops_done(cfg, p, pol, L - 1) - xp.flops_full(cfg, p),
                         (L - 1) * n_head)

    def test_gate_cdf(self):
        F = lm.gate_cdf([0.2, 0.5, 1.0])
        np.testing.assert_allclose(F, [0.2, 0.6, 1.0])


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    sys.exit(0 if result.wasSuccessful() else 1)
