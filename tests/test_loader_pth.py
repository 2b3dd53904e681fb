"""VPRTempoQuant ``.pth`` loader: faithful extraction and precise errors for bad files."""

from __future__ import annotations

import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch_oracle as O  # noqa: E402

from simulator.loaders import load_model  # noqa: E402
from simulator.loaders.vprtempo_pth import load_vprtempo_pth  # noqa: E402
from simulator.network import ModelError  # noqa: E402

PACKED = "{}.w._packed_params._packed_params"


@pytest.fixture(scope="module")
def two_modules() -> list[O.VPRTempoQuantModule]:
    rng = np.random.default_rng(7)
    return [
        O.qat_module(6, 12, 5, rng, weight_style="vprtempo", input_range=(-0.2, 1.0)),
        O.qat_module(6, 12, 3, rng, weight_style="normal", input_range=(0.0, 2.0)),
    ]


@pytest.fixture()
def good_pth(tmp_path: Path, two_modules: list[Any]) -> Path:
    return O.save_pth(two_modules, tmp_path / "good.pth")


def _state(path: Path) -> dict[str, Any]:
    with O.quiet():
        return torch.load(path, map_location="cpu", weights_only=True)


def _save(obj: Any, path: Path) -> Path:
    with O.quiet():
        torch.save(obj, path)
    return path


def _raises(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelError) as info:
        load_vprtempo_pth(path)
    msg = str(info.value)
    assert str(path) in msg, msg
    for frag in fragments:
        assert frag in msg, msg
    assert "\n" not in msg
    return msg


# --- faithful extraction ----------------------------------------------------------------------


def test_roundtrip_matches_torch_tensors(good_pth: Path) -> None:
    sd = _state(good_pth)
    net = load_vprtempo_pth(good_pth)
    assert net.layout == "combined"
    assert len(net.modules) == 2
    assert net.in_features == 6
    assert net.places == 8
    for i, mod in enumerate(net.modules):
        s = sd[f"model_{i}"]
        for lname, tl in (("feature", "feature_layer"), ("output", "output_layer")):
            lay = mod.layer(lname)
            w, b = s[PACKED.format(tl)]
            p = lay.path("combined")
            assert p.weight.dtype == np.int8
            assert np.array_equal(p.weight, w.int_repr().numpy())
            assert np.array_equal(p.scale, w.q_per_channel_scales().numpy())
            assert np.array_equal(p.zero_point, w.q_per_channel_zero_points().numpy())
            assert b is None and p.bias is None
            assert lay.output_scale == float(s[f"{tl}.w.scale"])
            assert lay.output_zero_point == int(s[f"{tl}.w.zero_point"])
    # VPRTempoQuant.forward quantizes once with models[0].quant: shared by default
    s0 = sd["model_0"]
    for mod in net.modules:
        assert mod.input_scale == float(s0["quant.scale"])
        assert mod.input_zero_point == int(s0["quant.zero_point"])
    recorded = net.metadata["module_input_quant"]
    assert [r[0] for r in recorded] == [float(sd[f"model_{i}"]["quant.scale"]) for i in (0, 1)]
    assert recorded[0][0] != recorded[1][0]  # the fixture's modules were calibrated differently
    assert net.metadata["input_quantizer"] == "shared"
    assert "model_0.feature_layer.thr" in net.metadata["ignored_keys"]


def test_per_module_input_quantizer(good_pth: Path) -> None:
    sd = _state(good_pth)
    net = load_vprtempo_pth(good_pth, input_quantizer="per_module")
    for i, mod in enumerate(net.modules):
        assert mod.input_scale == float(sd[f"model_{i}"]["quant.scale"])
        assert mod.input_zero_point == int(sd[f"model_{i}"]["quant.zero_point"])


def test_load_model_dispatches_pth(good_pth: Path) -> None:
    net = load_model(good_pth)
    assert net.places == 8 and net.metadata["source_format"] == "vprtempo-pth"


def test_per_tensor_weights_broadcast(tmp_path: Path) -> None:
    m = O.qat_module(5, 10, 4, np.random.default_rng(3), qconfig="qnnpack")
    path = O.save_pth([m], tmp_path / "pt.pth")
    w = _state(path)["model_0"][PACKED.format("feature_layer")][0]
    assert w.qscheme() == torch.per_tensor_affine
    p = load_vprtempo_pth(path).modules[0].layer("feature").path("combined")
    assert p.scale.shape == (10,)
    assert np.all(p.scale == w.q_scale())
    assert np.all(p.zero_point == w.q_zero_point())


