"""A readable reference of one Go-with-the-Flow warp step: the five steps of
``videofrom3d.prepare.noise_warp``'s docstring written as plain per-cell loops, for small grids only.

The fast warpers (the vectorised numpy/torch code and the compiled kernel) must equal it bit for bit, so it
fixes the order of the random draws (the shared uses' zero-sum noise first, then the fresh cells) and the
float rounding (float32 per operation, float64 sums in use order, numpy's own sum for the mean weight).
Random draws are injected: ``randn(rows, channels)`` returns a (rows, channels) float32 array.
"""

from __future__ import annotations

import math

import numpy as np

TINY = np.float32(1e-30)


def reference_warp_step(noise, weight, flow, valid, randn):
    """(H, W, C) float32 noise and (H, W) float32 weight warped one step along ``flow`` (H, W, 2) = (dx, dy)
    in cells, forward; ``valid`` (H, W) bool or None. Returns the new (noise, weight)."""
    height, width, channels = noise.shape
    cells = [(y, x) for y in range(height) for x in range(width)]

    def index(y, x):
        return y * width + x

    def on_grid(y, x):
        return 0 <= y < height and 0 <= x < width

    # each cell's rounded displacement d = floor(f + 0.5) and whether its flow is usable
    disp, ok = {}, {}
    for y, x in cells:
        fx, fy = float(flow[y, x, 0]), float(flow[y, x, 1])
        ok[index(y, x)] = math.isfinite(fx) and math.isfinite(fy) and (valid is None or bool(valid[y, x]))
        disp[index(y, x)] = (math.floor(fy + 0.5), math.floor(fx + 0.5)) if ok[index(y, x)] else (0, 0)

    # 1. contraction: every source with usable flow sends a particle to p + d(p), if that is on the grid
    arrivals = {index(y, x): [] for y, x in cells}  # target -> its sources, in source order
    particle = {}  # source -> its target
    for y, x in cells:
        p = index(y, x)
        dy, dx = disp[p]
        if ok[p] and on_grid(y + dy, x + dx):
            particle[p] = index(y + dy, x + dx)
            arrivals[particle[p]].append(p)

    # 2. expansion: an uncovered target q copies q - d(q), or is a disocclusion
    gather = []  # (target, source) in target order
    fresh_own, fresh_source = [], []  # q's own flow unusable or source off the grid / source's flow unusable
    for y, x in cells:
        q = index(y, x)
        if arrivals[q]:
            continue
        dy, dx = disp[q]
        if not ok[q] or not on_grid(y - dy, x - dx):
            fresh_own.append(q)
        elif not ok[index(y - dy, x - dx)]:
            fresh_source.append(q)
        else:
            gather.append((q, index(y - dy, x - dx)))

    # 3. uses per source: its particle plus its gather copies
    n_use = {}
    for p in particle:
        n_use[p] = n_use.get(p, 0) + 1
    for _, s in gather:
        n_use[s] = n_use.get(s, 0) + 1

    flat_noise = noise.reshape(-1, channels)
    flat_weight = weight.reshape(-1)
    out_noise = np.empty_like(flat_noise)
    out_weight = np.empty_like(flat_weight)

    # the plain move: a target's only particle, from a source with no other use, arrives unchanged
    uses = []  # (source, target) of every other use: particles in source order, then copies in target order
    for p in sorted(particle):
        t = particle[p]
        if len(arrivals[t]) == 1 and n_use[p] == 1:
            out_noise[t] = flat_noise[p]
            out_weight[t] = flat_weight[p]
        else:
            uses.append((p, t))
    uses += [(s, q) for q, s in gather]

    # each use of a source used n >= 2 times: x / sqrt(n) + (z_u - mean of z over the source's uses)
    shared = [u for u, (s, _) in enumerate(uses) if n_use[s] >= 2]
    z = randn(len(shared), channels) if shared else np.zeros((0, channels), np.float32)
    z_of = {u: z[k] for k, u in enumerate(shared)}
    z_sum, z_count = {}, {}
    for u in shared:
        s = uses[u][0]
        z_sum[s] = z_sum.get(s, np.zeros(channels, np.float64)) + z_of[u].astype(np.float64)
        z_count[s] = z_count.get(s, 0) + 1
    values, weights = [], []
    for u, (s, _) in enumerate(uses):
        n = np.float32(n_use[s])
        v = flat_noise[s] / np.sqrt(n)
        if n_use[s] >= 2:
            z_mean = (z_sum[s] / np.float64(z_count[s])).astype(np.float32)
            v = v + (z_of[u] - z_mean)
        values.append(v.astype(np.float32))
        weights.append(max(flat_weight[s] / n, TINY))

    # 4. merge: one use is taken as it is; k >= 2 particles give sum(w v) / sqrt(sum w^2), weight sum(w)
    by_target = {}
    for u, (_, t) in enumerate(uses):
        by_target.setdefault(t, []).append(u)
    for t, us in by_target.items():
        if len(us) == 1:
            out_noise[t] = values[us[0]]
            out_weight[t] = weights[us[0]]
            continue
        wv = np.zeros(channels, np.float64)
        ww = w_sum = 0.0
        for u in us:
            w = float(weights[u])
            wv += w * values[u].astype(np.float64)
            ww += w * w
            w_sum += w
        out_noise[t] = (wv / math.sqrt(ww)).astype(np.float32)
        out_weight[t] = np.float32(w_sum)

    # 5. fresh cells: N(0, 1), weight = the mean weight of the carried cells (numpy's float64 sum)
    fresh = fresh_own + fresh_source
    if fresh:
        out_noise[fresh] = randn(len(fresh), channels)
        out_weight[fresh] = 0.0
        carried = len(cells) - len(fresh)
        mean = out_weight.sum(dtype=np.float64) / carried if carried else 1.0
        out_weight[fresh] = mean if mean > 0 and math.isfinite(mean) else 1.0
    mean_w = out_weight.sum(dtype=np.float64) / len(cells)
    if not 1e-6 < mean_w < 1e6:  # the warper is invariant to a global scale of the weights
        out_weight /= mean_w
    return out_noise.reshape(noise.shape), out_weight.reshape(weight.shape)
