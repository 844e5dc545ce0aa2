"""Regenerate the bundled example in examples/town/: a small town square built by code.

    python examples/make_town.py              # writes examples/town/{town.glb,camera.json,style.png,job.toml}
    python examples/make_town.py --out DIR    # somewhere else

Everything is made here from numpy arithmetic and a seeded generator (no third-party assets), so the same
script gives the same bytes. Units are metres, Y is up (glTF), north is -Z.

The scene: a paved square with a fountain in the middle, a street leaving it to the south, ten buildings
with recessed windows (real geometry, so creases show in the edge maps), flat and pitched roofs, a town hall
with a clock tower, trees, lamp posts and benches. Every building and prop is its own node in the glb, so
per-object ids work. The camera walks up the street at eye height (2 m) into the square and half around the
fountain: 136 frames at 8 fps, i.e. three arcs of 45 frames with shared ends.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import trimesh
from PIL import Image
from trimesh.visual import TextureVisuals
from trimesh.visual.material import PBRMaterial

SEED = 7
FPS = 8
FRAMES = 136  # three arcs of 45 frames (+1 shared end)
FRAMES_PER_ARC = 45
KEY_EVERY = 5  # one keyframe every 5 frames: 28 keys
FOV_Y_DEG = 50
EYE_HEIGHT = 2.0
STYLE_SIZE = (768, 512)  # width, height; 3:2 like 720x480

UP = np.array([0.0, 1.0, 0.0])


# ----------------------------------------------------------------------------------------------- geometry
class Part:
    """Triangles of one named object (one glb node); winding is counter-clockwise seen from outside."""

    def __init__(self, name: str, color: tuple[int, int, int]):
        self.name = name
        self.color = color
        self.verts: list[np.ndarray] = []
        self.faces: list[np.ndarray] = []
        self.count = 0

    def add(self, v: np.ndarray, f: np.ndarray) -> None:
        v = np.asarray(v, np.float64).reshape(-1, 3)
        self.verts.append(v)
        self.faces.append(np.asarray(f, np.int64).reshape(-1, 3) + self.count)
        self.count += len(v)

    def quad(self, p0, p1, p2, p3) -> None:
        """Counter-clockwise corners p0..p3 (normal = (p1 - p0) x (p2 - p0))."""
        self.add(np.array([p0, p1, p2, p3]), np.array([[0, 1, 2], [0, 2, 3]]))

    def box(self, lo, hi) -> None:
        """Axis-aligned box from corner ``lo`` to ``hi``."""
        lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
        self.obox(0.5 * (lo + hi), np.eye(3), 0.5 * (hi - lo))

    def obox(self, center, axes, half) -> None:
        """Oriented box: ``axes`` rows are its unit axes (right-handed), ``half`` its half extents."""
        axes = np.asarray(axes, np.float64)
        corners = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
        v = np.asarray(center, np.float64) + (corners * np.asarray(half)) @ axes
        self.add(v, _BOX_FACES)

    def mesh(self, m: trimesh.Trimesh, transform: np.ndarray | None = None) -> None:
        v = np.asarray(m.vertices, np.float64)
        if transform is not None:
            v = v @ transform[:3, :3].T + transform[:3, 3]
        self.add(v, np.asarray(m.faces))

    def grid(self, origin, du, dv, nu: int, nv: int) -> None:
        """A planar grid of nu x nv quads spanning origin + [0,1]*du + [0,1]*dv; normal du x dv."""
        s = np.linspace(0.0, 1.0, nu + 1)
        t = np.linspace(0.0, 1.0, nv + 1)
        S, T = np.meshgrid(s, t, indexing="ij")
        v = np.asarray(origin) + S[..., None] * np.asarray(du) + T[..., None] * np.asarray(dv)
        idx = np.arange((nu + 1) * (nv + 1)).reshape(nu + 1, nv + 1)
        a, b, c, d = idx[:-1, :-1], idx[1:, :-1], idx[1:, 1:], idx[:-1, 1:]
        f = np.concatenate([np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)])
        self.add(v.reshape(-1, 3), f)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return np.concatenate(self.verts), np.concatenate(self.faces)


# corners indexed (i, j, k) -> 4i + 2j + k with i, j, k in {0: -1, 1: +1}; outward counter-clockwise faces
_BOX_FACES = np.array(
    [
        [0, 1, 3], [0, 3, 2],  # -x
        [4, 6, 7], [4, 7, 5],  # +x
        [0, 4, 5], [0, 5, 1],  # -y
        [2, 3, 7], [2, 7, 6],  # +y
        [0, 2, 6], [0, 6, 4],  # -z
        [1, 5, 7], [1, 7, 3],  # +z
    ]
)  # fmt: skip


def _cylinder(radius: float, height: float, sections: int) -> trimesh.Trimesh:
    """Closed Y-up cylinder standing on y = 0."""
    m = trimesh.creation.cylinder(radius=radius, height=height, sections=sections)
    m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    m.apply_translation([0, height / 2, 0])
    return m


def _cone(radius: float, height: float, sections: int) -> trimesh.Trimesh:
    m = trimesh.creation.cone(radius=radius, height=height, sections=sections)
    m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    return m


def _annulus(r_min: float, r_max: float, height: float, sections: int) -> trimesh.Trimesh:
    m = trimesh.creation.annulus(r_min=r_min, r_max=r_max, height=height, sections=sections)
    m.apply_transform(trimesh.transformations.rotation_matrix(-math.pi / 2, [1, 0, 0]))
    m.apply_translation([0, height / 2, 0])
    return m


def _translate(x, y, z) -> np.ndarray:
    T = np.eye(4)
    T[:3, 3] = (x, y, z)
    return T


class Frame:
    """A wall's local frame: u along the wall (left to right seen from outside), v up, w out of the wall."""

    def __init__(self, origin, u_dir):
        self.o = np.asarray(origin, np.float64)
        self.u = np.asarray(u_dir, np.float64)
        self.v = UP
        self.w = np.cross(self.u, self.v)

    def p(self, u, v, w=0.0) -> np.ndarray:
        return self.o + u * self.u + v * self.v + w * self.w

    def axes(self) -> np.ndarray:
        return np.stack([self.u, self.v, self.w])


