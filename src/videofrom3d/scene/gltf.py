"""The small part of glTF 2.0 we read ourselves: the .glb/.gltf container, accessors, and node transforms.

Used by the scene reader (one object per mesh node, file order, exact node transforms) and by the camera
path reader (animated cameras). Node local matrix = ``T @ R @ S`` (quaternion x, y, z, w) or ``matrix``
(column-major); world matrix = parents' locals composed root first.
"""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from videofrom3d.scene.camera import quat_to_matrix

COMPONENT_TYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
TYPE_SIZES = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_JSON_CHUNK, _BIN_CHUNK = 0x4E4F534A, 0x004E4942


def read_gltf(path: Path, error: type[Exception] = ValueError) -> tuple[dict, list[bytes]]:
    """The JSON document and the bytes of every buffer (GLB BIN chunk, data: URI or a file beside it)."""
    data = path.read_bytes()
    where = str(path)
    binary = None
    if data[:4] == b"glTF":
        if len(data) < 20:
            raise error(f"{where}: truncated GLB header")
        _, version, length = struct.unpack_from("<4sII", data, 0)
        if version != 2:
            raise error(f"{where}: GLB version {version}; only glTF 2.0 is read")
        offset, doc = 12, None
        while offset + 8 <= min(length, len(data)):
            chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
            chunk = data[offset + 8 : offset + 8 + chunk_len]
            if chunk_type == _JSON_CHUNK:
                try:
                    doc = json.loads(chunk.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise error(f"{where}: broken GLB JSON chunk ({e})") from e
            elif chunk_type == _BIN_CHUNK and binary is None:
                binary = chunk
            offset += 8 + chunk_len
        if doc is None:
            raise error(f"{where}: GLB without a JSON chunk")
    else:
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise error(f"{where}: neither GLB nor glTF JSON ({e})") from e
    if not isinstance(doc, dict):
        raise error(f"{where}: the glTF JSON is not an object")
    buffers = []
    for i, buf in enumerate(doc.get("buffers", [])):
        uri = buf.get("uri")
        if uri is None:
            if binary is None:
                raise error(f"{where}: buffers[{i}] has no uri and the file has no BIN chunk")
            buffers.append(binary)
        elif uri.startswith("data:"):
            buffers.append(base64.b64decode(uri.split(",", 1)[1]))
        else:
            file = path.parent / unquote(uri)
            if not file.is_file():
                raise error(f"{where}: buffers[{i}] file {file} not found")
            buffers.append(file.read_bytes())
    return doc, buffers


def read_accessor(doc: dict, buffers: list[bytes], index: int, error: type[Exception] = ValueError) -> np.ndarray:
    """(count, components) float64 values of accessor ``index`` (normalised integers mapped as the spec
    says; interleaved views honoured)."""
    try:
        acc = doc["accessors"][index]
        if "sparse" in acc:
            raise error(f"sparse accessors are not supported (accessor {index})")
        dtype = np.dtype(COMPONENT_TYPES[acc["componentType"]]).newbyteorder("<")
        ncomp = TYPE_SIZES[acc["type"]]
        count = int(acc["count"])
        if "bufferView" not in acc:
            return np.zeros((count, ncomp))
        view = doc["bufferViews"][acc["bufferView"]]
        buf = buffers[view["buffer"]]
        start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        item = dtype.itemsize * ncomp
        stride = view.get("byteStride", item)
        if count == 0:
            return np.zeros((0, ncomp))
        if stride == item:
            arr = np.frombuffer(buf, dtype=dtype, count=count * ncomp, offset=start).reshape(count, ncomp)
        else:
            raw = np.frombuffer(buf, dtype=np.uint8, count=stride * (count - 1) + item, offset=start)
            rows = np.lib.stride_tricks.as_strided(raw, shape=(count, item), strides=(stride, 1))
            arr = np.ascontiguousarray(rows).view(dtype).reshape(count, ncomp)
    except (KeyError, IndexError, TypeError) as e:
        raise error(f"accessor {index} is malformed ({type(e).__name__}: {e})") from e
    except ValueError as e:  # numpy: buffer too small
        raise error(f"accessor {index} reads past its buffer ({e})") from e
    out = arr.astype(np.float64)
    if acc.get("normalized", False) and np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.maximum(out / info.max, -1.0) if info.min < 0 else out / info.max
    return out


def trs_matrices(t: np.ndarray, r: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(m, 3) translation, (m, 4) rotation x y z w, (m, 3) scale -> (m, 4, 4) ``T @ R @ S``."""
    M = np.zeros((len(t), 4, 4))
    M[:, :3, :3] = quat_to_matrix(r) * s[:, None, :]
    M[:, :3, 3] = t
    M[:, 3, 3] = 1.0
    return M


def local_matrix(node: dict, error: type[Exception] = ValueError) -> np.ndarray:
    """(4, 4) static local transform of a node."""
    try:
        if "matrix" in node:
            M = np.array(node["matrix"], np.float64).reshape(4, 4).T  # stored column-major
        else:
            t = np.array(node.get("translation", [0.0, 0.0, 0.0]), np.float64).reshape(1, 3)
            r = np.array(node.get("rotation", [0.0, 0.0, 0.0, 1.0]), np.float64).reshape(1, 4)
            s = np.array(node.get("scale", [1.0, 1.0, 1.0]), np.float64).reshape(1, 3)
            if np.linalg.norm(r) < 1e-12:
                raise ValueError("rotation is a zero quaternion")
            M = trs_matrices(t, r, s)[0]
    except (ValueError, TypeError) as e:
        raise error(f"node {node.get('name', '')!r} has a malformed transform ({e})") from e
    if not np.isfinite(M).all():
        raise error(f"node {node.get('name', '')!r} has NaN or inf in its transform")
    return M


def scene_roots(doc: dict) -> list[int]:
    """Root nodes of the default scene (``scene``, else scene 0, else every node without a parent)."""
    scenes = doc.get("scenes") or []
    if scenes:
        return list(scenes[doc.get("scene", 0)].get("nodes", []))
    children = {c for n in doc.get("nodes", []) for c in n.get("children", [])}
    return [i for i in range(len(doc.get("nodes", []))) if i not in children]


def parents(doc: dict) -> dict[int, int]:
    """child node index -> parent node index."""
    return {c: i for i, n in enumerate(doc.get("nodes", [])) for c in n.get("children", [])}
