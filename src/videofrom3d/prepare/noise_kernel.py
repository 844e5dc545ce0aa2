"""Compiled CPU kernel of the Go-with-the-Flow noise warper (numba): the same steps, the same random draws in
the same order and the same float rounding as the vectorised warper in :mod:`noise_warp`, so it gives the
same bytes for the same seed (``tests/test_noise_reference.py`` checks both against a per-cell loop). With a
:class:`CounterRNG` (``[noise] rng = "fast"``) the draws are its own and fresh cells stay virtual until
read (below); the same test checks that path against the loop with injected rows.

Why it is faster: the vectorised warper moves all C noise values of every cell every step (two ~350 MB
passes per step at the paper's grid) and builds a dozen (N,) int64 temporaries. Here the noise is moved
lazily. The state is ``store`` (rows of C values) plus ``idx`` (N,) int32, the store row that holds each
cell's noise. A plain move (one particle, the source's only use) copies one int32 index; only the few cells
that are re-Gaussianised, merged or fresh get a new row appended to the store. Each latent keyframe reads
every cell's row anyway, so it also gathers the noise into a dense store (the next steps read it in grid
order); a full store is compacted the same way. Weights (4 bytes a cell) are moved eagerly, since their sum
is taken every step.

Threads: the passes over the grid run on bands of rows and the passes over the special uses on chunks of
them (``prange``); every list is built in per-band slices joined in grid order, and each use's rows come from
prefix counts, so the bytes do not depend on the number of threads. What stays serial is small: joining
the lists, the means of sources with three or more uses, and the merges.

Floating point follows the vectorised warper operation by operation: float32 ops are rounded to float32
one at a time (numba without fastmath never fuses them), group and merge sums accumulate in float64 in
the order numpy's ``bincount`` adds them (use order; a pair's two terms commute), and the weight sums that
decide the fresh weight are left to numpy (its pairwise sum).
"""

from __future__ import annotations

import math
import threading

import numba
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
def _normal_row(seed, key, out, i):
    """``out[i]`` (of (R, C) float32) = N(0, 1) row ``key`` of the stream ``seed`` (uint64). Rows are passed
    as (array, index), never as views: a view made in a hot loop costs two atomic reference counts."""
    state = _mix(seed ^ _mix(np.uint64(key) + _GOLDEN))
    for c in range(out.shape[1]):
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
        out[i, c] = np.float32(-x if neg else x)


@njit(cache=True, nogil=True)
def _value_row(seed, table, key, out, i):
    """``out[i]`` = row ``key`` of the draws: ``table[key]`` when a table is injected (tests), else
    counter-based."""
    if table.shape[0]:
        for c in range(out.shape[1]):
            out[i, c] = table[key, c]
    else:
        _normal_row(seed, key, out, i)


@njit(cache=True, nogil=True)
def _load_row(store, r, seed, epoch, table, out, i):
    """``out[i]`` = store row ``r``, made from its key when it is virtual."""
    if r >= VBASE:
        _value_row(seed, table, epoch + (r - VBASE), out, i)
    else:
        for c in range(out.shape[1]):
            out[i, c] = store[r, c]


@njit(cache=True, nogil=True, parallel=True)
def fill_rows(seed, table, key0, out):
    """``out[i]`` = draw row ``key0 + i`` for every row of ``out`` (R, C) (parallel; the same bytes on any
    number of threads)."""
    for i in prange(out.shape[0]):
        _value_row(seed, table, key0 + i, out, i)


@njit(cache=True, nogil=True, parallel=True)
def displacement(flow, valid, g, dy, dx, ok):
    """Video-pixel flow (h, w, 2) = (dx, dy) float32 in pixels and ``valid`` (h, w) bool -> the displacement
    in cells ``floor(g f + 0.5)`` (int64) and ``ok`` = valid and finite, exactly as ``noise_warp``'s
    ``_round_disp(flow * g)`` (float32 product, float64 rounding; non-finite -> 0) does it."""
    h, w = ok.shape
    scale = np.float32(g)
    for y in prange(h):
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


