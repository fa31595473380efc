"""Calls every function of scorecl's C ABI from Python through ctypes on
NumPy arrays, checks what Python can check on its own (weights' mean,
a finite-difference gradient, the error messages), and writes inputs and
outputs to a folder for capi/tests/python.rs, which recomputes each output
with scorecl-core in Rust and compares.

    python3 capi/python/test_ctypes.py LIBRARY OUT_DIR
"""

import json
import os
import sys
from ctypes import c_float

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import scorecl_capi as sc  # noqa: E402


def main(lib_path, out):
    lib = sc.load(lib_path)
    os.makedirs(out, exist_ok=True)
    manifest = {}

    def save(name, a, dtype=np.float32):
        a = np.ascontiguousarray(a, dtype=dtype)
        a.tofile(os.path.join(out, name + (".u32" if dtype == np.uint32 else ".f32")))
        manifest[name] = list(a.shape)
        return a

    rng = np.random.default_rng(7)
    n, dim, d = 16, 48, 8
    s1 = save("s1", rng.normal(size=(n, dim)))
    s2 = save("s2", s1 * (1.0 + np.arange(n)[:, None] / 8.0))
    w, st = lib.score_weights(s1, s2, alpha=0.5)
    save("w_score", w)
    save("stats", st)
    # Python's own checks: S = |s|/sqrt(dim), weights of mean 1 (no clamp hit).
    assert np.allclose(st[:n], np.linalg.norm(s1, axis=1) / np.sqrt(dim), rtol=1e-5), st
    assert abs(w.mean() - 1.0) < 1e-5 and w.max() < 5.0, w
    save("w_shuffled", lib.score_weights(s1, s2, mode="shuffled", alpha=0.5, seed=3, step=5)[0])
    save("w_stats", lib.weights_from_statistics(st[:n], st[n:], gamma=2.0, w_max=3.0))

    z1 = save("z1", rng.normal(size=(n, d)))
    z2 = save("z2", z1 + 0.3 * rng.normal(size=(n, d)))
    loss, g1, g2 = lib.simclr(z1, z2, weights=w, temperature=0.5)
    manifest["simclr_loss"] = loss
    save("simclr_g1", g1)
    save("simclr_g2", g2)
    # A central difference on three coordinates of z1 (float32 library, so
    # a coarse step and tolerance).
    for (i, j) in [(0, 0), (5, 3), (15, 7)]:
        h = 1e-2
        zp, zm = z1.copy(), z1.copy()
        zp[i, j] += h
        zm[i, j] -= h
        fd = (lib.simclr(zp, z2, weights=w, temperature=0.5)[0]
              - lib.simclr(zm, z2, weights=w, temperature=0.5)[0]) / (2 * h)
        assert abs(fd - g1[i, j]) <= 2e-3 + 2e-2 * abs(g1[i, j]), (i, j, fd, g1[i, j])
    unweighted = lib.simclr(z1, z2, temperature=0.5)[0]
    manifest["simclr_unweighted"] = unweighted

    p1 = save("p1", rng.normal(size=(n, d)))
    p2 = save("p2", rng.normal(size=(n, d)))
    loss, g1, g2 = lib.simsiam(p1, p2, z1, z2, weights=w)
    manifest["simsiam_loss"] = loss
    save("simsiam_g1", g1)
    save("simsiam_g2", g2)

    loss, g1, g2 = lib.wmse(z1, z2, weights=w, eps=0.1, w_size=8)
    manifest["wmse_loss"] = loss
    save("wmse_g1", g1)
    save("wmse_g2", g2)

    terms, g1, g2 = lib.vicreg(z1, z2, weights=w)
    manifest["vicreg_terms"] = [float(t) for t in terms]
    save("vicreg_g1", g1)
    save("vicreg_g2", g2)

    sims = save("sims", rng.uniform(-1, 1, size=10))
    labels = save("labels", rng.integers(0, 3, size=10), np.uint32)
    pred, scores = lib.knn_vote(sims, labels, 3, temperature=0.1)
    manifest["vote_pred"] = pred
    save("vote_scores", scores)

    train = save("train", rng.normal(size=(40, d)))
    train_labels = save("train_labels", rng.integers(0, 4, size=40), np.uint32)
    test = save("test", rng.normal(size=(12, d)))
    save("preds", lib.knn_predict(train, train_labels, test, 4, k=5, temperature=0.1), np.uint32)

    # Errors: a code and a message naming the argument, never a crash.
    def raises(fn, needle):
        try:
            fn()
        except sc.ScoreClError as e:
            assert needle in str(e), (needle, str(e))
            return str(e)
        raise AssertionError(f"no error (wanted one naming {needle!r})")

    raises(lambda: lib.simclr(z1, z2, temperature=0.0), "temperature")
    raises(lambda: lib.wmse(z1, z2, w_size=5), "w_size")
    raises(lambda: lib.knn_vote(sims, labels, 2), "labels")
    raw = lib._lib
    out_w = np.empty(n, np.float32)
    code = raw.scorecl_score_weights(None, sc._fp(s2), n, dim, 1, 1.0, 1.0, 5.0, 0, 0, sc._fp(out_w), None)
    assert code == -1 and "s1 is NULL" in lib.last_error(), (code, lib.last_error())
    code = raw.scorecl_score_weights(sc._fp(s1), sc._fp(s2), n, dim, 7, 1.0, 1.0, 5.0, 0, 0, sc._fp(out_w), None)
    assert code == -2 and "mode 7" in lib.last_error(), (code, lib.last_error())
    # A success clears the message.
    lib.simclr(z1, z2)
    assert lib.last_error() == ""

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"ctypes: {len(manifest)} arrays and values written to {out}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
