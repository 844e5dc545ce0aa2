"""HED annotator: the ControlNetHED_Apache2 layout, weight loading (safetensors / weights_only torch files),
and the classical fallback that always warns."""

import warnings

import numpy as np
import pytest

from videofrom3d.annotators import hed
from videofrom3d.annotators.hed import classical_soft_edges, make_edge_detector
from videofrom3d.models import MissingModelError


def _square(h=64, w=96):
    img = np.zeros((h, w, 3), np.float32)
    img[20:44, 30:66] = 1.0
    return img


def test_classical_edges_sit_on_the_boundary():
    edges = classical_soft_edges(_square())
    assert edges.shape == (64, 96) and edges.dtype == np.float32
    assert edges[20, 48] > 0.7 and edges[32, 30] > 0.7  # on the square's border
    assert edges[32, 48] < 0.05 and edges[5, 5] < 0.05  # inside and far outside
    assert 0 <= edges.min() and edges.max() <= 1
    # a few pixels wide, soft
    row = edges[:, 48]
    assert 2 <= int((row[10:30] > 0.3).sum()) <= 8


@pytest.fixture
def no_hed(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("VIDEOFROM3D_MODELS", str(tmp_path / "models"))
    monkeypatch.setattr(hed, "_WARNED", False)
    return tmp_path


def test_fallback_warns_and_network_mode_errors(no_hed, caplog):
    with pytest.warns(UserWarning, match="classical soft-edge fallback"):
        det = make_edge_detector("auto")
    assert det is classical_soft_edges
    with pytest.raises(MissingModelError) as err:
        make_edge_detector("network")
    assert "lllyasviel/Annotators" in str(err.value) and str(no_hed / "models") in str(err.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the classical mode chosen explicitly does not warn
        assert make_edge_detector("classical") is classical_soft_edges


@pytest.mark.torch
def test_network_layout_and_weight_loading(no_hed):
    torch = pytest.importorskip("torch")
    net = hed.build_hed_network()
    state = net.state_dict()
    # the public ControlNetHED.pth: 14,716,168 parameters, keys norm / blockN.convs.M / blockN.projection
    assert sum(v.numel() for v in state.values()) == 14_716_168
    assert list(state)[:3] == ["norm", "block1.convs.0.weight", "block1.convs.0.bias"]
    assert "block5.convs.2.weight" in state and "block5.projection.bias" in state
    assert state["block3.convs.0.weight"].shape == (256, 128, 3, 3)
    g = torch.Generator().manual_seed(0)
    weights = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in state.items()}
    folder = no_hed / "models" / "Annotators"
    folder.mkdir(parents=True)
    torch.save({k: v.half() for k, v in weights.items()}, folder / "ControlNetHED.pth")  # stored as fp16
    det = make_edge_detector("auto")
    assert isinstance(det, hed.HEDDetector) and det.detect_resolution == 512  # the annotator's default
    det.detect_resolution = 128  # keep the test fast
    out = det(_square())
    assert out.shape == (64, 96) and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1
    assert out.std() > 1e-3
    loaded = det.network.state_dict()
    assert torch.equal(loaded["block2.convs.1.weight"], weights["block2.convs.1.weight"].half().float())
    # the same weights as safetensors give the same edges
    from safetensors.torch import save_file

    (folder / "ControlNetHED.pth").unlink()
    save_file({k: v.half() for k, v in weights.items()}, str(folder / "ControlNetHED.safetensors"))
    det2 = make_edge_detector("network")
    det2.detect_resolution = 128
    out2 = det2(_square())
    assert np.allclose(out, out2, atol=1e-6)
    # the full preprocessing and postprocessing is checked against controlnet_aux itself in
    # tests/test_reference_weights.py; here only the side-output shapes at the detect size
    x = torch.zeros(1, 3, 128, 192)
    assert [s.shape[-1] for s in det.network(x)] == [192, 96, 48, 24, 12]