def facade(part: Part, fr: Frame, width: float, height: float, holes, depth: float = 0.3) -> None:
    """A wall of ``width`` x ``height`` with rectangular openings ``holes`` [(u0, v0, u1, v1, kind)],
    each recessed by ``depth`` with jambs, a back face, mullions and a sill (kind "window"), or a plain
    recess (kind "door" / "shop")."""
    us = sorted({0.0, width, *[h[0] for h in holes], *[h[2] for h in holes]})
    vs = sorted({0.0, height, *[h[1] for h in holes], *[h[3] for h in holes]})
    for a in range(len(us) - 1):
        for b in range(len(vs) - 1):
            uc, vc = 0.5 * (us[a] + us[a + 1]), 0.5 * (vs[b] + vs[b + 1])
            if any(h[0] < uc < h[2] and h[1] < vc < h[3] for h in holes):
                continue
            part.quad(
                fr.p(us[a], vs[b]), fr.p(us[a + 1], vs[b]), fr.p(us[a + 1], vs[b + 1]), fr.p(us[a], vs[b + 1])
            )
    for u0, v0, u1, v1, kind in holes:
        d = depth * (1.6 if kind == "door" else 1.0)
        # jambs (facing into the opening) and the back
        part.quad(fr.p(u1, v0, 0), fr.p(u1, v0, -d), fr.p(u0, v0, -d), fr.p(u0, v0, 0))  # sill, faces up
        part.quad(fr.p(u0, v1, -d), fr.p(u1, v1, -d), fr.p(u1, v1, 0), fr.p(u0, v1, 0))  # head, faces down
        part.quad(fr.p(u0, v0, -d), fr.p(u0, v1, -d), fr.p(u0, v1, 0), fr.p(u0, v0, 0))  # left, faces +u
        part.quad(fr.p(u1, v1, 0), fr.p(u1, v1, -d), fr.p(u1, v0, -d), fr.p(u1, v0, 0))  # right, faces -u
        part.quad(fr.p(u0, v0, -d), fr.p(u1, v0, -d), fr.p(u1, v1, -d), fr.p(u0, v1, -d))  # back
        ax = fr.axes()
        w, h = u1 - u0, v1 - v0
        if kind == "window":
            bar = 0.05
            # frame around the glass, a vertical mullion and a transom
            part.obox(fr.p(u0 + bar, 0.5 * (v0 + v1), -d + 0.05), ax, (bar, h / 2, 0.05))
            part.obox(fr.p(u1 - bar, 0.5 * (v0 + v1), -d + 0.05), ax, (bar, h / 2, 0.05))
            part.obox(fr.p(0.5 * (u0 + u1), v0 + bar, -d + 0.05), ax, (w / 2 - 2 * bar, bar, 0.05))
            part.obox(fr.p(0.5 * (u0 + u1), v1 - bar, -d + 0.05), ax, (w / 2 - 2 * bar, bar, 0.05))
            part.obox(fr.p(0.5 * (u0 + u1), 0.5 * (v0 + v1), -d + 0.04), ax, (0.035, h / 2 - 2 * bar, 0.035))
            part.obox(fr.p(0.5 * (u0 + u1), v0 + 0.62 * h, -d + 0.04), ax, (w / 2 - 2 * bar, 0.035, 0.035))
            # sill sticking out below the opening
            part.obox(fr.p(0.5 * (u0 + u1), v0 - 0.05, 0.06), ax, (w / 2 + 0.1, 0.05, 0.08))
        elif kind == "shop":
            part.obox(fr.p(0.5 * (u0 + u1), 0.5 * (v0 + v1), -d + 0.04), ax, (0.04, h / 2, 0.04))
            # an awning over the shop window
            part.obox(fr.p(0.5 * (u0 + u1), v1 + 0.35, 0.55), ax, (w / 2 + 0.15, 0.04, 0.55))
        else:  # door: a lintel
            part.obox(fr.p(0.5 * (u0 + u1), v1 + 0.12, 0.05), ax, (w / 2 + 0.2, 0.12, 0.07))