# --------------------------------------------------------------------------------------------------------
# A step runs in passes over bands of grid rows, one band per prange task. A band writes its part of a
# list into its own slice, which starts at the band's first cell (a band never lists more entries than it
# has cells), and a serial _join moves the slices together in band order: the lists, hence the bytes, are
# those of one serial pass in grid order, whatever the number of bands or threads.


def row_bands(height: int, count: int) -> np.ndarray:
    """(count + 1,) int64 boundaries of ``count`` bands of the grid's rows (about equal)."""
    count = max(1, min(count, height))
    return np.array([height * b // count for b in range(count + 1)], np.int64)


@njit(cache=True, nogil=True)
def _join(a, bands, width, counts, col):
    """Move band b's ``counts[b, col]`` entries of ``a`` (from index ``bands[b] * width``) down behind band
    b-1's; returns the joined length."""
    n = 0
    for b in range(bands.shape[0] - 1):
        base = bands[b] * width
        k = counts[b, col]
        if base != n:
            for i in range(k):  # forward: the destination never passes the source
                a[n + i] = a[base + i]
        n += k
    return n


@njit(cache=True, nogil=True)
def _dy_range(dy, ok):
    lo = 0
    hi = 0
    for vy in range(dy.shape[0]):
        for vx in range(dy.shape[1]):
            if ok[vy, vx]:
                lo = min(lo, dy[vy, vx])
                hi = max(hi, dy[vy, vx])
    return lo, hi


@njit(cache=True, nogil=True, parallel=True)
def _contract_expand(dy, dx, ok, g, bands, arrivals, gather_src, gather_dst, gather_own, fresh, fresh_back,
                     counts):
    """Steps 1 and 2 (counts only), each band over its target rows. ``dy``/``dx`` (h, w) int64 displacement
    in cells and ``ok`` (h, w) bool per video pixel (each covers g x g cells). Fills ``arrivals`` (N,)
    uint8 (saturating at 2) and, in target order, the gathers (``gather_own``: whether the source's own
    particle stays on the grid too), the disocclusions whose own flow is invalid or whose source is off the
    grid (``fresh``) and those whose source's flow is invalid (``fresh_back``); ``counts[b, :5]`` = band
    b's single-arrival targets, targets with >= 2 arrivals, gathers, fresh, fresh_back."""
    h, w = dy.shape
    height, width = h * g, w * g
    lo, hi = _dy_range(dy, ok)
    for b in prange(bands.shape[0] - 1):
        y0, y1 = bands[b], bands[b + 1]
        for q in range(y0 * width, y1 * width):
            arrivals[q] = 0
        ones = 0
        multi = 0
        for y in range(max(0, y0 - hi), min(height, y1 - lo)):  # the source rows that can reach the band
            vy = y // g
            for vx in range(w):
                if not ok[vy, vx]:
                    continue
                ty = y + dy[vy, vx]
                if ty < y0 or ty >= y1:
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
                            multi += 1
                            arrivals[t] = 2
        base = y0 * width
        n_gather = 0
        n_front = 0
        n_back = 0
        for y in range(y0, y1):
            vy = y // g
            for vx in range(w):
                for x in range(vx * g, vx * g + g):
                    q = y * width + x
                    if arrivals[q] != 0:
                        continue
                    kind = 1
                    if ok[vy, vx]:
                        sy = y - dy[vy, vx]
                        sx = x - dx[vy, vx]
                        if sy >= 0 and sy < height and sx >= 0 and sx < width:
                            svy = sy // g
                            svx = sx // g
                            if ok[svy, svx]:
                                gather_src[base + n_gather] = sy * width + sx
                                gather_dst[base + n_gather] = q
                                ty = sy + dy[svy, svx]
                                tx = sx + dx[svy, svx]
                                inside = ty >= 0 and ty < height and tx >= 0 and tx < width
                                gather_own[base + n_gather] = 1 if inside else 0
                                n_gather += 1
                                kind = 0
                            else:
                                kind = 2
                    if kind == 1:
                        fresh[base + n_front] = q
                        n_front += 1
                    elif kind == 2:
                        fresh_back[base + n_back] = q
                        n_back += 1
        counts[b, 0] = ones
        counts[b, 1] = multi
        counts[b, 2] = n_gather
        counts[b, 3] = n_front
        counts[b, 4] = n_back


@njit(cache=True, nogil=True)
def _count_copies(gather_src, gather_own, n_gather, copies, copied):
    """Gather copies per source into ``copies`` (N,) int32 and ``copied`` (N,) uint8 (both all 0 on entry).
    Returns (sources copied, gather uses whose source has >= 2 uses)."""
    n_copied = 0
    for u in range(n_gather):
        s = gather_src[u]
        if copies[s] == 0:
            n_copied += 1
            copied[s] = 1
        copies[s] += 1
    n_shared = 0
    for u in range(n_gather):
        if copies[gather_src[u]] + gather_own[u] >= 2:
            n_shared += 1
    return n_copied, n_shared


@njit(cache=True, nogil=True, parallel=True)
def _move_plain(dy, dx, ok, g, bands, arrivals, copied, idx, weight, new_idx, new_weight, scat_src, scat_dst,
                counts):
    """The common case of step 1, each band over its source rows: a particle that is its target's only
    arrival and its source's only use moves unchanged (its store index and weight). The others go to the
    scatter list (source order); ``counts[b, 5:7]`` = band b's scatter entries and those among them whose
    source has >= 2 uses (rows of fresh zero-sum noise that step 3 draws)."""
    h, w = dy.shape
    height, width = h * g, w * g
    for b in prange(bands.shape[0] - 1):
        base = bands[b] * width
        n_scat = 0
        n_shared = 0
        for y in range(bands[b], bands[b + 1]):
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
                            scat_src[base + n_scat] = p
                            scat_dst[base + n_scat] = t
                            n_scat += 1
                            if copied[p]:
                                n_shared += 1
        counts[b, 5] = n_scat
        counts[b, 6] = n_shared


@njit(cache=True, nogil=True, parallel=True)
def _count_uses(arrivals, copies, scat_src, scat_dst, n_scat, gather_src, gather_own, n_gather, use_n, parts):
    """Step 3, first pass, in ``parts`` chunks of the uses (scatter list, then gather list): ``use_n``, the
    number of uses of each use's source (>= 2: shared, it takes a row of ``z``); returns (parts, 3) int64:
    each chunk's single arrivals, merge uses and shared uses."""
    n_uses = n_scat + n_gather
    counts = np.zeros((parts, 3), np.int64)
    for p in prange(parts):
        singles = 0
        merges = 0
        shared = 0
        for u in range(n_uses * p // parts, n_uses * (p + 1) // parts):
            if u < n_scat:
                n_use = copies[scat_src[u]] + 1
                if arrivals[scat_dst[u]] == 1:
                    singles += 1
                else:
                    merges += 1
            else:
                n_use = copies[gather_src[u - n_scat]] + gather_own[u - n_scat]
                singles += 1
            use_n[u] = n_use
            if n_use >= 2:
                shared += 1
        counts[p, 0] = singles
        counts[p, 1] = merges
        counts[p, 2] = shared
    return counts


@njit(cache=True, nogil=True, parallel=True)
def _place_uses(arrivals, scat_src, scat_dst, n_scat, n_gather, use_n, use_row, use_j, merge_use, slot, starts):
    """Step 3, second pass: each use's destination ``use_row`` (a new store row, in use order, for a single
    arrival; -1 - m for the m-th merge use, listed in ``merge_use``) and row of ``z`` ``use_j`` (-1 unless
    shared), from chunk p's first row, merge use and z row ``starts[p]``. A pair's own particle (a scatter
    use with ``use_n`` 2) leaves its use index in ``slot``."""
    n_uses = n_scat + n_gather
    parts = starts.shape[0]
    for p in prange(parts):
        row, m, j = starts[p, 0], starts[p, 1], starts[p, 2]
        for u in range(n_uses * p // parts, n_uses * (p + 1) // parts):
            if u >= n_scat:
                use_row[u] = row
                row += 1
            elif arrivals[scat_dst[u]] == 1:
                use_row[u] = row
                row += 1
            else:
                use_row[u] = -1 - m
                merge_use[m] = u
                m += 1
            if use_n[u] >= 2:
                use_j[u] = j
                j += 1
                if u < n_scat and use_n[u] == 2:
                    slot[scat_src[u]] = u
            else:
                use_j[u] = -1


@njit(cache=True, nogil=True, parallel=True)
def _pair_uses(n_scat, gather_src, gather_own, n_gather, use_n, use_j, use_g, slot, parts):
    """Most shared sources have two uses: the source's own particle (first in use order) and one gather
    copy. Each of the two gets the other's row of ``z`` in ``use_g``: two float64 sums commute, so the pair's
    mean needs no serial pass."""
    for p in prange(parts):
        for i in range(n_gather * p // parts, n_gather * (p + 1) // parts):
            u = n_scat + i
            if use_n[u] == 2 and gather_own[i]:
                first = slot[gather_src[i]]
                use_g[u] = use_j[first]
                use_g[first] = use_j[u]


@njit(cache=True, nogil=True)
def _group_means(scat_src, n_scat, gather_src, gather_own, n_gather, use_n, use_j, use_g, z, slot, group_sum,
                 group_n, zbar):
    """The other shared sources' means of ``z`` over their uses (>= 3, or two gather copies): float64 sums in
    use order, like numpy's bincount, into ``zbar``; ``use_g`` = -1 - group. Returns the number of groups."""
    channels = z.shape[1]
    n_groups = 0
    for u in range(n_scat + n_gather):
        n_use = use_n[u]
        if n_use < 2:
            continue
        if u < n_scat:
            if n_use == 2:
                continue
            s = scat_src[u]
        else:
            if n_use == 2 and gather_own[u - n_scat]:
                continue
            s = gather_src[u - n_scat]
        k = slot[s]
        if k < 0:
            k = n_groups
            slot[s] = k
            group_n[k] = n_use
            for c in range(channels):
                group_sum[k, c] = 0.0
            n_groups += 1
        j = use_j[u]
        for c in range(channels):
            group_sum[k, c] += np.float64(z[j, c])
        use_g[u] = -1 - k
    for k in range(n_groups):
        for c in range(channels):
            zbar[k, c] = np.float32(group_sum[k, c] / group_n[k])
    return n_groups


@njit(cache=True, nogil=True, parallel=True)
def _write_uses(store, idx, weight, new_idx, new_weight, scat_src, scat_dst, n_scat, gather_src, gather_dst,
                n_gather, z, zbar, use_n, use_j, use_g, use_row, merge_val, merge_uw, slot, copies, copied, seed,
                epoch, table, parts):
    """Steps 3 and 4's parallel part: each use's value ``source / sqrt(n) + (z - zbar)`` (shared) or
    ``source / sqrt(n)`` and weight ``weight / n`` into its new store row and the target's index and weight,
    or for a merge use into ``merge_val``/``merge_uw`` (summed by :func:`_merge`). Reads only rows that
    existed before the step and writes only new ones, so the uses are independent. Puts ``slot``,
    ``copies`` and ``copied`` back to their entry state (all -1, 0, 0) on the way."""
    channels = store.shape[1]
    n_uses = n_scat + n_gather
    for p in prange(parts):
        tmp = np.empty((1, channels), np.float32)
        for u in range(n_uses * p // parts, n_uses * (p + 1) // parts):
            if u < n_scat:
                s = scat_src[u]
                t = scat_dst[u]
            else:
                s = gather_src[u - n_scat]
                t = gather_dst[u - n_scat]
                copies[s] = 0
                copied[s] = 0
            n_use = np.float32(use_n[u])
            root = np.float32(math.sqrt(n_use))
            _load_row(store, idx[s], seed, epoch, table, tmp, 0)
            j = use_j[u]
            if j >= 0:
                slot[s] = -1
                g = use_g[u]
                if g >= 0:  # a pair: its mean, computed here
                    for c in range(channels):
                        mean = np.float32(((0.0 + np.float64(z[j, c])) + np.float64(z[g, c])) / 2.0)
                        tmp[0, c] = np.float32(np.float32(tmp[0, c] / root) + np.float32(z[j, c] - mean))
                else:
                    for c in range(channels):
                        tmp[0, c] = np.float32(np.float32(tmp[0, c] / root) + np.float32(z[j, c] - zbar[-1 - g, c]))
            else:
                for c in range(channels):
                    tmp[0, c] = np.float32(tmp[0, c] / root)
            uw = np.float32(weight[s] / n_use)
            if uw < _TINY:
                uw = _TINY
            r = use_row[u]
            if r >= 0:
                for c in range(channels):
                    store[r, c] = tmp[0, c]
                new_idx[t] = r
                new_weight[t] = uw
            else:
                for c in range(channels):
                    merge_val[-1 - r, c] = tmp[0, c]
                merge_uw[-1 - r] = uw


@njit(cache=True, nogil=True)
def _merge(scat_dst, merge_use, n_mu, merge_val, merge_uw, store, new_idx, new_weight, row, merge_sum, merge_ww,
           merge_w, merge_dst):
    """Step 4 for targets with >= 2 arrivals: ``sum(w v) / sqrt(sum(w^2))`` (float64, use order) and weight
    ``sum(w)`` into new store rows from ``row`` on. Returns the next free row."""
    channels = store.shape[1]
    n_merge = 0
    for m in range(n_mu):
        t = scat_dst[merge_use[m]]
        # merge slots live in new_idx until the merges are written: -2 - k marks slot k
        if new_idx[t] <= -2:
            k = -2 - new_idx[t]
        else:
            k = n_merge
            merge_dst[k] = t
            merge_ww[k] = 0.0
            merge_w[k] = 0.0
            for c in range(channels):
                merge_sum[k, c] = 0.0
            new_idx[t] = -2 - k
            n_merge += 1
        wd = np.float64(merge_uw[m])
        merge_ww[k] += wd * wd
        merge_w[k] += wd
        for c in range(channels):
            merge_sum[k, c] += wd * np.float64(merge_val[m, c])
    for k in range(n_merge):
        t = merge_dst[k]
        den = math.sqrt(merge_ww[k])
        for c in range(channels):
            store[row, c] = np.float32(merge_sum[k, c] / den)
        new_idx[t] = row
        new_weight[t] = np.float32(merge_w[k])
        row += 1
    return row


@njit(cache=True, nogil=True, parallel=True)
def _place_fresh(fresh, n_front, fresh_back, n_back, new_idx, new_weight, row):
    """Step 5, first half: fresh targets (the front list, then the back list) take the store rows
    ``row``.. (filled with N(0, 1) draws, or virtual) and weight 0 until the mean carried weight is known."""
    for i in prange(n_front):
        new_idx[fresh[i]] = row + i
        new_weight[fresh[i]] = 0.0
    for i in prange(n_back):
        new_idx[fresh_back[i]] = row + n_front + i
        new_weight[fresh_back[i]] = 0.0


@njit(cache=True, nogil=True, parallel=True)
def _set_fresh_weight(fresh, n_front, fresh_back, n_back, new_weight, value):
    for i in prange(n_front):
        new_weight[fresh[i]] = value
    for i in prange(n_back):
        new_weight[fresh_back[i]] = value


@njit(cache=True, nogil=True, parallel=True)
def _gather_rows(store, idx, out, seed, epoch, table):
    """out[q] = store[idx[q]] for every cell (virtual rows made): the dense noise."""
    for q in prange(idx.shape[0]):
        _load_row(store, idx[q], seed, epoch, table, out, q)


@njit(cache=True, nogil=True, parallel=True)
def _downsample_rows(store, idx, other, compact, height, width, h, w, out, seed, epoch, table):
    """``noise_warp.downsample_to_latent`` of the noise ``store[idx]`` (H x W cells) into ``out`` (C, h, w):
    float32 sums over the b rows of each block in row order, then float64 sums over its b columns, / b, the
    order numpy's two reductions there add in (bit-identical). With ``compact`` it also gathers the noise
    into ``other`` (N, C) (virtual rows made) and sets ``idx`` to the identity: a keyframe reads every row
    anyway, and the steps after it read the store in grid order instead of scattered."""
    channels = store.shape[1]
    b = height // h
    for i in prange(h):  # latent rows are independent: the same bytes on any number of threads
        acc32 = np.empty((width, channels), np.float32)
        rows = other if compact else np.empty((width, channels), np.float32)
        for j in range(b):
            base = (i * b + j) * width
            for x in range(width):
                q = base + x
                r = q if compact else x  # where this cell's row is read into
                _load_row(store, idx[q], seed, epoch, table, rows, r)
                if compact:
                    idx[q] = q
                if j == 0:
                    for c in range(channels):
                        acc32[x, c] = rows[r, c]
                else:
                    for c in range(channels):
                        acc32[x, c] = np.float32(acc32[x, c] + rows[r, c])
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
    read: sky cells refreshed every step cost nothing until a latent keyframe reads them. ``spare`` rows of
    store space hold new values between two compactions (grown on demand)."""

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
        for name in ("gather_src", "gather_dst", "scat_src", "scat_dst", "fresh", "fresh_back"):
            setattr(self, name, np.empty(n, np.int32))  # touched only as far as they are used
        self.gather_own = np.empty(n, np.uint8)

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
            self.idx[:] = np.arange(self.n, dtype=np.int32)
            self._compacted()
        return self.store[: self.n]

    def _compacted(self) -> None:
        """``other`` holds the dense noise and ``idx`` is the identity: swap the stores."""
        self.epoch = self.key  # no virtual rows left
        self.store, self.other = self.other, self.store
        self.row = self.n
        self.moved = False

    def latent(self, size: tuple[int, int], out: np.ndarray | None = None) -> np.ndarray:
        """The noise area-downsampled to (C, h, w), bit-identical to ``downsample_to_latent(dense)``; the
        store is compacted on the way (it reads every row anyway)."""
        h, w = size
        if self.height % h or self.width % w or self.height // h != self.width // w:
            raise ValueError(f"grid {self.height}x{self.width} is not a whole number of square blocks over {h}x{w}")
        out = np.empty((self.store.shape[1], h, w), np.float32) if out is None else out
        compact = self.moved
        _downsample_rows(self.store, self.idx, self.other[: self.n], compact, self.height, self.width, h, w, out,
                         self.seed, self.epoch, self.table)
        if compact:
            self._compacted()
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
        bands = row_bands(self.height, 2 * numba.get_num_threads())
        counts = self._buffer("counts", (len(bands) - 1, 7), np.int64)
        _contract_expand(dy, dx, ok, g, bands, self.arrivals, self.gather_src, self.gather_dst, self.gather_own,
                         self.fresh, self.fresh_back, counts)
        width = self.width
        for name in ("gather_src", "gather_dst", "gather_own"):
            n_gather = _join(getattr(self, name), bands, width, counts, 2)
        n_front = _join(self.fresh, bands, width, counts, 3)
        n_back = _join(self.fresh_back, bands, width, counts, 4)
        ones, n_multi = int(counts[:, 0].sum()), int(counts[:, 1].sum())
        n_copied, shared_gathers = _count_copies(self.gather_src, self.gather_own, n_gather, self.copies, self.copied)
        # rows a step can add: every target but the single arrivals, and the sources' copies; fresh cells
        # take none with the fast rng (virtual): sky-heavy steps would compact for nothing
        self._ensure_space((self.n - ones) + n_copied - (n_front + n_back if fast else 0))
        _move_plain(dy, dx, ok, g, bands, self.arrivals, self.copied, self.idx, self.weight, self.new_idx,
                    self.new_weight, self.scat_src, self.scat_dst, counts)
        n_scat = _join(self.scat_src, bands, width, counts, 5)
        _join(self.scat_dst, bands, width, counts, 5)
        n_shared = int(counts[:, 6].sum()) + shared_gathers
        channels = self.store.shape[1]
        n_uses = n_scat + n_gather
        z = self._buffer("z", (n_shared, channels), np.float32)
        if fast:
            fill_rows(self.seed, self.table, self.key, z)
            self.key += n_shared
        else:
            rng.standard_normal(out=z, dtype=np.float32)
        self.drawn += z.size
        parts = 4 * numba.get_num_threads()
        use_n, use_j, use_g, use_row = (self._buffer(f"use_{x}", (n_uses,), np.int64) for x in "njgr")
        per_part = _count_uses(self.arrivals, self.copies, self.scat_src, self.scat_dst, n_scat, self.gather_src,
                               self.gather_own, n_gather, use_n, parts)
        starts = np.zeros_like(per_part)
        starts[1:] = np.cumsum(per_part[:-1], axis=0)
        starts[:, 0] += self.row
        merge_use = self._buffer("merge_use", (n_scat,), np.int64)
        _place_uses(self.arrivals, self.scat_src, self.scat_dst, n_scat, n_gather, use_n, use_row, use_j, merge_use,
                    self.slot, starts)
        _pair_uses(n_scat, self.gather_src, self.gather_own, n_gather, use_n, use_j, use_g, self.slot, parts)
        groups = n_shared // 2 + 1  # the groups left have >= 2 uses
        zbar = self._buffer("zbar", (groups, channels), np.float32)
        _group_means(self.scat_src, n_scat, self.gather_src, self.gather_own, n_gather, use_n, use_j, use_g, z,
                     self.slot, self._buffer("group_sum", (groups, channels), np.float64),
                     self._buffer("group_n", (groups,), np.float64), zbar)
        n_mu = int(per_part[:, 1].sum())
        row = self.row + int(per_part[:, 0].sum())
        merge_val = self._buffer("merge_val", (n_mu, channels), np.float32)
        merge_uw = self._buffer("merge_uw", (n_mu,), np.float32)
        _write_uses(self.store, self.idx, self.weight, self.new_idx, self.new_weight, self.scat_src, self.scat_dst,
                    n_scat, self.gather_src, self.gather_dst, n_gather, z, zbar, use_n, use_j, use_g, use_row,
                    merge_val, merge_uw, self.slot, self.copies, self.copied, self.seed, self.epoch, self.table, parts)
        row = _merge(self.scat_dst, merge_use, n_mu, merge_val, merge_uw, self.store, self.new_idx, self.new_weight,
                     row, self._buffer("merge_sum", (n_multi, channels), np.float64),
                     self._buffer("merge_ww", (n_multi,), np.float64), self._buffer("merge_w", (n_multi,), np.float64),
                     self._buffer("merge_dst", (n_multi,), np.int64))
        n_fresh = n_front + n_back
        if n_fresh and fast:  # virtual rows: keys key.. in draw order, made when read
            first = VBASE + (self.key - self.epoch)
            _place_fresh(self.fresh, n_front, self.fresh_back, n_back, self.new_idx, self.new_weight, first)
            self.key += n_fresh
        elif n_fresh:
            rng.standard_normal(out=self.store[row : row + n_fresh], dtype=np.float32)
            self.drawn += n_fresh * channels
            _place_fresh(self.fresh, n_front, self.fresh_back, n_back, self.new_idx, self.new_weight, row)
            row += n_fresh
        if n_fresh:
            carried = self.n - n_fresh
            # the vectorised warper's own numpy sums (pairwise float64), so the same fresh weight
            carried_sum = self.new_weight.sum(dtype=np.float64)
            fresh_w = carried_sum / carried if carried else 1.0
            fresh_w = np.float32(fresh_w if fresh_w > 0 and math.isfinite(fresh_w) else 1.0)
            _set_fresh_weight(self.fresh, n_front, self.fresh_back, n_back, self.new_weight, fresh_w)
            estimate = (carried_sum + n_fresh * float(fresh_w)) / self.n
        # numpy's exact mean decides a rescale; a cheap estimate far inside both bounds means none
        if not n_fresh or not 1e-5 < estimate < 1e5:
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
