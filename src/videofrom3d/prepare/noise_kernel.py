"""Compiled CPU kernel of the Go-with-the-Flow noise warper (numba): the same steps, the same random draws in
the same order and the same float rounding as the vectorised warper in :mod:`noise_warp`, so it gives the
same bytes for the same seed (``tests/test_noise_reference.py`` checks both against a per-cell loop). With a
:class:`CounterRNG` (``[noise] rng = "fast"``) the draws are its own and fresh cells stay virtual until
read (below); the same test checks that path against the loop with injected rows.

Why it is faster: the vectorised warper moves all C noise values of every cell every step (two ~350 MB
passes per step at the paper's grid) and builds a dozen (N,) int64 temporaries. Here the noise is moved
lazily. The state is ``store`` (rows of C values) plus ``idx`` (N,) int32, the store row that holds each
cell's noise. A plain move (one particle, the source's only use) copies one int32 index; only the few cells
that are re-Gaussianised, merged or fresh get a new row appended to the store. The noise is gathered into
a dense (N, C) array (and the appended rows dropped) only at latent keyframes and when the store is full.
Weights (4 bytes a cell) are moved eagerly, since their sum is taken every step.

Floating point follows the vectorised warper operation by operation: float32 ops are rounded to float32
one at a time (numba without fastmath never fuses them), group and merge sums accumulate in float64 in
the order numpy's ``bincount`` adds them (use order), and the weight sums that decide the fresh weight are
left to numpy (its pairwise sum).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from numba import njit, prange

_TINY = np.float32(1e-30)  # a use's weight never underflows to 0 (see noise_warp step 3)

# --------------------------------------------------------------------------------------------------------
# counter-based normals (the "fast" rng): row ``key`` of C values is a pure function of (seed, key), so a
# fresh cell can hold its key instead of its values (a *virtual* store row, idx >= VBASE) and the values
# are made only when something reads them; the bytes do not depend on the thread count or on when they
# are made. Each row is a splitmix64 stream started at a hash of (seed, key); each value is one 64-bit
# output through a 128-layer ziggurat (Marsaglia & Tsang 2000; 7 bits pick the layer, 1 the sign, 53 the
# magnitude, so layer and value are independent bits).

VBASE = 1 << 30  # store indices >= VBASE are virtual rows: key = epoch + (index - VBASE)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def _ziggurat_tables(layers: int = 128):
    """Edges ``x`` and densities ``f`` of the ziggurat's layers, as scale ``w = x / 2**53`` and acceptance
    bound ``k`` (53-bit integers below which a draw lies inside the layer's rectangle core)."""
    r, v = 3.442619855899, 9.91256303526217e-3  # tail start and layer area of the 128-layer ziggurat
    m = 2.0**53
    k, w, f = np.zeros(layers), np.zeros(layers), np.zeros(layers)
    q = v / math.exp(-0.5 * r * r)
    k[0], w[0], w[-1] = (r / q) * m, q / m, r / m
    f[0], f[-1] = 1.0, math.exp(-0.5 * r * r)
    dn = tn = r
    for i in range(layers - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(v / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = (dn / tn) * m
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w, f, r


_ZK, _ZW, _ZF, _ZR = _ziggurat_tables()


@njit(cache=True, nogil=True)
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True, nogil=True)
def _uniform(state):
    """(new state, U in (0, 1))."""
    state = state + _GOLDEN
    return state, (np.float64(_mix(state) >> np.uint64(11)) + 0.5) * (1.0 / 2.0**53)


@njit(cache=True, nogil=True)
def _normal_row(seed, key, out):
    """``out`` (C,) float32 = N(0, 1) row ``key`` of the stream ``seed`` (uint64)."""
    state = _mix(seed ^ _mix(np.uint64(key) + _GOLDEN))
    for c in range(out.shape[0]):
        while True:
            state = state + _GOLDEN
            u = _mix(state)
            iz = np.int64(u & np.uint64(127))
            neg = (u >> np.uint64(7)) & np.uint64(1)
            j = np.float64(u >> np.uint64(11))
            if j < _ZK[iz]:
                x = j * _ZW[iz]
                break
            if iz == 0:  # the tail beyond r (Marsaglia's exponential rejection)
                while True:
                    state, u1 = _uniform(state)
                    state, u2 = _uniform(state)
                    t = -math.log(u1) / _ZR
                    if -2.0 * math.log(u2) > t * t:
                        break
                x = _ZR + t
                break
            x = j * _ZW[iz]
            state, u1 = _uniform(state)
            if _ZF[iz] + u1 * (_ZF[iz - 1] - _ZF[iz]) < math.exp(-0.5 * x * x):
                break
        out[c] = np.float32(-x if neg else x)


@njit(cache=True, nogil=True)
def _value_row(seed, epoch, table, key, out):
    """Row ``key`` of the draws: ``table[key]`` when a table is injected (tests), else counter-based."""
    if table.shape[0]:
        out[:] = table[key]
    else:
        _normal_row(seed, key, out)


@njit(cache=True, nogil=True, parallel=True)
def fill_rows(seed, table, key0, out):
    """``out[i]`` = draw row ``key0 + i`` for every row of ``out`` (R, C) (parallel; the same bytes on any
    number of threads)."""
    for i in prange(out.shape[0]):
        _value_row(seed, 0, table, key0 + i, out[i])


@njit(cache=True, nogil=True)
def _read_row(store, r, seed, epoch, table, tmp):
    """Store row ``r``, made from its key when it is virtual (into ``tmp``)."""
    if r >= VBASE:
        _value_row(seed, epoch, table, epoch + (r - VBASE), tmp)
        return tmp
    return store[r]


@njit(cache=True, nogil=True)
def displacement(flow, valid, g, dy, dx, ok):
    """Video-pixel flow (h, w, 2) = (dx, dy) float32 in pixels and ``valid`` (h, w) bool -> the displacement
    in cells ``floor(g f + 0.5)`` (int64) and ``ok`` = valid and finite, exactly as ``noise_warp``'s
    ``_round_disp(flow * g)`` (float32 product, float64 rounding; non-finite -> 0) does it."""
    h, w = ok.shape
    scale = np.float32(g)
    for y in range(h):
        for x in range(w):
            fx = flow[y, x, 0]
            fy = flow[y, x, 1]
            ok[y, x] = valid[y, x] and math.isfinite(fx) and math.isfinite(fy)
            dx[y, x] = _round_cell(np.float32(fx * scale))
            dy[y, x] = _round_cell(np.float32(fy * scale))


@njit(cache=True, nogil=True)
def _round_cell(f):
    if not math.isfinite(f):
        return 0
    r = np.floor(np.float64(f) + 0.5)
    return int(min(max(r, -(2.0**30)), 2.0**30))


@njit(cache=True, nogil=True)
def _target(p, height, width, g, dy, dx, ok):
    """Target cell of source p's particle, or -1 (invalid flow, or it leaves the grid)."""
    y = p // width
    x = p - y * width
    vy = y // g
    vx = x // g
    if not ok[vy, vx]:
        return -1
    ty = y + dy[vy, vx]
    tx = x + dx[vy, vx]
    if ty < 0 or ty >= height or tx < 0 or tx >= width:
        return -1
    return ty * width + tx


@njit(cache=True, nogil=True)
def _contract_expand(dy, dx, ok, g, arrivals, copies, copied, gather_src, gather_dst, fresh):
    """Steps 1 and 2 (counts only). ``dy``/``dx`` (h, w) int64 displacement in cells and ``ok`` (h, w) bool
    per video pixel (each covers g x g cells). Fills ``arrivals`` (N,) uint8 (saturating at 2), ``copies``
    (N,) int32 gather copies per source and ``copied`` (N,) uint8, whether it has any (both all 0 on
    entry; a flag array is 4x less to read in the plain pass), the gather list (target order) and ``fresh``: disocclusions whose
    own flow is invalid or whose source is off the grid from the front, those whose source's flow is
    invalid from the back (both in target order). Returns (n_gather, n_fresh_front, n_fresh_back,
    n_multi, bound): targets with >= 2 arrivals, and an upper bound on the targets that need a new row."""
    h, w = dy.shape
    height, width = h * g, w * g
    n = height * width
    arrivals[:] = 0  # copies is all 0 on entry (_special_uses resets the entries it used)
    ones = 0
    n_multi = 0
    for y in range(height):
        vy = y // g
        for vx in range(w):
            if not ok[vy, vx]:
                continue
            ty = y + dy[vy, vx]
            if ty < 0 or ty >= height:
                continue
            ddx = dx[vy, vx]
            for x in range(vx * g, vx * g + g):
                tx = x + ddx
                if tx >= 0 and tx < width:
                    t = ty * width + tx
                    a = arrivals[t]
                    if a == 0:
                        ones += 1
                        arrivals[t] = 1
                    elif a == 1:
                        ones -= 1
                        n_multi += 1
                        arrivals[t] = 2
    n_gather = 0
    n_front = 0
    n_back = 0
    n_copied = 0
    for y in range(height):
        vy = y // g
        for x in range(width):
            q = y * width + x
            if arrivals[q] != 0:
                continue
            vx = x // g
            kind = 1
            if ok[vy, vx]:
                sy = y - dy[vy, vx]
                sx = x - dx[vy, vx]
                if sy >= 0 and sy < height and sx >= 0 and sx < width:
                    if ok[sy // g, sx // g]:
                        s = sy * width + sx
                        gather_src[n_gather] = s
                        gather_dst[n_gather] = q
                        n_gather += 1
                        if copies[s] == 0:
                            n_copied += 1
                            copied[s] = 1
                        copies[s] += 1
                        kind = 0
                    else:
                        kind = 2
            if kind == 1:
                fresh[n_front] = q
                n_front += 1
            elif kind == 2:
                n_back += 1
                fresh[n - n_back] = q
    return n_gather, n_front, n_back, n_multi, (n - ones) + n_copied


@njit(cache=True, nogil=True)
def _move_plain(dy, dx, ok, g, arrivals, copies, copied, idx, weight, new_idx, new_weight, scat_src,
                scat_dst, gather_src, n_gather):
    """The common case of step 1: a particle that is its target's only arrival and its source's only use
    moves unchanged (its store index and weight). The other particles go to the scatter list (source
    order). Returns (n_scatter, n_shared): the list's length and the number of uses with >= 2 uses of
    their source (the rows of fresh zero-sum noise that step 3 draws)."""
    h, w = dy.shape
    height, width = h * g, w * g
    n_scat = 0
    n_shared = 0
    for y in range(height):
        vy = y // g
        for vx in range(w):
            if not ok[vy, vx]:
                continue
            ty = y + dy[vy, vx]
            if ty < 0 or ty >= height:
                continue
            ddx = dx[vy, vx]
            for x in range(vx * g, vx * g + g):
                tx = x + ddx
                if tx >= 0 and tx < width:
                    t = ty * width + tx
                    p = y * width + x
                    if arrivals[t] == 1 and copied[p] == 0:
                        new_idx[t] = idx[p]
                        new_weight[t] = weight[p]
                    else:
                        scat_src[n_scat] = p
                        scat_dst[n_scat] = t
                        n_scat += 1
                        if copied[p]:
                            n_shared += 1
    for u in range(n_gather):
        s = gather_src[u]
        if copies[s] + (1 if _target(s, height, width, g, dy, dx, ok) >= 0 else 0) >= 2:
            n_shared += 1
    return n_scat, n_shared


@njit(cache=True, nogil=True)
def _special_uses(dy, dx, ok, g, arrivals, copies, copied, store, idx, weight, new_idx, new_weight, scat_src,
                  scat_dst, n_scat, gather_src, gather_dst, n_gather, z, slot, row, use_n, group_sum,
                  group_n, group_src, zbar, merge_sum, merge_ww, merge_w, merge_dst, seed, epoch, table):
    """Steps 3 and 4 for the listed uses: re-Gaussianise shared sources with the rows of ``z`` (in use
    order: scatter list, then gather list), write single uses and density merges to new store rows from
    ``row`` on. ``slot`` (N,) int32 is scratch, all -1 on entry and on return; ``copies``/``copied`` are reset to 0.
    The other trailing arrays are scratch large enough for the step. Returns the next free row."""
    h, w = dy.shape
    height, width = h * g, w * g
    channels = store.shape[1]
    n_uses = n_scat + n_gather
    for u in range(n_scat):
        use_n[u] = copies[scat_src[u]] + 1
    for u in range(n_gather):
        s = gather_src[u]
        use_n[n_scat + u] = copies[s] + (1 if _target(s, height, width, g, dy, dx, ok) >= 0 else 0)

    # zero-sum fresh noise per source group: float64 sums in use order, like numpy's bincount
    n_groups = 0
    j = 0
    for u in range(n_uses):
        if use_n[u] < 2:
            continue
        s = scat_src[u] if u < n_scat else gather_src[u - n_scat]
        k = slot[s]
        if k < 0:
            k = n_groups
            slot[s] = k
            group_n[k] = use_n[u]
            group_src[k] = s
            group_sum[k, :] = 0.0
            n_groups += 1
        for c in range(channels):
            group_sum[k, c] += np.float64(z[j, c])
        j += 1
    for k in range(n_groups):
        for c in range(channels):
            zbar[k, c] = np.float32(group_sum[k, c] / group_n[k])

    # each use's value and weight; single targets get a row now, merges accumulate (float64, use order)
    n_merge = 0
    val = np.empty(channels, np.float32)
    tmp = np.empty(channels, np.float32)
    j = 0
    for u in range(n_uses):
        if u < n_scat:
            s = scat_src[u]
            t = scat_dst[u]
        else:
            s = gather_src[u - n_scat]
            t = gather_dst[u - n_scat]
        n_use = np.float32(use_n[u])
        root = np.float32(math.sqrt(n_use))
        src = _read_row(store, idx[s], seed, epoch, table, tmp)
        if use_n[u] >= 2:
            k = slot[s]
            for c in range(channels):
                fresh = np.float32(z[j, c] - zbar[k, c])
                val[c] = np.float32(np.float32(src[c] / root) + fresh)
            j += 1
        else:
            for c in range(channels):
                val[c] = np.float32(src[c] / root)
        uw = np.float32(weight[s] / n_use)
        if uw < _TINY:
            uw = _TINY
        if u >= n_scat or arrivals[t] == 1:
            for c in range(channels):
                store[row, c] = val[c]
            new_idx[t] = row
            new_weight[t] = uw
            row += 1
        else:
            # merge slots live in new_idx until the merges are written: -2 - m marks slot m
            if new_idx[t] <= -2:
                m = -2 - new_idx[t]
            else:
                m = n_merge
                merge_dst[m] = t
                merge_sum[m, :] = 0.0
                merge_ww[m] = 0.0
                merge_w[m] = 0.0
                new_idx[t] = -2 - m
                n_merge += 1
            wd = np.float64(uw)
            merge_ww[m] += wd * wd
            merge_w[m] += wd
            for c in range(channels):
                merge_sum[m, c] += wd * np.float64(val[c])
    for m in range(n_merge):
        t = merge_dst[m]
        den = math.sqrt(merge_ww[m])
        for c in range(channels):
            store[row, c] = np.float32(merge_sum[m, c] / den)
        new_idx[t] = row
        new_weight[t] = np.float32(merge_w[m])
        row += 1
    for k in range(n_groups):
        slot[group_src[k]] = -1
    for u in range(n_gather):
        copies[gather_src[u]] = 0
        copied[gather_src[u]] = 0
    return row


@njit(cache=True, nogil=True)
def _place_fresh(fresh, n_front, n_back, new_idx, new_weight, row):
    """Step 5, first half: fresh targets (front part, then back part in target order) take the store rows
    ``row``.. (already filled with N(0, 1) draws) and weight 0 until the mean carried weight is known."""
    n = fresh.shape[0]
    k = 0
    for i in range(n_front):
        q = fresh[i]
        new_idx[q] = row + k
        new_weight[q] = 0.0
        k += 1
    for i in range(n_back):
        q = fresh[n - 1 - i]
        new_idx[q] = row + k
        new_weight[q] = 0.0
        k += 1


@njit(cache=True, nogil=True)
def _set_fresh_weight(fresh, n_front, n_back, new_weight, value):
    n = fresh.shape[0]
    for i in range(n_front):
        new_weight[fresh[i]] = value
    for i in range(n_back):
        new_weight[fresh[n - 1 - i]] = value


@njit(cache=True, nogil=True, parallel=True)
def _gather_rows(store, idx, out, seed, epoch, table):
    """out[q] = store[idx[q]] for every cell (virtual rows made): the dense noise."""
    for q in prange(idx.shape[0]):
        r = idx[q]
        if r >= VBASE:
            _value_row(seed, epoch, table, epoch + (r - VBASE), out[q])
        else:
            out[q] = store[r]


@njit(cache=True, nogil=True, parallel=True)
def _downsample_rows(store, idx, height, width, h, w, out, seed, epoch, table):
    """``noise_warp.downsample_to_latent`` of the noise ``store[idx]`` (H x W cells) into ``out`` (C, h, w),
    without gathering it: float32 sums over the b rows of each block in row order, then float64 sums over
    its b columns, / b, the order numpy's two reductions there add in (bit-identical)."""
    channels = store.shape[1]
    b = height // h
    for i in prange(h):  # latent rows are independent: the same bytes on any number of threads
        acc32 = np.empty((width, channels), np.float32)
        tmp = np.empty(channels, np.float32)
        for j in range(b):
            base = (i * b + j) * width
            for x in range(width):
                src = _read_row(store, idx[base + x], seed, epoch, table, tmp)
                if j == 0:
                    for c in range(channels):
                        acc32[x, c] = src[c]
                else:
                    for c in range(channels):
                        acc32[x, c] = np.float32(acc32[x, c] + src[c])
        for k in range(w):
            for c in range(channels):
                acc = 0.0
                for j in range(b):
                    acc += np.float64(acc32[k * b + j, c])
                out[c, i, k] = np.float32(acc / b)


class CounterRNG:
    """The "fast" rng's draws: row k of N(0, 1) values is a pure function of (``seed``, k) (:func:`fill_rows`),
    keys counted from 0 in draw order; ``table`` (K, C) float32 injects the rows instead (tests: row k is
    the k-th row drawn, so a reference fed the same table in order sees the same values)."""

    def __init__(self, seed: int, table: np.ndarray | None = None):
        self.seed = np.uint64(_mix(np.uint64((int(seed) + int(_GOLDEN)) % 2**64)))
        self.table = None if table is None else np.ascontiguousarray(table, np.float32)

    def table_for(self, channels: int) -> np.ndarray:
        if self.table is None:
            return np.empty((0, channels), np.float32)
        if self.table.ndim != 2 or self.table.shape[1] != channels:
            raise ValueError(f"injected draws must be (K, {channels}), got {self.table.shape}")
        return self.table


class LazyWarper:
    """The warper's state on an H x W grid of C channels with lazily moved noise (module docstring).

    Fill it with :meth:`load` or :meth:`draw`, advance it with :meth:`step`, read it with :meth:`dense`.
    With a :class:`CounterRNG` (the fast rng) fresh cells get virtual rows (their draw keys), made only when
    read: sky cells refreshed every step cost nothing until a latent keyframe reads them. ``spare`` rows of store space hold new values between two :meth:`dense` calls (grown on demand)."""

    def __init__(self, height: int, width: int, channels: int, spare: int | None = None):
        self.height, self.width = height, width
        n = self.n = height * width
        rows = n + (max(n // 2, 64) if spare is None else spare)
        self.store = np.empty((rows, channels), np.float32)
        self.other = np.empty_like(self.store)
        self.idx = np.arange(n, dtype=np.int32)
        self.new_idx = np.zeros(n, np.int32)  # never holds a merge marker (< -2) between steps
        self.row = n  # next free store row
        self.moved = False  # idx is not the identity / rows were appended
        self.drawn = 0
        self._counter(None)
        self.weight = np.ones(n, np.float32)
        self.new_weight = np.empty(n, np.float32)
        self.arrivals = np.empty(n, np.uint8)
        self.copies = np.zeros(n, np.int32)
        self.copied = np.zeros(n, np.uint8)
        self.slot = np.full(n, -1, np.int32)
        self._scratch: dict[str, np.ndarray] = {}
        for name in ("gather_src", "gather_dst", "scat_src", "scat_dst", "fresh"):
            setattr(self, name, np.empty(n, np.int32))  # touched only as far as they are used

    def _counter(self, rng) -> bool:
        """Take the seed and injected table of a :class:`CounterRNG` (True), or none for numpy's rng."""
        channels = self.store.shape[1]
        if isinstance(rng, CounterRNG):
            self.seed, self.table = rng.seed, rng.table_for(channels)
            return True
        self.seed, self.table = np.uint64(0), np.empty((0, channels), np.float32)
        return False

    def load(self, noise: np.ndarray, weight: np.ndarray) -> LazyWarper:
        """Start from ``noise`` (N, C) and ``weight`` (N,) (copied)."""
        self._restart()
        self.store[: self.n] = noise
        self.weight[:] = weight
        return self

    def draw(self, rng) -> LazyWarper:
        """Start from N(0, 1) noise and unit weights, drawn like :func:`noise_warp.init_state` (numpy) or as
        keys 0..N-1 of a :class:`CounterRNG`."""
        self._restart()
        if self._counter(rng):
            fill_rows(self.seed, self.table, 0, self.store[: self.n])
            self.key = self.n
        else:
            rng.standard_normal(out=self.store[: self.n], dtype=np.float32)
        self.drawn += self.store[: self.n].size
        self.weight[:] = 1.0
        return self

    def _restart(self) -> None:
        self.drawn = 0  # normal values drawn since the start (the floor of the warp's cost; eager ones only)
        self.key = 0  # the CounterRNG's next draw key
        self.epoch = 0  # key of virtual row VBASE
        if self.moved:
            self.idx[:] = np.arange(self.n, dtype=np.int32)
        self.row = self.n
        self.moved = False

    @classmethod
    def reused(cls, height: int, width: int, channels: int) -> LazyWarper:
        """A warper of this size, taking the buffers that the previous arc handed back with :meth:`keep`
        when the size matches: at the paper's grid they are ~1.2 GB, and faulting in fresh pages costs
        seconds on a loaded machine. Thread safe: a warper in use is never handed out twice."""
        global _KEPT
        with _LOCK:
            w, _KEPT = _KEPT, None
        if w is None or (w.height, w.width, w.store.shape[1]) != (height, width, channels):
            del w  # free the old buffers before allocating new ones
            w = cls(height, width, channels)
        return w

    def keep(self) -> None:
        """Hand the buffers back for the next :meth:`reused` (:func:`release` frees them)."""
        global _KEPT
        with _LOCK:
            _KEPT = self

    def dense(self) -> np.ndarray:
        """The noise as a dense (N, C) array (a view, valid until the next step)."""
        if self.moved:
            _gather_rows(self.store, self.idx, self.other[: self.n], self.seed, self.epoch, self.table)
            self.epoch = self.key  # no virtual rows left
            self.store, self.other = self.other, self.store
            self.idx[:] = np.arange(self.n, dtype=np.int32)
            self.row = self.n
            self.moved = False
        return self.store[: self.n]

    def latent(self, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
        """The noise area-downsampled to (C, h, w), bit-identical to ``downsample_to_latent(dense)``."""
        h, w = size
        if self.height % h or self.width % w or self.height // h != self.width // w:
            raise ValueError(f"grid {self.height}x{self.width} is not a whole number of square blocks over {h}x{w}")
        out = np.empty((self.store.shape[1], h, w), np.float32) if out is None else out
        _downsample_rows(self.store, self.idx, self.height, self.width, h, w, out, self.seed, self.epoch, self.table)
        return out

    def _buffer(self, name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
        """A scratch array of ``shape`` kept between steps (grown by half again when too small: fresh
        pages are slow to fault in, so steps reuse them)."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape[0] < shape[0]:
            buf = np.empty((shape[0] + shape[0] // 2 + 16,) + shape[1:], dtype)
            self._scratch[name] = buf
        return buf[: shape[0]]

    def _ensure_space(self, rows: int) -> None:
        if self.row + rows <= self.store.shape[0]:
            return
        self.dense()
        if self.n + rows > self.store.shape[0]:
            grown = np.empty((self.n + rows, self.store.shape[1]), np.float32)
            grown[: self.n] = self.store[: self.n]
            self.store, self.other = grown, np.empty_like(grown)

    def step(self, dy: np.ndarray, dx: np.ndarray, ok: np.ndarray, g: int, rng) -> None:
        """One warp step; ``dy``/``dx`` (h, w) int64 displacement in cells and ``ok`` (h, w) bool per video
        pixel, each pixel covering g x g cells (g = 1: per cell). Draws from ``rng`` (numpy Generator or
        :class:`CounterRNG`) in the vectorised warper's order: the shared uses' zero-sum noise, then the
        fresh cells (virtual rows with a CounterRNG)."""
        dy, dx, ok = np.ascontiguousarray(dy), np.ascontiguousarray(dx), np.ascontiguousarray(ok)
        if dy.shape[0] * g != self.height or dy.shape[1] * g != self.width:
            raise ValueError(f"displacement {dy.shape} x {g} does not cover the {self.height}x{self.width} grid")
        fast = self._counter(rng)
        if fast and self.key - self.epoch + 3 * self.n >= VBASE - 1:
            self.dense()  # the step's keys could pass the largest int32 virtual index: make the rows real
        n_gather, n_front, n_back, n_multi, bound = _contract_expand(
            dy, dx, ok, g, self.arrivals, self.copies, self.copied, self.gather_src, self.gather_dst, self.fresh
        )
        # fresh cells take no row with the fast rng (virtual): sky-heavy steps would compact for nothing
        self._ensure_space(bound - (n_front + n_back if fast else 0))
        n_scat, n_shared = _move_plain(
            dy, dx, ok, g, self.arrivals, self.copies, self.copied, self.idx, self.weight, self.new_idx,
            self.new_weight, self.scat_src, self.scat_dst, self.gather_src, n_gather,
        )
        channels = self.store.shape[1]
        n_uses = n_scat + n_gather
        groups = n_shared // 2 + 1  # every group (a shared source) has >= 2 uses
        z = self._buffer("z", (n_shared, channels), np.float32)
        if fast:
            fill_rows(self.seed, self.table, self.key, z)
            self.key += n_shared
        else:
            rng.standard_normal(out=z, dtype=np.float32)
        self.drawn += z.size
        row = _special_uses(
            dy, dx, ok, g, self.arrivals, self.copies, self.copied, self.store, self.idx, self.weight, self.new_idx,
            self.new_weight, self.scat_src, self.scat_dst, n_scat, self.gather_src, self.gather_dst, n_gather,
            z, self.slot, self.row, self._buffer("use_n", (n_uses,), np.int64),
            self._buffer("group_sum", (groups, channels), np.float64), self._buffer("group_n", (groups,), np.float64),
            self._buffer("group_src", (groups,), np.int64), self._buffer("zbar", (groups, channels), np.float32),
            self._buffer("merge_sum", (n_multi, channels), np.float64),
            self._buffer("merge_ww", (n_multi,), np.float64), self._buffer("merge_w", (n_multi,), np.float64),
            self._buffer("merge_dst", (n_multi,), np.int64), self.seed, self.epoch, self.table,
        )
        n_fresh = n_front + n_back
        if n_fresh and fast:  # virtual rows: keys key.. in draw order, made when read
            _place_fresh(self.fresh, n_front, n_back, self.new_idx, self.new_weight, VBASE + (self.key - self.epoch))
            self.key += n_fresh
        elif n_fresh:
            rng.standard_normal(out=self.store[row : row + n_fresh], dtype=np.float32)
            self.drawn += n_fresh * channels
            _place_fresh(self.fresh, n_front, n_back, self.new_idx, self.new_weight, row)
            row += n_fresh
        if n_fresh:
            carried = self.n - n_fresh
            # the vectorised warper's own numpy sums (pairwise float64), so the same fresh weight
            fresh_w = self.new_weight.sum(dtype=np.float64) / carried if carried else 1.0
            fresh_w = fresh_w if fresh_w > 0 and math.isfinite(fresh_w) else 1.0
            _set_fresh_weight(self.fresh, n_front, n_back, self.new_weight, np.float32(fresh_w))
        mean_w = self.new_weight.sum(dtype=np.float64) / self.n
        if not 1e-6 < mean_w < 1e6:
            self.new_weight /= mean_w
        self.row = row
        self.moved = True
        self.idx, self.new_idx = self.new_idx, self.idx
        self.weight, self.new_weight = self.new_weight, self.weight


def release() -> None:
    """Free the buffers kept by :meth:`LazyWarper.keep`."""
    global _KEPT
    with _LOCK:
        _KEPT = None


_KEPT: LazyWarper | None = None
_LOCK = threading.Lock()