def building(
    name: str,
    x0: float,
    z0: float,
    x1: float,
    z1: float,
    floors: int,
    front: str,
    color,
    roof: str,
    rng: np.random.Generator,
    floor_h: float = 3.2,
    window_w: float = 1.1,
    shop: bool = False,
) -> list[Part]:
    """A block from (x0, z0) to (x1, z1) with ``floors`` storeys, windows on every side, a door (and
    shop windows when ``shop``) on the ``front`` side ("n", "s", "e", "w"), and a "flat" or "gable" roof."""
    body = Part(name, color)
    height = floors * floor_h
    sides = {  # origin at the wall's left end seen from outside, u direction
        "s": ((x0, 0, z1), (1, 0, 0), x1 - x0),
        "e": ((x1, 0, z1), (0, 0, -1), z1 - z0),
        "n": ((x1, 0, z0), (-1, 0, 0), x1 - x0),
        "w": ((x0, 0, z0), (0, 0, 1), z1 - z0),
    }
    for side, (origin, u_dir, width) in sides.items():
        fr = Frame(origin, u_dir)
        cols = max(1, int((width - 1.0) // 2.6))
        pitch = width / cols
        holes = []
        door_col = cols // 2 if side == front else -1
        for c in range(cols):
            uc = (c + 0.5) * pitch
            for f in range(floors):
                if f == 0 and side == front and (c == door_col or shop):
                    if c == door_col:
                        holes.append((uc - 0.65, 0.0, uc + 0.65, 2.4, "door"))
                    else:
                        sw = min(pitch - 0.7, 2.2)
                        holes.append((uc - sw / 2, 0.45, uc + sw / 2, 2.6, "shop"))
                    continue
                ww = window_w * (0.85 if f == floors - 1 else 1.0)
                wh = 1.55 if f > 0 else 1.35
                vb = f * floor_h + (0.95 if f > 0 else 0.9)
                holes.append((uc - ww / 2, vb, uc + ww / 2, vb + wh, "window"))
        facade(body, fr, width, height, holes)
        ax = fr.axes()
        # string courses between floors and a cornice at the top: bands sticking out of the wall
        for f in range(1, floors):
            body.obox(fr.p(width / 2, f * floor_h - 0.1, 0.06), ax, (width / 2 + 0.12, 0.1, 0.06))
        body.obox(fr.p(width / 2, height - 0.2, 0.15), ax, (width / 2 + 0.3, 0.2, 0.15))
        # a plinth at the foot of the wall
        body.obox(fr.p(width / 2, 0.25, 0.05), ax, (width / 2 + 0.1, 0.25, 0.05))

    parts = [body]
    roof_part = Part(f"{name}_roof", (150, 70, 50) if roof == "gable" else (110, 105, 100))
    cx, cz = 0.5 * (x0 + x1), 0.5 * (z0 + z1)
    if roof == "flat":
        roof_part.box((x0, height - 0.05, z0), (x1, height + 0.05, z1))
        t = 0.3
        for lo, hi in (
            ((x0, height, z0), (x1, height + 0.7, z0 + t)),
            ((x0, height, z1 - t), (x1, height + 0.7, z1)),
            ((x0, height, z0 + t), (x0 + t, height + 0.7, z1 - t)),
            ((x1 - t, height, z0 + t), (x1, height + 0.7, z1 - t)),
        ):
            roof_part.box(lo, hi)
        # a stair housing and a water tank on the roof
        hx, hz = x0 + 0.72 * (x1 - x0) + rng.uniform(-0.5, 0.5), z0 + 0.3 * (z1 - z0) + rng.uniform(-0.5, 0.5)
        roof_part.box((hx - 1.2, height, hz - 1.0), (hx + 1.2, height + 2.4, hz + 1.0))
        roof_part.mesh(_cylinder(0.8, 1.6, 20), _translate(x0 + 1.6, height, z0 + 1.6))
    else:
        along_x = (x1 - x0) >= (z1 - z0)
        span = (z1 - z0) if along_x else (x1 - x0)
        length = (x1 - x0) if along_x else (z1 - z0)
        pitch = math.radians(32.0)
        rise = span / 2 * math.tan(pitch)
        over = 0.45
        ridge_dir = np.array([1.0, 0, 0]) if along_x else np.array([0, 0, -1.0])
        across = np.cross(ridge_dir, UP)  # horizontal, perpendicular to the ridge
        for sgn in (-1.0, 1.0):
            # each slope is a slab rotated about the ridge direction
            down = sgn * across * math.cos(pitch) - UP * math.sin(pitch)
            normal = np.cross(down, ridge_dir) * sgn
            if normal[1] < 0:
                normal = -normal
            slope_len = (span / 2) / math.cos(pitch) + over
            center = np.array([cx, height + rise, cz]) + down * (slope_len / 2) + normal * 0.1
            axes = np.stack([ridge_dir, down, np.cross(ridge_dir, down)])
            roof_part.obox(center, axes, (length / 2 + over, slope_len / 2, 0.1))
        # gable ends: triangles flush with the end walls, both faces
        for end in (-1.0, 1.0):
            mid = np.array([cx, height, cz]) + ridge_dir * end * length / 2
            a = mid - across * span / 2
            b = mid + across * span / 2
            c = mid + UP * rise
            tri = np.array([a, b, c])
            n = np.cross(b - a, c - a)
            f = [[0, 1, 2]] if np.dot(n, ridge_dir * end) > 0 else [[0, 2, 1]]
            body.add(tri, np.array(f))
        # a chimney
        cpos = np.array([cx, height, cz]) + ridge_dir * length * 0.25 + across * span * 0.2
        roof_part.box(cpos + (-0.4, 0, -0.4), cpos + (0.4, rise + 1.2, 0.4))
        roof_part.box(cpos + (-0.5, rise + 1.2, -0.5), cpos + (0.5, rise + 1.4, 0.5))
    parts.append(roof_part)
    return parts


def tower(name: str, cx: float, cz: float, base_y: float, color) -> Part:
    """A square clock tower with a clock recess on each side and a pyramid roof."""
    p = Part(name, color)
    s, h = 2.2, 7.0
    p.box((cx - s, base_y, cz - s), (cx + s, base_y + 0.4, cz + s))
    sides = {
        "s": ((cx - s + 0.3, base_y, cz + s - 0.3), (1, 0, 0)),
        "e": ((cx + s - 0.3, base_y, cz + s - 0.3), (0, 0, -1)),
        "n": ((cx + s - 0.3, base_y, cz - s + 0.3), (-1, 0, 0)),
        "w": ((cx - s + 0.3, base_y, cz - s + 0.3), (0, 0, 1)),
    }
    width = 2 * (s - 0.3)
    for origin, u_dir in sides.values():
        fr = Frame(origin, u_dir)
        holes = [
            (width / 2 - 0.5, 1.0, width / 2 + 0.5, 3.0, "window"),
            (width / 2 - 0.9, 4.2, width / 2 + 0.9, 6.0, "door"),
        ]
        facade(p, fr, width, h, holes, depth=0.3)
        ax = fr.axes()
        # the clock: a disc-like plate in the upper opening, hands as thin boxes
        p.mesh(_cylinder(0.75, 0.06, 32), _axes_transform(fr.p(width / 2, 5.1, -0.4), ax, lie=True))
        p.obox(fr.p(width / 2, 5.35, -0.3), ax, (0.04, 0.28, 0.03))
        p.obox(fr.p(width / 2 + 0.18, 5.1, -0.3), ax, (0.22, 0.03, 0.03))
        p.obox(fr.p(width / 2, h - 0.15, 0.15), ax, (width / 2 + 0.35, 0.15, 0.15))
    roof = _cone(s * 1.45, 4.5, 4)
    roof.apply_transform(trimesh.transformations.rotation_matrix(math.pi / 4, [0, 1, 0]))
    p.mesh(roof, _translate(cx, base_y + h, cz))
    p.mesh(_cylinder(0.05, 1.2, 8), _translate(cx, base_y + h + 4.4, cz))
    return p


def _axes_transform(center, axes, lie: bool = False) -> np.ndarray:
    """4x4 placing a Y-up primitive at ``center``; with ``lie`` its Y axis points along the frame's w."""
    T = np.eye(4)
    u, v, w = axes
    T[:3, :3] = np.stack([u, w, -v], axis=1) if lie else np.stack([u, v, w], axis=1)
    T[:3, 3] = center
    return T


def tree(name: str, x: float, z: float, base_y: float, rng: np.random.Generator, kind: str) -> list[Part]:
    trunk = Part(f"{name}_trunk", (95, 70, 50))
    crown = Part(name, (70, 120, 55) if kind == "round" else (45, 95, 60))
    th = rng.uniform(2.2, 2.8)
    trunk.mesh(_cylinder(0.2, th + 0.6, 12), _translate(x, base_y, z))
    if kind == "round":
        for i in range(3):
            s = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
            r = rng.uniform(1.3, 1.8) * (1.0 if i == 0 else 0.75)
            v = np.asarray(s.vertices)
            bump = 1.0 + 0.09 * np.sin(5.0 * v[:, 0] + rng.uniform(0, 6)) * np.cos(
                4.0 * v[:, 2] + rng.uniform(0, 6)
            )
            bump += 0.05 * np.sin(7.0 * v[:, 1] + rng.uniform(0, 6))
            s = trimesh.Trimesh(v * (r * bump)[:, None] * np.array([1.0, 0.9, 1.0]), s.faces, process=False)
            off = (0.0, 0.0) if i == 0 else (rng.uniform(-0.9, 0.9), rng.uniform(-0.9, 0.9))
            crown.mesh(
                s,
                _translate(
                    x + off[0], base_y + th + 1.2 + (0 if i == 0 else rng.uniform(-0.3, 0.6)), z + off[1]
                ),
            )
    else:
        y = base_y + 1.2
        for i, (r, h) in enumerate(((1.8, 3.0), (1.45, 2.6), (1.05, 2.2), (0.6, 1.6))):
            crown.mesh(_cone(r, h, 24), _translate(x, y + i * 1.3, z))
    return [trunk, crown]


def lamp(name: str, x: float, z: float, base_y: float) -> Part:
    p = Part(name, (40, 45, 50))
    p.mesh(_cylinder(0.16, 0.5, 12), _translate(x, base_y, z))
    p.mesh(_cylinder(0.06, 3.6, 10), _translate(x, base_y + 0.5, z))
    p.box((x - 0.18, base_y + 4.0, z - 0.18), (x + 0.18, base_y + 4.5, z + 0.18))
    p.mesh(_cone(0.3, 0.35, 4), _translate(x, base_y + 4.5, z))
    p.box((x - 0.12, base_y + 3.9, z - 0.12), (x + 0.12, base_y + 4.02, z + 0.12))
    return p


def bench(name: str, x: float, z: float, base_y: float, yaw_deg: float) -> Part:
    """A park bench 1.8 m long, facing +z before the rotation by ``yaw_deg`` about Y."""
    p = Part(name, (120, 80, 45))
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    R = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])  # columns: where the local x, y, z axes go
    axes = R.T
    o = np.array([x, base_y, z])

    def at(lx, ly, lz):
        return o + R @ np.array([lx, ly, lz])

    for i in range(3):  # seat slats
        p.obox(at(0, 0.45, -0.2 + i * 0.14), axes, (0.9, 0.025, 0.055))
    for i in range(2):  # back slats
        p.obox(at(0, 0.65 + i * 0.18, -0.3), axes, (0.9, 0.06, 0.02))
    for sx in (-0.75, 0.75):
        for sz in (-0.25, 0.1):
            p.obox(at(sx, 0.21, sz), axes, (0.04, 0.21, 0.04))
        p.obox(at(sx, 0.6, -0.31), axes, (0.04, 0.35, 0.03))
        p.obox(at(sx * 1.02, 0.62, -0.1), axes, (0.03, 0.03, 0.22))
    return p


