"""Write small glTF 2.0 files (GLB or .gltf with an embedded buffer) from numpy arrays, for tests."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np

_TYPES = {1: "SCALAR", 2: "VEC2", 3: "VEC3", 4: "VEC4", 16: "MAT4"}
_COMPONENT = {np.dtype(np.float32): 5126, np.dtype(np.uint32): 5125, np.dtype(np.uint16): 5123}


class GltfBuilder:
    """Collects nodes, meshes, cameras, animations and one binary buffer."""

    def __init__(self) -> None:
        self.doc: dict = {"asset": {"version": "2.0"}, "scene": 0, "scenes": [{"nodes": []}], "nodes": []}
        self.blob = bytearray()

    def accessor(self, values: np.ndarray, dtype=np.float32, minmax: bool = False) -> int:
        a = np.ascontiguousarray(values, dtype=dtype)
        a2 = a.reshape(len(a), -1)
        while len(self.blob) % 4:
            self.blob.append(0)
        view = {"buffer": 0, "byteOffset": len(self.blob), "byteLength": a2.nbytes}
        self.blob += a2.tobytes()
        self.doc.setdefault("bufferViews", []).append(view)
        acc = {
            "bufferView": len(self.doc["bufferViews"]) - 1,
            "componentType": _COMPONENT[a.dtype],
            "count": len(a2),
            "type": _TYPES[a2.shape[1]],
        }
        if minmax:
            acc["min"] = a2.min(axis=0).tolist()
            acc["max"] = a2.max(axis=0).tolist()
        self.doc.setdefault("accessors", []).append(acc)
        return len(self.doc["accessors"]) - 1

    def mesh(self, vertices: np.ndarray, faces: np.ndarray, name: str | None = None, extra_primitives=()) -> int:
        prims = []
        for v, f in [(vertices, faces), *extra_primitives]:
            prims.append(
                {
                    "attributes": {"POSITION": self.accessor(v, np.float32, minmax=True)},
                    "indices": self.accessor(np.asarray(f).reshape(-1), np.uint32),
                    "mode": 4,
                }
            )
        m = {"primitives": prims}
        if name:
            m["name"] = name
        self.doc.setdefault("meshes", []).append(m)
        return len(self.doc["meshes"]) - 1

    def camera(self, yfov: float, aspect: float | None = None, name: str | None = None) -> int:
        persp = {"yfov": yfov, "znear": 0.01}
        if aspect is not None:
            persp["aspectRatio"] = aspect
        cam = {"type": "perspective", "perspective": persp}
        if name:
            cam["name"] = name
        self.doc.setdefault("cameras", []).append(cam)
        return len(self.doc["cameras"]) - 1

    def node(self, parent: int | None = None, **fields) -> int:
        self.doc["nodes"].append({k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in fields.items()})
        i = len(self.doc["nodes"]) - 1
        if parent is None:
            self.doc["scenes"][0]["nodes"].append(i)
        else:
            self.doc["nodes"][parent].setdefault("children", []).append(i)
        return i

    def animate(self, node: int, path: str, times: np.ndarray, values: np.ndarray, interpolation: str = "LINEAR") -> None:
        anims = self.doc.setdefault("animations", [{"channels": [], "samplers": []}])
        a = anims[0]
        a["samplers"].append(
            {"input": self.accessor(np.asarray(times).reshape(-1, 1), minmax=True), "output": self.accessor(values),
             "interpolation": interpolation}
        )
        a["channels"].append({"sampler": len(a["samplers"]) - 1, "target": {"node": node, "path": path}})

    def write(self, path: Path) -> Path:
        path = Path(path)
        doc = dict(self.doc)
        if path.suffix == ".gltf":
            uri = "data:application/octet-stream;base64," + base64.b64encode(bytes(self.blob)).decode()
            doc["buffers"] = [{"byteLength": len(self.blob), "uri": uri}]
            path.write_text(json.dumps(doc))
            return path
        doc["buffers"] = [{"byteLength": len(self.blob)}]
        j = json.dumps(doc).encode()
        j += b" " * (-len(j) % 4)
        b = bytes(self.blob) + b"\0" * (-len(self.blob) % 4)
        total = 12 + 8 + len(j) + 8 + len(b)
        data = struct.pack("<4sII", b"glTF", 2, total) + struct.pack("<II", len(j), 0x4E4F534A) + j
        data += struct.pack("<II", len(b), 0x004E4942) + b
        path.write_bytes(data)
        return path
