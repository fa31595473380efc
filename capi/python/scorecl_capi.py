"""NumPy wrapper of scorecl's C ABI (capi/include/scorecl.h) through ctypes.

    import numpy as np, scorecl_capi as sc
    lib = sc.load("target/release/libscorecl_capi.so")
    w, stats = lib.score_weights(s1, s2)            # s1, s2: (n, dim) score fields
    loss, g1, g2 = lib.simclr(z1, z2, weights=w)    # value and gradient

In a PyTorch loop: compute the two views' score fields with your score
network (no gradient), get `w` here, then scale each pair's loss by `w`
(or call the loss here and feed `g1`, `g2` to `z1.backward(...)`).
"""

import ctypes
from ctypes import POINTER, c_char_p, c_float, c_int32, c_size_t, c_uint32, c_uint64

import numpy as np

_F = POINTER(c_float)
_U = POINTER(c_uint32)

_SIGNATURES = {
    "scorecl_last_error": (c_size_t, [c_char_p, c_size_t]),
    "scorecl_score_weights": (
        c_int32,
        [_F, _F, c_size_t, c_size_t, c_int32, c_float, c_float, c_float, c_uint64, c_uint64, _F, _F],
    ),
    "scorecl_weights_from_statistics": (
        c_int32,
        [_F, _F, c_size_t, c_int32, c_float, c_float, c_float, c_uint64, c_uint64, _F],
    ),
    "scorecl_simclr": (c_int32, [_F, _F, c_size_t, c_size_t, _F, c_float, _F, _F, _F]),
    "scorecl_simsiam": (c_int32, [_F, _F, _F, _F, c_size_t, c_size_t, _F, _F, _F, _F]),
    "scorecl_wmse": (c_int32, [_F, _F, c_size_t, c_size_t, _F, c_float, c_size_t, _F, _F, _F]),
    "scorecl_vicreg": (
        c_int32,
        [_F, _F, c_size_t, c_size_t, _F, c_float, c_float, c_float, _F, _F, _F],
    ),
    "scorecl_knn_vote": (c_int32, [_F, _U, c_size_t, c_size_t, c_float, _F, _U]),
    "scorecl_knn_predict": (
        c_int32,
        [_F, _U, c_size_t, _F, c_size_t, c_size_t, c_size_t, c_size_t, c_float, _U],
    ),
}

MODES = {"uniform": 0, "score": 1, "shuffled": 2}


class ScoreClError(RuntimeError):
    """A call returned a negative code; the message names the argument."""


def _f32(a, name):
    a = np.ascontiguousarray(a, dtype=np.float32)
    return a


def _fp(a):
    return None if a is None else a.ctypes.data_as(_F)


def _up(a):
    return a.ctypes.data_as(_U)


