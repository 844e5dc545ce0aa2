"""G-buffers of a mesh scene seen by a camera: depth along +z, world normals, triangle id, object id.

Two backends behind one interface (``make_renderer(scene, backend) -> Renderer`` with ``.render(cam)``):

- ``moderngl``: one multiple-render-target draw in a headless EGL context (a GPU when the driver has one,
  Mesa's llvmpipe software rasteriser otherwise). The fragment shader writes ``gl_PrimitiveID`` (the
  triangle index) as an int and the view depth along +z as a float; object ids and normals are per-face
  lookups on the CPU.
- ``embree``: trimesh + embreex ray casting, one ray through each pixel centre; needs no system libraries.

Both use the camera convention of :mod:`videofrom3d.scene.camera` exactly (array pixel ``[y, x]`` is the
continuous point ``(x + 0.5, y + 0.5)``), so they agree pixel for pixel except on the rasterisation tie
rules along triangle edges.

The moderngl projection maps OpenCV camera coordinates straight to clip space with image row 0 at NDC
y = -1, so the framebuffer reads back top row first (no flip). Depth testing uses ``gl_FragDepth`` =
(z - near) / (far - near) in a 32-bit float depth buffer, which keeps a tiny near plane (1e-6 of the scene
extent) without losing depth precision; triangles crossing the near plane are clipped by the rasteriser.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass

import numpy as np

from videofrom3d.scene.camera import Camera, camera_rays, rotate_points
from videofrom3d.scene.mesh import Scene

BACKENDS = ("auto", "moderngl", "embree")


@dataclass(frozen=True, eq=False)
class GBuffer:
    """One view's buffers: ``depth`` (H, W) float32 along +z (0 = miss), ``normal`` (H, W, 3) float32 world
    face normal (0 = miss), ``triangle_id`` (H, W) int32 (-1 = miss), ``object_id`` (H, W) int32 (-1 = miss),
    ``hit`` (H, W) bool."""

    depth: np.ndarray
    normal: np.ndarray
    triangle_id: np.ndarray
    object_id: np.ndarray
    hit: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.depth.shape


class Renderer:
    """Base of the backends: scene-level caches shared by every frame (face normals, object ids, and the
    welded edge adjacency used by the edge extractor, computed on first use)."""

    backend = "none"

    def __init__(self, scene: Scene):
        self.scene = scene
        self.face_normals = scene.face_normals().astype(np.float32)
        self.face_object = np.asarray(scene.face_object, np.int32)
        self._normals_ext = np.concatenate([self.face_normals, np.zeros((1, 3), np.float32)])
        self._objects_ext = np.concatenate([self.face_object, np.array([-1], np.int32)])
        # scene-level caches other modules fill on first use (edges: welded adjacency)
        self.cache: dict = {}
        lo, hi = scene.bounds
        self.center = (lo + hi) / 2.0
        self.extent = float(np.linalg.norm(hi - lo)) or 1.0
        self._corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])

    def submit(self, cam: Camera) -> None:
        """Start rendering ``cam`` (the moderngl backend rasterises on its own threads meanwhile); finish
        with :meth:`collect`. ``render`` is ``submit`` + ``collect``."""
        self._pending = cam

    def collect(self, out: GBuffer | None = None) -> GBuffer:
        """The G-buffer of the camera last submitted (see :meth:`render` for ``out``)."""
        cam, self._pending = self._pending, None
        tri = self._triangle_ids(cam)
        return self._assemble(tri, self._depth_cache, out)

    def render(self, cam: Camera, supersample: int = 1, out: GBuffer | None = None) -> GBuffer:
        """G-buffer of ``cam``; ``supersample`` s renders at (s*W, s*H) with the camera resized exactly.
        ``out``: a GBuffer of preallocated arrays of the right shapes to fill (e.g. views into an arc's
        stacked arrays), returned filled."""
        if supersample != 1:
            cam = cam.resized(cam.width * supersample, cam.height * supersample)
        self.submit(cam)
        return self.collect(out)

    def _assemble(self, tri: np.ndarray, depth: np.ndarray, out: GBuffer | None = None) -> GBuffer:
        # per-face lookups; the extended tables' last row (normal 0, object -1) is what index -1 wraps to
        if out is None:
            out = GBuffer(
                depth=np.empty(tri.shape, np.float32),
                normal=np.empty(tri.shape + (3,), np.float32),
                triangle_id=np.empty(tri.shape, np.int32),
                object_id=np.empty(tri.shape, np.int32),
                hit=np.empty(tri.shape, bool),
            )
        np.greater_equal(tri, 0, out=out.hit)
        # mode="wrap": no bounds check and no buffered copy (ids are in [-1, T))
        np.take(self._normals_ext, tri, axis=0, out=out.normal, mode="wrap")
        np.take(self._objects_ext, tri, out=out.object_id, mode="wrap")
        np.copyto(out.triangle_id, tri)
        out.depth.fill(0.0)
        np.copyto(out.depth, depth, where=out.hit)
        return out

    def near_far(self, cam: Camera) -> tuple[float, float]:
        """Clip range for ``cam``: near = 1e-6 of the scene extent, far = beyond the farthest bound corner."""
        zc = self._corners @ cam.world_to_cam[2, :3] + cam.world_to_cam[2, 3]
        far = max(float(zc.max()), 0.0) * 1.01 + 1e-3 * self.extent
        near = 1e-6 * self.extent
        return near, max(far, 2 * near)

    def close(self) -> None:
        """Free backend resources (GL context)."""


# ------------------------------------------------------------------------------------------------ moderngl

_VERTEX = """
#version 330
uniform mat4 mvp;
in vec3 in_pos;
void main() {
    gl_Position = mvp * vec4(in_pos, 1.0);
}
"""

_FRAGMENT = """
#version 330
uniform float near;
uniform float far;
uniform int first_face;  // gl_PrimitiveID counts from 0 in each draw call
layout(location = 0) out ivec2 out_tri_z;
void main() {
    float v_z = 1.0 / gl_FragCoord.w;  // clip w is the view depth z (projection row 4 = (0, 0, 1, 0))
    out_tri_z = ivec2(gl_PrimitiveID + first_face, floatBitsToInt(v_z));
    gl_FragDepth = (v_z - near) / (far - near);
}
"""


def projection_matrix(cam: Camera, near: float, far: float) -> np.ndarray:
    """(4, 4) OpenCV camera coordinates -> clip space for ``cam.K`` with pixel centres at +0.5.

    NDC x = 2u/W - 1 and NDC y = 2v/H - 1 (row 0 of the framebuffer = image row 0), w = z; NDC z maps
    [near, far] to [-1, 1] (only used for clipping; the depth test uses gl_FragDepth)."""
    K, W, H = cam.K, cam.width, cam.height
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * K[0, 0] / W
    P[0, 1] = 2.0 * K[0, 1] / W
    P[0, 2] = 2.0 * K[0, 2] / W - 1.0
    P[1, 1] = 2.0 * K[1, 1] / H
    P[1, 2] = 2.0 * K[1, 2] / H - 1.0
    P[2, 2] = (far + near) / (far - near)
    P[2, 3] = -2.0 * far * near / (far - near)
    P[3, 2] = 1.0
    return P


class ModernGLRenderer(Renderer):
    """Rasterises with moderngl in a standalone EGL context; context and vertex buffer built once."""

    backend = "moderngl"

    def __init__(self, scene: Scene, ctx=None):
        super().__init__(scene)
        import moderngl

        self._moderngl = moderngl
        self.ctx = ctx if ctx is not None else moderngl.create_standalone_context(backend="egl")
        self._lock = threading.Lock()
        # shared vertices and an index buffer (the vertex shader runs once per vertex, not per corner),
        # centred on the scene so float32 keeps precision far from the origin
        verts = (scene.vertices - self.center).astype(np.float32)
        self.vbo = self.ctx.buffer(verts.tobytes())
        self.ibo = self.ctx.buffer(np.ascontiguousarray(scene.faces, np.uint32).tobytes())
        self.prog = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self.vao = self.ctx.vertex_array(self.prog, [(self.vbo, "3f", "in_pos")], index_buffer=self.ibo,
                                         index_element_size=4)
        self._chunks = face_chunks(scene)
        self._fbo = None
        self._fbo_size = None
        self._flush = _gl_flush()

    def _framebuffer(self, w: int, h: int):
        if self._fbo_size != (w, h):
            if self._fbo is not None:
                self._fbo.release()
                for t in self._textures:
                    t.release()
            tri_z = self.ctx.texture((w, h), 2, dtype="i4")
            depth = self.ctx.depth_texture((w, h))
            self._textures = (tri_z, depth)
            self._fbo = self.ctx.framebuffer(color_attachments=[tri_z], depth_attachment=depth)
            self._fbo_size = (w, h)
        return self._fbo

    def submit(self, cam: Camera) -> None:
        w, h = cam.width, cam.height
        near, far = self.near_far(cam)
        shift = np.eye(4)
        shift[:3, 3] = self.center  # undo the centring of the vertex buffer
        mvp = projection_matrix(cam, near, far) @ cam.world_to_cam @ shift
        self._lock.acquire()
        try:
            fbo = self._framebuffer(w, h)
            fbo.use()
            self.ctx.viewport = (0, 0, w, h)
            self.ctx.enable(self._moderngl.DEPTH_TEST)
            self.ctx.disable(self._moderngl.CULL_FACE)
            fbo.clear(depth=1.0)  # z = 0 marks a miss (every drawn fragment has z >= near > 0)
            self.prog["mvp"].write(mvp.T.astype(np.float32).tobytes())
            self.prog["near"].value = near
            self.prog["far"].value = far
            # only the runs of faces whose chunks can be in view, in face order (the same depth-test ties)
            for start, stop in visible_face_runs(self._chunks, cam):
                self.prog["first_face"].value = int(start)
                self.vao.render(self._moderngl.TRIANGLES, vertices=3 * int(stop - start), first=3 * int(start))
            if self._flush is not None:
                self._flush()  # hand the frame to the rasteriser threads now, not at the readback
        except BaseException:
            self._lock.release()
            raise
        self._pending = (w, h)

    def collect(self, out: GBuffer | None = None) -> GBuffer:
        w, h = self._pending
        self._pending = None
        try:
            raw = np.frombuffer(self._fbo.read(attachment=0, components=2, dtype="i4"), np.int32).reshape(h, w, 2)
        finally:
            self._lock.release()
        z = raw[..., 1].view(np.float32)
        return self._assemble(np.where(z > 0, raw[..., 0], -1), z, out)

    def close(self) -> None:
        for obj in (self.vao, self.prog, self.vbo, self.ibo, self._fbo):
            if obj is not None:
                obj.release()
        self.ctx.release()


@dataclass(frozen=True, eq=False)
class FaceChunks:
    """Consecutive faces in chunks (one object's run of faces, at most ``size`` faces each): ``bounds`` (n, 2)
    first and past-the-last face, ``corners`` (n, 8, 4) homogeneous world corners of each chunk's box."""

    bounds: np.ndarray
    corners: np.ndarray


def face_chunks(scene: Scene, size: int = 4096) -> FaceChunks:
    """Chunks of consecutive faces for view culling (a chunk never spans two objects)."""
    obj = np.asarray(scene.face_object)
    cuts = np.flatnonzero(np.diff(obj)) + 1
    starts = []
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(obj)]):
        starts.extend(range(int(a), int(b), size))
    starts = np.asarray(starts, np.int64)
    stops = np.r_[starts[1:], len(obj)]
    tri = scene.vertices[scene.faces]  # (T, 3, 3)
    lo = np.minimum.reduceat(tri.min(axis=1), starts, axis=0)
    hi = np.maximum.reduceat(tri.max(axis=1), starts, axis=0)
    pick = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)])  # 0: lo, 1: hi per axis
    corners = np.where(pick[None, :, :] == 0, lo[:, None, :], hi[:, None, :])
    corners = np.concatenate([corners, np.ones(corners.shape[:2] + (1,))], axis=-1)
    return FaceChunks(np.stack([starts, stops], axis=1), corners)