def fountain(base_y: float) -> list[Part]:
    stone = Part("fountain", (175, 165, 150))
    water = Part("fountain_water", (90, 140, 170))
    stone.mesh(_annulus(2.65, 3.0, 0.65, 64), _translate(0, base_y, 0))
    stone.mesh(_annulus(2.55, 3.15, 0.08, 64), _translate(0, base_y + 0.65, 0))  # the rim
    stone.mesh(_cylinder(2.65, 0.1, 64), _translate(0, base_y, 0))
    stone.mesh(_cylinder(0.45, 1.5, 32), _translate(0, base_y, 0))
    bowl = _cone(1.3, 0.45, 48)
    bowl.apply_transform(trimesh.transformations.rotation_matrix(math.pi, [1, 0, 0]))
    stone.mesh(bowl, _translate(0, base_y + 1.95, 0))
    stone.mesh(_annulus(1.15, 1.3, 0.2, 48), _translate(0, base_y + 1.9, 0))
    stone.mesh(_cylinder(0.16, 0.9, 24), _translate(0, base_y + 1.95, 0))
    stone.mesh(trimesh.creation.icosphere(subdivisions=2, radius=0.3), _translate(0, base_y + 2.95, 0))
    water.mesh(_cylinder(2.64, 0.02, 64), _translate(0, base_y + 0.45, 0))
    water.mesh(_cylinder(1.14, 0.02, 48), _translate(0, base_y + 2.0, 0))
    return [stone, water]