def test_many_modules_in_numeric_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    mods = [O.qat_module(3, 6, 1 + i, rng, passes=1) for i in range(12)]
    path = O.save_pth(mods, tmp_path / "twelve.pth")
    net = load_vprtempo_pth(path)
    # model_10 must follow model_9, not model_1 (lexicographic order would break this)
    assert [m.places for m in net.modules] == list(range(1, 13))


def test_bias_is_kept(tmp_path: Path) -> None:
    m = O.qat_module(4, 8, 3, np.random.default_rng(5), bias=True)
    path = O.save_pth([m], tmp_path / "bias.pth")
    b = _state(path)["model_0"][PACKED.format("output_layer")][1]
    p = load_vprtempo_pth(path).modules[0].layer("output").path("combined")
    assert p.bias is not None and np.array_equal(p.bias, b.detach().numpy())


def test_bare_state_dict_is_one_module(tmp_path: Path, two_modules: list[Any]) -> None:
    path = _save(two_modules[1].state_dict(), tmp_path / "bare.pth")
    net = load_vprtempo_pth(path)
    assert len(net.modules) == 1 and net.places == 3


# --- bad files --------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    _raises(tmp_path / "nope.pth", "no such model file")


@pytest.mark.parametrize("content", [b"", b"not a torch file at all\n", bytes(range(256)) * 4])
def test_not_a_torch_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    _raises(path, "not a readable torch file")


@pytest.mark.parametrize("fraction", [0.02, 0.5, 0.97])
def test_truncated_file(tmp_path: Path, good_pth: Path, fraction: float) -> None:
    data = good_pth.read_bytes()
    path = tmp_path / "cut.pth"
    path.write_bytes(data[: int(len(data) * fraction)])
    _raises(path, "truncated")


def test_arbitrary_pickle_is_refused(tmp_path: Path) -> None:
    path = _save({"model_0": Path("x")}, tmp_path / "obj.pth")
    _raises(path, "refusing to unpickle")


def test_top_level_not_a_dict(tmp_path: Path) -> None:
    _raises(_save([torch.zeros(2)], tmp_path / "list.pth"), "expected a dict")


@pytest.mark.parametrize(
    ("keys", "fragment"),
    [
        (["model_0", "model_2"], "missing model_1"),
        (["model_0", "args"], "unexpected top-level key 'args'"),
        ([], "no modules"),
    ],
)
def test_bad_module_keys(tmp_path: Path, good_pth: Path, keys: list[str], fragment: str) -> None:
    sd = _state(good_pth)["model_0"]
    _raises(_save({k: sd for k in keys}, tmp_path / "keys.pth"), fragment)


def test_module_not_a_state_dict(tmp_path: Path) -> None:
    _raises(_save({"model_0": torch.zeros(3)}, tmp_path / "t.pth"), "'model_0'", "state dict")


REQUIRED = [
    "quant.scale",
    "quant.zero_point",
    "feature_layer.w.scale",
    "feature_layer.w.zero_point",
    "feature_layer.w._packed_params._packed_params",
    "output_layer.w.scale",
    "output_layer.w.zero_point",
    "output_layer.w._packed_params._packed_params",
]


@pytest.mark.parametrize("key", REQUIRED)
@pytest.mark.parametrize("module", [0, 1])
def test_missing_key(tmp_path: Path, good_pth: Path, key: str, module: int) -> None:
    sd = _state(good_pth)
    del sd[f"model_{module}"][key]
    msg = _raises(_save(sd, tmp_path / "miss.pth"), f"model_{module}", f"missing key {key!r}")
    assert "quant.scale" in msg or key != "quant.scale"


def _edit(good_pth: Path, tmp_path: Path, module: int, key: str, value: Any) -> Path:
    sd = _state(good_pth)
    sd[f"model_{module}"][key] = value
    return _save(sd, tmp_path / "edit.pth")


def test_quint8_weights_rejected(tmp_path: Path, good_pth: Path) -> None:
    w = torch.quantize_per_tensor(torch.rand(12, 6), 0.01, 0, torch.quint8)
    path = _edit(good_pth, tmp_path, 0, PACKED.format("feature_layer"), (w, None))
    _raises(path, PACKED.format("feature_layer"), "qint8")


def test_float_weights_rejected(tmp_path: Path, good_pth: Path) -> None:
    path = _edit(good_pth, tmp_path, 1, PACKED.format("output_layer"), (torch.rand(3, 12), None))
    _raises(path, "model_1", PACKED.format("output_layer"), "not a quantized tensor")


def test_dynamic_fp16_dtype_rejected(tmp_path: Path, good_pth: Path) -> None:
    path = _edit(good_pth, tmp_path, 0, "output_layer.w._packed_params.dtype", torch.float16)
    _raises(path, "output_layer.w._packed_params.dtype", "qint8")