def visible_face_runs(chunks: FaceChunks, cam: Camera, margin_px: float = 2.0) -> list[tuple[int, int]]:
    """(start, stop) face ranges covering every chunk whose box is not wholly outside one side of ``cam``'s
    view (behind the camera, or beyond an image border plus ``margin_px``); adjacent chunks merged. Culling is
    conservative: a culled chunk could not have drawn a single fragment."""
    p = chunks.corners @ cam.world_to_cam[:3].T  # (n, 8, 3) camera coordinates
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    K, m = cam.K, margin_px
    u = K[0, 0] * x + K[0, 1] * y + K[0, 2] * z  # u * z
    v = K[1, 0] * x + K[1, 1] * y + K[1, 2] * z  # v * z
    outside = (
        (z <= 0).all(axis=1)
        | (u < -m * z).all(axis=1)
        | (u > (cam.width + m) * z).all(axis=1)
        | (v < -m * z).all(axis=1)
        | (v > (cam.height + m) * z).all(axis=1)
    )
    runs: list[tuple[int, int]] = []
    for (a, b), out in zip(chunks.bounds, outside):
        if out:
            continue
        if runs and runs[-1][1] == a:
            runs[-1] = (runs[-1][0], int(b))
        else:
            runs.append((int(a), int(b)))
    return runs