def planter(name: str, x: float, z: float, base_y: float, rng: np.random.Generator) -> Part:
    """A stone planter box with a clipped bush."""
    p = Part(name, (150, 140, 125))
    p.box((x - 0.7, base_y, z - 0.7), (x + 0.7, base_y + 0.6, z + 0.7))
    p.box((x - 0.8, base_y + 0.6, z - 0.8), (x + 0.8, base_y + 0.68, z + 0.8))
    bush = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
    v = np.asarray(bush.vertices) * np.array([0.65, 0.55, 0.65]) * rng.uniform(0.9, 1.1)
    p.mesh(trimesh.Trimesh(v, bush.faces, process=False), _translate(x, base_y + 1.1, z))
    return p


def cafe_table(name: str, x: float, z: float, base_y: float) -> Part:
    """A round table under a parasol, with two chairs."""
    p = Part(name, (200, 80, 60))
    p.mesh(_cylinder(0.35, 0.04, 24), _translate(x, base_y + 0.72, z))
    p.mesh(_cylinder(0.04, 0.72, 8), _translate(x, base_y, z))
    p.mesh(_cylinder(0.25, 0.03, 16), _translate(x, base_y, z))
    p.mesh(_cylinder(0.03, 1.6, 8), _translate(x, base_y + 0.76, z))
    p.mesh(_cone(1.3, 0.55, 8), _translate(x, base_y + 2.0, z))
    for dx in (-0.65, 0.65):
        p.box((x + dx - 0.2, base_y + 0.42, z - 0.2), (x + dx + 0.2, base_y + 0.46, z + 0.2))
        back = 0.2 if dx > 0 else -0.2
        p.box(
            (x + dx + back - 0.02 * np.sign(back), base_y + 0.46, z - 0.2),
            (x + dx + back, base_y + 0.9, z + 0.2),
        )
        for lx in (-0.17, 0.17):
            for lz in (-0.17, 0.17):
                p.box(
                    (x + dx + lx - 0.02, base_y, z + lz - 0.02),
                    (x + dx + lx + 0.02, base_y + 0.42, z + lz + 0.02),
                )
    return p


def kiosk(name: str, x: float, z: float, base_y: float) -> Part:
    """A small octagonal news kiosk with a counter opening and a pointed roof."""
    p = Part(name, (60, 110, 90))
    p.mesh(_cylinder(1.3, 2.4, 8), _translate(x, base_y, z))
    p.mesh(_cylinder(1.6, 0.15, 8), _translate(x, base_y + 2.4, z))
    p.mesh(_cone(1.7, 1.3, 8), _translate(x, base_y + 2.55, z))
    p.mesh(trimesh.creation.icosphere(subdivisions=1, radius=0.15), _translate(x, base_y + 3.9, z))
    p.box((x - 0.9, base_y + 1.0, z + 1.05), (x + 0.9, base_y + 1.08, z + 1.45))  # the counter
    return p


PLAZA = 16.0  # the square spans [-16, 16] in x and z
PLAZA_Y = 0.12
STREET_HALF = 3.5  # carriageway half width
WALK = 3.0  # sidewalk width