def _qw(rows: int, cols: int) -> Any:
    return torch.quantize_per_channel(
        torch.randn(rows, cols),
        torch.full((rows,), 0.01, dtype=torch.float64),
        torch.zeros(rows, dtype=torch.long),
        0,
        torch.qint8,
    )


def test_layer_shape_mismatch(tmp_path: Path, good_pth: Path) -> None:
    path = _edit(good_pth, tmp_path, 0, PACKED.format("output_layer"), (_qw(5, 11), None))
    _raises(path, "model_0", "output_layer", "takes 11 inputs", "gives 12 outputs")


def test_module_input_size_mismatch(tmp_path: Path, good_pth: Path) -> None:
    sd = _state(good_pth)
    sd["model_1"][PACKED.format("feature_layer")] = (_qw(12, 7), None)
    _raises(_save(sd, tmp_path / "k.pth"), "model_1", "takes 7 inputs", "model_0 takes 6")


def test_weight_axis_1_rejected(tmp_path: Path, good_pth: Path) -> None:
    w = torch.quantize_per_channel(
        torch.randn(12, 6),
        torch.full((6,), 0.01, dtype=torch.float64),
        torch.zeros(6, dtype=torch.long),
        1,
        torch.qint8,
    )
    path = _edit(good_pth, tmp_path, 0, PACKED.format("feature_layer"), (w, None))
    _raises(path, "axis 1")


@pytest.mark.parametrize("key", ["quant.scale", "feature_layer.w.scale", "output_layer.w.scale"])
@pytest.mark.parametrize("value", [float("nan"), 0.0, -0.5, float("inf")])
def test_bad_scales(tmp_path: Path, good_pth: Path, key: str, value: float) -> None:
    path = _edit(good_pth, tmp_path, 0, key, torch.tensor([value]))
    _raises(path, repr(key), "finite and > 0")


@pytest.mark.parametrize("key", ["quant.zero_point", "output_layer.w.zero_point"])
@pytest.mark.parametrize("value", [-1, 256])
def test_bad_zero_points(tmp_path: Path, good_pth: Path, key: str, value: int) -> None:
    path = _edit(good_pth, tmp_path, 0, key, torch.tensor([value]))
    _raises(path, repr(key), "[0, 255]")


def test_zero_weight_scale_rejected(tmp_path: Path, good_pth: Path) -> None:
    w = torch._make_per_channel_quantized_tensor(
        torch.ones(12, 6, dtype=torch.int8),
        torch.zeros(12, dtype=torch.float64),
        torch.zeros(12, dtype=torch.long),
        0,
    )
    path = _edit(good_pth, tmp_path, 0, PACKED.format("feature_layer"), (w, None))
    _raises(path, PACKED.format("feature_layer"), "scales must be finite and > 0")


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("feature_layer.extra_gain", "could change the arithmetic"),
        ("feature_layer.w.weight", "float (unquantized) model"),
        ("quant.activation_post_process.scale", "not converted"),
    ],
)
def test_unknown_keys_are_not_dropped(tmp_path: Path, good_pth: Path, key: str, hint: str) -> None:
    path = _edit(good_pth, tmp_path, 1, key, torch.ones(2))
    _raises(path, "model_1", repr(key), hint)


def test_unquantized_float_model(tmp_path: Path) -> None:
    m = O.VPRTempoQuantModule(4, 8, 2)
    sd = OrderedDict((k, v) for k, v in m.state_dict().items())
    _raises(_save({"model_0": sd}, tmp_path / "float.pth"), "unexpected key")


def test_torch_missing(monkeypatch: pytest.MonkeyPatch, good_pth: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)
    _raises(good_pth, "pip install tempo-hwsim[torch]")


def test_cli_style_error_for_bad_input_quantizer(good_pth: Path) -> None:
    with pytest.raises(ModelError, match="input_quantizer"):
        load_vprtempo_pth(good_pth, input_quantizer="both")  # type: ignore[arg-type]


@pytest.mark.parametrize("damage", ["truncate", "missing_key"])
def test_cli_rejects_bad_pth(
    tmp_path: Path, good_pth: Path, damage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from simulator.cli import main

    bad = tmp_path / "bad.pth"
    if damage == "truncate":
        bad.write_bytes(good_pth.read_bytes()[:500])
    else:
        sd = _state(good_pth)
        del sd["model_1"]["output_layer.w.scale"]
        _save(sd, bad)
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 6), dtype=np.float32))
    out = tmp_path / "out"
    rc = main(
        [
            "run",
            "--config",
            "pytorch_fbgemm",
            "--model",
            str(bad),
            "--input",
            str(x),
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc != 0
    assert len(err.splitlines()) == 1 and str(bad) in err, err
    assert not (out / "outputs.npy").exists()