def _gl_flush():
    """glFlush from the GL dispatch library (moderngl does not expose it), or None."""
    import ctypes

    for name in ("libOpenGL.so.0", "libGL.so.1"):
        try:
            return ctypes.CDLL(name).glFlush
        except (OSError, AttributeError):
            continue
    return None



# ------------------------------------------------------------------------------------------------ embree


class EmbreeRenderer(Renderer):
    """Casts one ray per pixel centre with embreex (the library behind trimesh's fast ray queries); the
    depth is the exact ray-plane distance of the hit triangle."""

    backend = "embree"

    def __init__(self, scene: Scene):
        super().__init__(scene)
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        verts = scene.vertices - self.center  # centred so float32 keeps precision far from the origin
        self._scene = rtcore_scene.EmbreeScene()
        TriangleMesh(scene=self._scene, vertices=verts.astype(np.float32), indices=scene.faces.astype(np.int32))
        tri = verts[scene.faces]
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-300)
        self._n = n  # (T, 3) unit normals, float64
        self._c = np.einsum("ij,ij->i", n, tri[:, 0])  # plane constants n . v0
        self._depth_cache = None

    def _triangle_ids(self, cam: Camera) -> np.ndarray:
        rays = camera_rays(cam).reshape(-1, 3)  # camera-space directions with z = 1
        c2w = cam.cam_to_world
        R = c2w[:3, :3]
        origin = c2w[:3, 3] - self.center
        dirs = rotate_points(rays, R)
        origins = np.empty_like(dirs)
        origins[:] = origin.astype(np.float32)
        tri = np.asarray(self._scene.run(origins, dirs), np.int32)
        hit = tri >= 0
        t = tri[hit]
        # depth along +z = distance along the z = 1 ray to the plane n . x = c: (c - n . o) / (n . d)
        num = (self._c - self._n @ origin)[t]
        n_cam = rotate_points(self._n, R.T)[t]  # normals in camera axes, so n . d = n_cam . ray
        den = np.einsum("ij,ij->i", n_cam, rays[hit].astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            d = num / den
        good = np.isfinite(d) & (d > 0)
        depth = np.zeros(tri.shape, np.float32)
        depth[hit] = np.where(good, d, 0.0)
        tri[np.flatnonzero(hit)[~good]] = -1
        self._depth_cache = depth.reshape(cam.height, cam.width)
        return tri.reshape(cam.height, cam.width)


# ------------------------------------------------------------------------------------------------ factory


def moderngl_available() -> tuple[bool, str]:
    """Whether a headless EGL context can be created here, and why not."""
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
        ctx.release()
        return True, ""
    except Exception as e:  # missing libEGL, no driver, ...
        return False, f"{type(e).__name__}: {e}"


def make_renderer(scene: Scene, backend: str = "auto") -> Renderer:
    """A renderer for ``scene`` (build once per scene, call ``.render(cam)`` per frame).

    ``backend``: "moderngl" (headless EGL), "embree" (ray casting), or "auto" (moderngl if an EGL context
    can be created, else embree with a one-line note on stderr)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "moderngl":
        return ModernGLRenderer(scene)
    if backend == "embree":
        return EmbreeRenderer(scene)
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as e:
        print(f"note: no EGL context for moderngl ({type(e).__name__}: {e}); using the embree ray caster", file=sys.stderr)
        return EmbreeRenderer(scene)
    return ModernGLRenderer(scene, ctx=ctx)