def build_town(rng: np.random.Generator) -> list[Part]:
    parts: list[Part] = []
    ground = Part("ground", (105, 125, 80))
    ground.grid((-70, 0, 70), (140, 0, 0), (0, 0, -140), 70, 70)
    parts.append(ground)

    plaza = Part("plaza", (185, 170, 145))
    # slab top as a paving grid of 1 m stones with slightly raised edge stones around it
    plaza.grid((-PLAZA, PLAZA_Y, PLAZA), (2 * PLAZA, 0, 0), (0, 0, -2 * PLAZA), 32, 32)
    for lo, hi in (
        ((-PLAZA - 0.4, 0, -PLAZA - 0.4), (PLAZA + 0.4, PLAZA_Y + 0.06, -PLAZA)),
        ((-PLAZA - 0.4, 0, PLAZA), (-STREET_HALF, PLAZA_Y + 0.06, PLAZA + 0.4)),
        ((STREET_HALF, 0, PLAZA), (PLAZA + 0.4, PLAZA_Y + 0.06, PLAZA + 0.4)),
        ((-PLAZA - 0.4, 0, -PLAZA), (-PLAZA, PLAZA_Y + 0.06, PLAZA)),
        ((PLAZA, 0, -PLAZA), (PLAZA + 0.4, PLAZA_Y + 0.06, PLAZA)),
    ):
        plaza.box(lo, hi)
    plaza.box((-STREET_HALF, 0, PLAZA), (STREET_HALF, PLAZA_Y, PLAZA + 0.4))  # a step down to the street
    plaza.mesh(_annulus(3.15, 5.0, 0.05, 64), _translate(0, PLAZA_Y, 0))  # a paved ring round the fountain
    plaza.mesh(_annulus(5.0, 5.3, 0.09, 64), _translate(0, PLAZA_Y, 0))
    for c in (-12.0, -8.0, 8.0, 12.0):  # bands of darker setts across the square
        plaza.box((-PLAZA, PLAZA_Y, c - 0.25), (PLAZA, PLAZA_Y + 0.03, c + 0.25))
        plaza.box((c - 0.25, PLAZA_Y, -PLAZA), (c + 0.25, PLAZA_Y + 0.03, PLAZA))
    parts.append(plaza)

    road = Part("road", (70, 70, 75))
    road.grid((-STREET_HALF, 0.02, 70), (2 * STREET_HALF, 0, 0), (0, 0, -(70 - PLAZA - 0.4)), 7, 54)
    for z in np.arange(PLAZA + 2.0, 68.0, 4.0):  # centre-line dashes
        road.box((-0.08, 0.02, z), (0.08, 0.035, z + 2.0))
    parts.append(road)
    walks = Part("sidewalks", (160, 150, 135))
    for sgn in (-1, 1):
        xa, xb = sorted((sgn * STREET_HALF, sgn * (STREET_HALF + WALK)))
        walks.grid((xa, 0.15, 70), (xb - xa, 0, 0), (0, 0, -(70 - PLAZA - 0.4)), 3, 54)
        curb = sgn * STREET_HALF
        # the kerb: a vertical face towards the road, and the end towards the square
        if sgn < 0:
            walks.quad((curb, 0, 70), (curb, 0, PLAZA + 0.4), (curb, 0.15, PLAZA + 0.4), (curb, 0.15, 70))
        else:
            walks.quad((curb, 0, PLAZA + 0.4), (curb, 0, 70), (curb, 0.15, 70), (curb, 0.15, PLAZA + 0.4))
    parts.append(walks)

    # buildings: (name, x0, z0, x1, z1, floors, front, colour, roof, shop)
    W = STREET_HALF + WALK
    blocks = [
        ("town_hall", -7.0, -31.0, 7.0, -19.5, 4, "s", (215, 190, 140), "flat", False),
        ("house_n_west", -21.0, -30.0, -7.6, -19.0, 3, "s", (200, 120, 90), "gable", True),
        ("house_n_east", 7.6, -29.0, 20.0, -19.0, 3, "s", (225, 205, 170), "gable", False),
        ("house_w_north", -31.0, -17.5, -19.0, -4.0, 4, "e", (190, 150, 110), "flat", True),
        ("house_w_south", -30.0, -3.0, -19.0, 13.5, 2, "e", (210, 165, 120), "gable", False),
        ("house_e_north", 19.0, -17.5, 30.0, -5.0, 3, "w", (230, 180, 150), "gable", True),
        ("house_e_south", 19.0, -4.0, 32.0, 13.5, 5, "w", (175, 140, 120), "flat", False),
        ("house_sw", -19.0, 17.0 + 0.5, -W, 29.0, 3, "e", (220, 150, 100), "gable", True),
        ("house_se", W, 17.5, 18.0, 30.5, 4, "w", (200, 185, 160), "flat", True),
        ("house_sw2", -17.0, 30.0, -W, 44.0, 2, "e", (185, 120, 95), "gable", False),
        ("house_se2", W, 31.5, 16.0, 44.0, 3, "w", (215, 200, 130), "gable", True),
    ]
    for name, x0, z0, x1, z1, floors, front, color, roof, shop in blocks:
        floor_h = 3.3 if name == "town_hall" else 3.1
        parts.extend(
            building(name, x0, z0, x1, z1, floors, front, color, roof, rng, floor_h=floor_h, shop=shop)
        )
        if name == "town_hall":
            parts.append(tower("town_hall_tower", 0.0, -25.0, floors * floor_h, (205, 180, 135)))

    parts.extend(fountain(PLAZA_Y))
    trees = [
        (-12.0, 12.0, "round"), (12.0, 12.0, "round"), (-12.5, -12.5, "round"), (12.5, -12.0, "round"),
        (-13.5, 0.5, "cone"), (13.5, 0.0, "cone"), (-5.3, 24.0, "round"), (5.3, 38.0, "round"),
    ]  # fmt: skip
    for i, (x, z, kind) in enumerate(trees):
        by = PLAZA_Y if abs(x) <= PLAZA and abs(z) <= PLAZA else (0.15 if abs(x) < W else 0.0)
        parts.extend(tree(f"tree_{i + 1:02d}", x, z, by, rng, kind))
    lamps = [(-10.0, 8.0), (10.0, 8.0), (-10.0, -8.0), (10.0, -8.0), (-4.2, 21.0), (4.2, 29.0), (-4.2, 37.0)]
    for i, (x, z) in enumerate(lamps):
        by = PLAZA_Y if abs(z) <= PLAZA else 0.15
        parts.append(lamp(f"lamp_{i + 1:02d}", x, z, by))
    benches = [
        (-4.6, -4.6, 45.0),
        (4.6, -4.6, -45.0),
        (4.6, 4.6, -135.0),
        (-10.0, -14.5, 0.0),
        (10.0, -14.5, 0.0),
    ]
    for i, (x, z, yaw) in enumerate(benches):
        parts.append(bench(f"bench_{i + 1:02d}", x, z, PLAZA_Y, yaw))
    for i, (x, z) in enumerate([(-8.0, 13.0), (8.0, 13.0), (13.5, -7.0), (-13.5, -7.5)]):
        parts.append(planter(f"planter_{i + 1:02d}", x, z, PLAZA_Y, rng))
    for i, (x, z) in enumerate([(15.0, -13.0), (15.2, -9.8), (12.2, -11.6), (15.0, 3.8), (15.0, 7.0)]):
        parts.append(cafe_table(f"cafe_table_{i + 1:02d}", x, z, PLAZA_Y))
    parts.append(kiosk("kiosk", 8.5, -10.5, PLAZA_Y))
    return parts


def export_glb(parts: list[Part]) -> bytes:
    scene = trimesh.Scene()
    for part in parts:
        v, f = part.arrays()
        v = np.round(v, 4)  # millimetre-stable coordinates, so tiny float differences never change the bytes
        m = trimesh.Trimesh(v.astype(np.float32), f, process=False)
        m.merge_vertices(digits_vertex=4)
        mat = PBRMaterial(
            name=part.name, baseColorFactor=[*part.color, 255], metallicFactor=0.0, roughnessFactor=0.9
        )
        m.visual = TextureVisuals(material=mat)
        scene.add_geometry(m, node_name=part.name, geom_name=part.name)
    return trimesh.exchange.gltf.export_glb(scene, include_normals=False)


# ------------------------------------------------------------------------------------------------ camera
def _catmull_rom(points: np.ndarray, samples: int) -> np.ndarray:
    """Dense centripetal-free (uniform) Catmull-Rom through ``points`` (K, D), ``samples`` per segment."""
    P = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    out = []
    for i in range(1, len(P) - 2):
        t = np.linspace(0.0, 1.0, samples, endpoint=False)[:, None]
        p0, p1, p2, p3 = P[i - 1], P[i], P[i + 1], P[i + 2]
        out.append(
            0.5
            * (
                (2 * p1)
                + (-p0 + p2) * t
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                + (-p0 + 3 * p1 - 3 * p2 + p3) * t**3
            )
        )
    out.append(points[-1:])
    return np.concatenate(out)