class Lib:
    def __init__(self, path):
        self._lib = ctypes.CDLL(str(path))
        for name, (res, args) in _SIGNATURES.items():
            fn = getattr(self._lib, name)
            fn.restype, fn.argtypes = res, args

    def last_error(self):
        n = self._lib.scorecl_last_error(None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        self._lib.scorecl_last_error(buf, n + 1)
        return buf.value.decode()

    def _check(self, code, what):
        if code != 0:
            raise ScoreClError(f"{what}: code {code}: {self.last_error()}")

    def score_weights(self, s1, s2, mode="score", gamma=1.0, alpha=1.0, w_max=5.0, seed=0, step=0):
        s1, s2 = _f32(s1, "s1"), _f32(s2, "s2")
        n = s1.shape[0]
        dim = s1.size // max(n, 1)
        if s2.shape != s1.shape:
            raise ValueError(f"s2 shape {s2.shape} != s1 shape {s1.shape}")
        w, st = np.empty(n, np.float32), np.empty(2 * n, np.float32)
        code = self._lib.scorecl_score_weights(
            _fp(s1), _fp(s2), n, dim, MODES[mode], gamma, alpha, w_max, seed, step, _fp(w), _fp(st)
        )
        self._check(code, "score_weights")
        return w, st

    def weights_from_statistics(self, a, b, mode="score", gamma=1.0, alpha=1.0, w_max=5.0, seed=0, step=0):
        a, b = _f32(a, "a"), _f32(b, "b")
        n = a.shape[0]
        if b.shape != a.shape:
            raise ValueError(f"stat_b shape {b.shape} != stat_a shape {a.shape}")
        w = np.empty(n, np.float32)
        code = self._lib.scorecl_weights_from_statistics(
            _fp(a), _fp(b), n, MODES[mode], gamma, alpha, w_max, seed, step, _fp(w)
        )
        self._check(code, "weights_from_statistics")
        return w

    def _pair(self, z1, z2):
        z1, z2 = _f32(z1, "z1"), _f32(z2, "z2")
        if z1.ndim != 2 or z1.shape != z2.shape:
            raise ValueError(f"z1 {z1.shape} and z2 {z2.shape} must be equal (n, d)")
        return z1, z2, z1.shape[0], z1.shape[1]

    def _w(self, weights, n):
        if weights is None:
            return None
        w = _f32(weights, "weights")
        if w.shape != (n,):
            raise ValueError(f"weights shape {w.shape}, expected ({n},)")
        return w

    def simclr(self, z1, z2, weights=None, temperature=0.2):
        z1, z2, n, d = self._pair(z1, z2)
        w = self._w(weights, n)
        g1, g2, loss = np.empty_like(z1), np.empty_like(z2), np.empty(1, np.float32)
        code = self._lib.scorecl_simclr(_fp(z1), _fp(z2), n, d, _fp(w), temperature, _fp(g1), _fp(g2), _fp(loss))
        self._check(code, "simclr")
        return float(loss[0]), g1, g2

    def simsiam(self, p1, p2, z1, z2, weights=None):
        p1, p2, n, d = self._pair(p1, p2)
        z1, z2, _, _ = self._pair(z1, z2)
        w = self._w(weights, n)
        g1, g2, loss = np.empty_like(p1), np.empty_like(p2), np.empty(1, np.float32)
        code = self._lib.scorecl_simsiam(
            _fp(p1), _fp(p2), _fp(z1), _fp(z2), n, d, _fp(w), _fp(g1), _fp(g2), _fp(loss)
        )
        self._check(code, "simsiam")
        return float(loss[0]), g1, g2

    def wmse(self, z1, z2, weights=None, eps=0.0, w_size=128):
        z1, z2, n, d = self._pair(z1, z2)
        w = self._w(weights, n)
        g1, g2, loss = np.empty_like(z1), np.empty_like(z2), np.empty(1, np.float32)
        code = self._lib.scorecl_wmse(_fp(z1), _fp(z2), n, d, _fp(w), eps, w_size, _fp(g1), _fp(g2), _fp(loss))
        self._check(code, "wmse")
        return float(loss[0]), g1, g2

    def vicreg(self, z1, z2, weights=None, sim_coeff=25.0, std_coeff=25.0, cov_coeff=1.0):
        z1, z2, n, d = self._pair(z1, z2)
        w = self._w(weights, n)
        g1, g2, loss = np.empty_like(z1), np.empty_like(z2), np.empty(4, np.float32)
        code = self._lib.scorecl_vicreg(
            _fp(z1), _fp(z2), n, d, _fp(w), sim_coeff, std_coeff, cov_coeff, _fp(g1), _fp(g2), _fp(loss)
        )
        self._check(code, "vicreg")
        return loss.copy(), g1, g2

    def knn_vote(self, sims, labels, classes, temperature=0.1):
        sims = _f32(sims, "sims")
        labels = np.ascontiguousarray(labels, dtype=np.uint32)
        scores, pred = np.empty(classes, np.float32), np.empty(1, np.uint32)
        code = self._lib.scorecl_knn_vote(_fp(sims), _up(labels), sims.size, classes, temperature, _fp(scores), _up(pred))
        self._check(code, "knn_vote")
        return int(pred[0]), scores

    def knn_predict(self, train, train_labels, test, classes, k=200, temperature=0.1):
        train, test = _f32(train, "train"), _f32(test, "test")
        labels = np.ascontiguousarray(train_labels, dtype=np.uint32)
        preds = np.empty(test.shape[0], np.uint32)
        code = self._lib.scorecl_knn_predict(
            _fp(train), _up(labels), train.shape[0], _fp(test), test.shape[0], train.shape[1],
            classes, k, temperature, _up(preds),
        )
        self._check(code, "knn_predict")
        return preds


def load(path):
    """Loads the library built by `cargo build --release -p scorecl-capi`."""
    return Lib(path)