def _resample_by_length(curve: np.ndarray, n: int) -> np.ndarray:
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    target = np.linspace(0.0, s[-1], n)
    return np.stack([np.interp(target, s, curve[:, d]) for d in range(curve.shape[1])], axis=1)


# the walk, in the ground plane (x, z): up the street, into the square, a quarter around the fountain
PATH_XZ = np.array([[0.3, 19.0], [-0.4, 13.0], [-4.4, 7.4], [-8.9, 2.0], [-9.8, -4.0]])
# heading (degrees from north, i.e. -z, towards east +x): north at the town hall, then easing round to look
# east past the fountain; a cosine ease keeps the turn under 1.4 degrees per frame
YAW_START, YAW_END = -1.0, 100.0
TURN_FRAMES = (15, FRAMES - 1)
PITCH_DEG = -3.0


def camera_frames() -> tuple[np.ndarray, np.ndarray]:
    """(FRAMES, 3) positions at constant walking speed and (FRAMES, 3) unit viewing directions."""
    curve = _catmull_rom(PATH_XZ, 400)
    xz = _resample_by_length(curve, FRAMES)
    pos = np.stack([xz[:, 0], np.full(FRAMES, EYE_HEIGHT), xz[:, 1]], axis=1)
    f0, f1 = TURN_FRAMES
    x = np.clip((np.arange(FRAMES) - f0) / (f1 - f0), 0.0, 1.0)
    yaw = np.radians(YAW_START + (YAW_END - YAW_START) * 0.5 * (1.0 - np.cos(np.pi * x)))
    pitch = math.radians(PITCH_DEG)
    view = np.stack(
        [np.sin(yaw) * math.cos(pitch), np.full(FRAMES, math.sin(pitch)), -np.cos(yaw) * math.cos(pitch)], 1
    )
    return pos, view


def camera_json() -> dict:
    """Our keyframe format: a key every ``KEY_EVERY`` frames with its time, position and look-at point."""
    pos, view = camera_frames()
    keys = []
    for i in range(0, FRAMES, KEY_EVERY):
        look = pos[i] + 10.0 * view[i]
        keys.append(
            {
                "time": round(i / FPS, 4),
                "position": [round(float(x), 4) for x in pos[i]],
                "look_at": [round(float(x), 4) for x in look],
            }
        )
    return {"fps": FPS, "fov_y": FOV_Y_DEG, "keys": keys}


def camera_text(doc: dict) -> str:
    """JSON with one keyframe per line, so the path reads (and diffs) like a table."""
    keys = ",\n".join("    " + json.dumps(k) for k in doc["keys"])
    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "keys")
    return "{\n" + head + ',\n  "keys": [\n' + keys + "\n  ]\n}\n"


# ------------------------------------------------------------------------------------------- style image
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    """Value noise in [0, 1]: a coarse random grid bilinearly upsampled (float64, deterministic)."""
    gh, gw = h // cell + 2, w // cell + 2
    g = rng.random((gh, gw))
    y = np.arange(h) / cell
    x = np.arange(w) / cell
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)
    a = g[y0][:, x0]
    b = g[y0][:, x0 + 1]
    c = g[y0 + 1][:, x0]
    d = g[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def _box_blur(img: np.ndarray, r: int) -> np.ndarray:
    """Separable box blur with edge padding, in float64 with numpy only (bit-stable across CPUs)."""
    k = 2 * r + 1
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="edge")
    c = np.cumsum(pad, axis=0)
    c = np.concatenate([np.zeros_like(c[:1]), c])
    v = (c[k:] - c[:-k]) / k
    c = np.cumsum(v, axis=1)
    c = np.concatenate([np.zeros_like(c[:, :1]), c], axis=1)
    return (c[:, k:] - c[:, :-k]) / k


def style_image(rng: np.random.Generator) -> np.ndarray:
    """A watercolour-like town scene, (H, W, 3) uint8 RGB: a blue-to-peach sky in the top rows, warm
    ochre/terracotta houses with red roofs and dark windows, green trees, a sandy square."""
    W, H = STYLE_SIZE
    col = lambda *c: np.array(c, np.float64) / 255.0  # noqa: E731
    yy = np.linspace(0.0, 1.0, H)[:, None, None]
    sky = col(70, 125, 190) * (1 - yy / 0.55) + col(250, 215, 170) * (yy / 0.55)
    img = np.broadcast_to(sky, (H, W, 3)).copy()
    clouds = _smooth_noise(rng, H, W, 64) * 0.6 + _smooth_noise(rng, H, W, 24) * 0.4
    cmask = (
        np.clip((clouds - 0.55) * 4.0, 0, 1)[..., None]
        * np.clip(1.0 - yy / 0.45, 0, 1)
        * np.clip((yy - 0.04) / 0.1, 0, 1)
    )
    img = img * (1 - 0.7 * cmask) + col(250, 245, 240) * 0.7 * cmask

    horizon = int(0.62 * H)
    X = np.arange(W)
    # distant hills
    hill = horizon - 60 - 30 * np.sin(X / 140.0 + 1.0) - 18 * np.sin(X / 53.0)
    Y = np.arange(H)[:, None]
    img[Y > hill[None, :]] = col(120, 150, 140)
    # ground: a sandy square with perspective paving lines
    ground = Y >= horizon
    g = col(205, 180, 140) * (1 - 0.25 * (Y - horizon) / (H - horizon))[..., None]
    img = np.where(ground[..., None], g, img)
    vp = np.array([W * 0.5, horizon - 40.0])
    for k in range(-9, 10):
        p1 = (int(vp[0] + k * 30 * 0 + k * 10), horizon)
        p2 = (int(vp[0] + k * 140), H)
        cv2.line(img, p1, p2, tuple(float(c) for c in col(170, 145, 110)), 2)
    for j in range(6):
        y = int(horizon + (H - horizon) * (j / 6.0) ** 1.6)
        cv2.line(img, (0, y), (W - 1, y), tuple(float(c) for c in col(175, 150, 115)), 2)

    # houses along the horizon
    x = -20
    palette = [col(225, 170, 95), col(205, 110, 75), col(235, 205, 150), col(190, 140, 100), col(215, 150, 120),
               col(240, 220, 175), col(200, 95, 70)]  # fmt: skip
    roofs = [col(150, 60, 45), col(120, 55, 50), col(165, 80, 50), col(95, 75, 70)]
    while x < W:
        bw = int(rng.integers(70, 140))
        bh = int(rng.integers(110, 215))
        top = horizon - bh
        c = palette[int(rng.integers(len(palette)))]
        img[top:horizon, max(x, 0) : x + bw] = c
        if rng.random() < 0.65:
            rise = int(bw * 0.35)
            pts = np.array([[x - 6, top], [x + bw + 6, top], [x + bw // 2, top - rise]], np.int32)
            cv2.fillPoly(img, [pts], tuple(float(v) for v in roofs[int(rng.integers(len(roofs)))]))
        else:
            img[top - 8 : top, max(x - 4, 0) : x + bw + 4] = c * 0.8
        # windows in rows, a door
        for wy in range(top + 18, horizon - 45, 42):
            for wx in range(x + 14, x + bw - 24, 30):
                img[wy : wy + 24, max(wx, 0) : max(wx + 13, 0)] = col(60, 70, 95)
                img[wy + 24 : wy + 27, max(wx - 2, 0) : max(wx + 15, 0)] = c * 1.1
        dx = x + bw // 2 - 10
        img[horizon - 38 : horizon, max(dx, 0) : max(dx + 20, 0)] = col(90, 60, 45)
        x += bw
    # trees: round green crowns on dark trunks, in front of the houses
    for _ in range(6):
        tx = int(rng.integers(30, W - 30))
        ty = int(horizon + rng.integers(-5, 40))
        r = int(rng.integers(35, 60))
        img[ty - r : ty + 6, tx - 4 : tx + 4] = col(80, 60, 40)
        greens = (col(70, 125, 60), col(95, 150, 70), col(50, 100, 55))
        for _ in range(5):
            ox, oy = int(rng.integers(-r // 2, r // 2)), int(rng.integers(-r // 3, r // 3))
            cv2.circle(img, (tx + ox, ty - r - 10 + oy), int(r * rng.uniform(0.55, 0.8)),
                       tuple(float(v) for v in greens[int(rng.integers(3))]), -1)  # fmt: skip
    # a fountain in the middle of the square
    fx, fy = W // 2, int(horizon + 0.45 * (H - horizon))
    cv2.ellipse(img, (fx, fy), (110, 26), 0, 0, 360, tuple(float(v) for v in col(150, 140, 130)), -1)
    cv2.ellipse(img, (fx, fy - 4), (96, 18), 0, 0, 360, tuple(float(v) for v in col(110, 160, 185)), -1)
    img[fy - 70 : fy - 4, fx - 8 : fx + 8] = col(160, 150, 140)
    cv2.ellipse(img, (fx, fy - 70), (36, 9), 0, 0, 360, tuple(float(v) for v in col(160, 150, 140)), -1)

    # painterly: short strokes of the local colour, then watercolour pooling at edges and paper grain
    base = img.copy()
    for _ in range(9000):
        cx, cy = int(rng.integers(0, W)), int(rng.integers(0, H))
        c = base[cy, cx] * rng.uniform(0.92, 1.08) + rng.normal(0, 0.02, 3)
        ang = float(rng.uniform(-25, 25) if cy < horizon * 0.6 else rng.uniform(-90, 90))
        axes = (int(rng.integers(4, 12)), int(rng.integers(1, 4)))
        cv2.ellipse(img, (cx, cy), axes, ang, 0, 360, tuple(float(v) for v in np.clip(c, 0, 1)), -1)
    soft = _box_blur(img, 2)
    edges = np.abs(img - _box_blur(img, 6)).sum(axis=2, keepdims=True)
    img = soft * (1.0 - 0.55 * np.clip(edges * 2.5, 0, 0.5))
    paper = _smooth_noise(rng, H, W, 3)[..., None] * 0.08 + _smooth_noise(rng, H, W, 40)[..., None] * 0.06
    img = img * (0.93 + paper) + 0.04 * col(250, 240, 220)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + 1.2 * (img - grey)  # a little more saturated, like wet pigment
    return np.clip(np.round(img * 255.0), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- job file
JOB_TOML = """\
# The bundled example: a small town square, a walk up the street and around the fountain.
# Regenerate everything here with `python examples/make_town.py`. Format: see src/videofrom3d/job.py.
name = "town"
seed = 0
fps = 8

[scene]
path = "town.glb"
up = "y"

[trajectory]
path = "camera.json"
frames = 136                 # three arcs of 45 frames with shared ends (3 * 45 + 1)

[size]
width = 720
height = 480

[arcs]
frames_per_arc = 45

[[style]]
image = "style.png"
identifier = "a painting of sks town"

# Post-prompting (paper Fig. 8): extra words for one anchor frame, by anchor index (0..3 here).
# [anchor_prompts]
# 2 = "at dusk, warm street lights"
"""


def write_all(out: Path) -> dict:
    """Write town.glb, camera.json, style.png and job.toml into ``out``; returns a small summary."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    parts = build_town(rng)
    glb = export_glb(parts)
    (out / "town.glb").write_bytes(glb)
    (out / "camera.json").write_text(camera_text(camera_json()))
    style = style_image(np.random.default_rng(SEED + 1))
    Image.fromarray(style).save(out / "style.png", format="PNG", optimize=False, compress_level=9)
    (out / "job.toml").write_text(JOB_TOML)
    triangles = sum(sum(len(f) for f in p.faces) for p in parts)
    return {"triangles": triangles, "objects": len(parts), "glb_bytes": len(glb)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "town", help="output folder"
    )
    args = ap.parse_args(argv)
    info = write_all(args.out)
    print(f"wrote {args.out}: {info['triangles']} triangles, {info['objects']} objects, "
          f"town.glb {info['glb_bytes'] / 1e6:.2f} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
