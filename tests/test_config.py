"""Hardware config: presets, ``--set`` overrides, per-layer overrides, and precise errors.

Every rejected config must raise ConfigError whose single-line message names the file, the
dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from simulator.config import (
    LAYER_SECTIONS,
    PRESET_DIR,
    SECTIONS,
    ConfigError,
    HwConfig,
    build_config,
    load_config,
    preset_names,
    schema_rows,
    schema_units,
)
from simulator.engine import check_fit
from simulator.fixedpoint import ROUNDING_MODES
from simulator.network import make_combined_network

PRESETS = ("int8_fixed_point", "pytorch_fbgemm", "pytorch_qnnpack", "seed_tutorial")
ROUNDING_LIST = ", ".join(ROUNDING_MODES)


def _write(tmp_path: Path, text: str, name: str = "hw.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _raises(path_or_name: str | Path, *fragments: str, overrides: list[str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path_or_name, overrides or [])
    msg = str(info.value)
    assert "\n" not in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in: {msg}"
    return msg


# --- presets ------------------------------------------------------------------------------------


def test_preset_list() -> None:
    assert set(PRESETS) <= set(preset_names())
    assert sorted(p.stem for p in PRESET_DIR.glob("*.toml")) == preset_names()


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads(name: str) -> None:
    cfg = load_config(name)
    assert isinstance(cfg, HwConfig)
    assert cfg.name == name
    assert cfg.description
    assert Path(cfg.source) == PRESET_DIR / f"{name}.toml"
    assert len(cfg.sha256) == 64
    # same config by path and by "name.toml"
    assert load_config(PRESET_DIR / f"{name}.toml").sha256 == cfg.sha256
    assert load_config(f"{name}.toml").sha256 == cfg.sha256
    for lname in ("feature", "output"):
        hw = cfg.for_layer(lname)
        assert hw.accumulator.bits >= 2
        assert hw.requant.rounding in ROUNDING_MODES


def test_preset_values() -> None:
    fb = load_config("pytorch_fbgemm")
    assert (fb.requant.scheme, fb.accumulator.bits, fb.accumulator.overflow) == (
        "fbgemm", 32, "wrap")
    assert load_config("pytorch_qnnpack").requant.scheme == "qnnpack"
    fx = load_config("int8_fixed_point")
    assert (fx.requant.scheme, fx.requant.multiplier_bits, fx.report.compare_with) == (
        "fixed_point", 31, "pytorch_fbgemm")
    seed = load_config("seed_tutorial")
    feat, out = seed.for_layer("feature"), seed.for_layer("output")
    assert feat.requant.exc_divisors == ((0, 2), (2,))
    assert feat.requant.inh_divisors == ((1, 3), (3,))
    assert (feat.requant.inh_pre_offset, feat.requant.inh_post_offset) == (127, 127)
    assert out.requant.exc_divisors == ((0,),) and out.requant.inh_divisors == ((1,),)
    assert out.requant.inh_post_offset == 0
    assert (feat.combiner.inh_divisor, out.combiner.inh_divisor) == (2, 3)
    assert (feat.combiner.scale, feat.combiner.zero_point) == (58.0, 61)
    assert feat.combiner.cast_rounding == "toward_zero"
    assert feat.combiner.clip_high == "input_max"


def test_missing_preset_lists_presets() -> None:
    _raises("no_such_preset", "no_such_preset", "no such config file or preset",
            "int8_fixed_point", "seed_tutorial")
    _raises("no_such_dir/x.toml", "no_such_dir/x.toml", "presets:")


# --- --set overrides ------------------------------------------------------------------------------


def test_set_override_changes_every_layer() -> None:
    base = load_config("int8_fixed_point")
    cfg = load_config("int8_fixed_point", ["accumulator.bits=24"])
    assert cfg.accumulator.bits == 24
    assert cfg.for_layer("feature").accumulator.bits == 24
    assert cfg.for_layer("output").accumulator.bits == 24
    assert cfg.sha256 != base.sha256
    assert load_config("int8_fixed_point", ["accumulator.bits=24"]).sha256 == cfg.sha256
    assert base.accumulator.bits == 32  # loading again does not leak the override


@pytest.mark.parametrize(
    ("item", "key", "value"),
    [
        ("requant.rounding=floor", "requant.rounding", "floor"),  # bare string
        ('requant.rounding="half_away"', "requant.rounding", "half_away"),  # TOML string
        ("accumulator.overflow = error", "accumulator.overflow", "error"),  # spaces
        ("clock.mhz=1e3", "clock.mhz", 1000.0),
        ("clock.mhz=250", "clock.mhz", 250.0),  # integer for a float key
        ("spikes.signed=true", "spikes.signed", True),
        ("requant.exc_divisors=[[0], [2]]", "requant.exc_divisors", ((0,), (2,))),
        ("requant.clamp_high=200", "requant.clamp_high", 200),
        ("report.compare_with=", "report.compare_with", ""),
        ("report.compare_with=pytorch_qnnpack", "report.compare_with", "pytorch_qnnpack"),
        ("mac.lanes=1", "mac.lanes", 1),
        ("schedule.mode=event_driven", "schedule.mode", "event_driven"),
        ("weights.capacity_kib=1", "weights.capacity_kib", 1),
    ],
)
def test_set_override_values(item: str, key: str, value: object) -> None:
    cfg = load_config("int8_fixed_point", [item])
    sec, name = key.split(".")
    got = getattr(getattr(cfg, sec), name)
    assert got == value and type(got) is type(value)


def test_set_per_layer_override() -> None:
    cfg = load_config("int8_fixed_point", ["layers.output.accumulator.bits=20",
                                           "layers.feature.requant.rounding=floor"])
    assert cfg.for_layer("feature").accumulator.bits == 32
    assert cfg.for_layer("output").accumulator.bits == 20
    assert cfg.for_layer("feature").requant.rounding == "floor"
    assert cfg.for_layer("output").requant.rounding == "half_even"
    assert cfg.accumulator.bits == 32  # the network-wide section is unchanged


def test_set_later_override_wins() -> None:
    cfg = load_config("int8_fixed_point", ["accumulator.bits=20", "accumulator.bits=40"])
    assert cfg.accumulator.bits == 40


def test_file_per_layer_override_merges_with_section(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[accumulator]
bits = 32
overflow = "error"

[layers.feature.accumulator]
bits = 20

[layers.output.requant]
rounding = "toward_zero"
output_bits = 16
output_signed = true
""")
    cfg = load_config(path)
    feat, out = cfg.for_layer("feature"), cfg.for_layer("output")
    assert (feat.accumulator.bits, feat.accumulator.overflow) == (20, "error")
    assert (out.accumulator.bits, out.accumulator.overflow) == (32, "error")
    assert (feat.requant.rounding, out.requant.rounding) == ("half_even", "toward_zero")
    assert (out.requant.output_bits, out.requant.output_signed) == (16, True)
    assert cfg.name == "hw"  # file stem when no name is given
    assert cfg.layer_overrides == {
        "feature": {"accumulator": {"bits": 20}},
        "output": {"requant": {"rounding": "toward_zero", "output_bits": 16,
                               "output_signed": True}},
    }


def test_empty_config_gives_schema_defaults(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "# nothing\n"))
    for sname, cls in SECTIONS.items():
        assert getattr(cfg, sname) == cls()


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("accumulator.bits", ("--set 'accumulator.bits'", "expected key=value")),
        ("=3", ("malformed key",)),
        ("accumulator..bits=3", ("malformed key", "'accumulator..bits'")),
        ("accumulator.bits.x=1", ("'bits' is a value, not a section",)),
    ],
)
def test_set_malformed(item: str, fragments: tuple[str, ...]) -> None:
    _raises("int8_fixed_point", *fragments, overrides=[item])


@pytest.mark.parametrize(
    ("item", "fragments"),
    [
        ("acumulator.bits=24", ("unknown key 'acumulator'", "did you mean 'accumulator'")),
        ("accumulator.bitz=24", ("'accumulator.bitz'", "did you mean 'accumulator.bits'",
                                 "bits, overflow, adder_tree_width")),
        ("accumulator.bits=0", ("'accumulator.bits' = 0", "allowed 2..64")),
        ("accumulator.bits=abc", ("'accumulator.bits'", "integer in 2..64", "'abc'")),
        ("requant.rounding=trunc", ("'requant.rounding' = 'trunc'", "did you mean 'toward_zero'",
                                    ROUNDING_LIST)),
        ("layers.feature.accumulator.bits=99", ("'layers.feature.accumulator.bits' = 99",
                                                "allowed 2..64")),
        ("layers.hidden.accumulator.bits=9", ("'layers.hidden'", "feature, output")),
    ],
)
def test_set_errors_name_the_override(item: str, fragments: tuple[str, ...]) -> None:
    msg = _raises("int8_fixed_point", str(PRESET_DIR / "int8_fixed_point.toml"), *fragments,
                  overrides=[item])
    assert msg.endswith(f"(from --set {item})")


# --- bad config files -----------------------------------------------------------------------------

BAD_FILES = [
    # unknown keys: top level, in a section, in a per-layer section
    ("[acumulator]\nbits = 24", ("unknown key 'acumulator'", "did you mean 'accumulator'",
                                 "allowed top-level keys", "accumulator, clock, combiner")),
    ("nmae = 'x'", ("unknown key 'nmae'", "did you mean 'name'")),
    ("[accumulator]\nbitz = 24", ("'accumulator.bitz'", "did you mean 'accumulator.bits'",
                                  "bits, overflow, adder_tree_width")),
    ("[mac]\nlane = 4", ("'mac.lane'", "did you mean 'mac.lanes'", "lanes, operand")),
    ("[layers.output.requant]\nrouding = 'floor'",
     ("'layers.output.requant.rouding'", "did you mean 'layers.output.requant.rounding'",
      "scheme, rounding, multiplier_bits")),
    ("[layers.output.accumulator]\nwidth = 3",
     ("'layers.output.accumulator.width'", "bits, overflow, adder_tree_width")),
    ("[layers.fetaure.accumulator]\nbits = 20",
     ("unknown layer 'layers.fetaure'", "did you mean 'layers.feature'", "feature, output")),
    ("[layers.feature.weights]\nbits = 4",
     ("'layers.feature.weights' cannot be set per layer", ", ".join(LAYER_SECTIONS))),
    ("[layers.feature.acumulator]\nbits = 4",
     ("'layers.feature.acumulator'", "did you mean 'layers.feature.accumulator'")),
    ("[layers.feature]\nbits = 4", ("'layers.feature.bits'", "[layers.feature.<section>]")),
    ("layers = 3", ("'layers' must be a table",)),
    # wrong types
    ("[accumulator]\nbits = '24'", ("'accumulator.bits'", "integer in 2..64", "'24'")),
    ("[accumulator]\nbits = 24.0", ("'accumulator.bits'", "integer in 2..64", "24.0")),
    ("[accumulator]\nbits = true", ("'accumulator.bits'", "integer in 2..64")),
    ("[spikes]\nsigned = 'no'", ("'spikes.signed'", "true or false")),
    ("[spikes]\nsigned = 1", ("'spikes.signed'", "true or false")),
    ("[clock]\nmhz = 'fast'", ("'clock.mhz'", "number in 1e-06..1000000.0")),
    ("[requant]\nrounding = 3", ("'requant.rounding' = 3", ROUNDING_LIST)),
    ("[requant]\nclamp_low = 'low'", ("'requant.clamp_low'", "integer or 'register'")),
    ("[requant]\nclamp_high = 2.5", ("'requant.clamp_high'", "integer or 'register'")),
    ("[combiner]\nclip_high = 'max'", ("'combiner.clip_high'", "'input_max' or 'register'")),
    ("[requant]\nexc_divisors = [[4]]", ("'requant.exc_divisors'", "indices 0..3")),
    ("[requant]\ninh_divisors = [[]]", ("'requant.inh_divisors'", "indices 0..3")),
    ("[requant]\ninh_divisors = 3", ("'requant.inh_divisors'", "indices 0..3")),
    ("name = 3", ("'name' must be a string",)),
    ("description = ['a']", ("'description' must be a string",)),
    ("accumulator = 3", ("'accumulator' must be a table", "[accumulator]")),
    ("[layers.feature]\naccumulator = 3", ("'layers.feature.accumulator' must be a table",)),
    # impossible widths
    ("[accumulator]\nbits = 0", ("'accumulator.bits' = 0", "allowed 2..64")),
    ("[accumulator]\nbits = 65", ("'accumulator.bits' = 65", "allowed 2..64")),
    ("[accumulator]\nbits = 1", ("'accumulator.bits' = 1", "allowed 2..64")),
    ("[spikes]\nbits = 0", ("'spikes.bits' = 0", "allowed 1..64")),
    ("[weights]\nbits = 65", ("'weights.bits' = 65", "allowed 1..64")),
    ("[weights]\nbits = 1", ("'weights.bits' = 1", "signed", "2..64")),
    ("[spikes]\nbits = 1\nsigned = true", ("'spikes.bits' = 1", "signed", "2..64")),
    ("[requant]\noutput_bits = 0", ("'requant.output_bits' = 0", "allowed 1..64")),
    ("[requant]\noutput_bits = 1\noutput_signed = true",
     ("'requant.output_bits' = 1", "signed", "2..64")),
    ("[requant]\nmultiplier_bits = 33", ("'requant.multiplier_bits' = 33", "allowed 2..32")),
    ("[mac]\npre_add_bits = 100", ("'mac.pre_add_bits' = 100", "allowed 2..64")),
    ("[layers.output.accumulator]\nbits = 0",
     ("'layers.output.accumulator.bits' = 0", "allowed 2..64")),
    ("[mac]\nlanes = 0", ("'mac.lanes' = 0", "allowed 1..")),
    ("[clock]\nmhz = nan", ("'clock.mhz' = nan", "allowed 1e-06..")),
    ("[clock]\nmhz = inf", ("'clock.mhz' = inf", "allowed 1e-06..")),
    ("[energy]\nadd_pj_per_bit = -1", ("'energy.add_pj_per_bit' = -1", "allowed 0..")),
    # names that do not exist
    ("[requant]\nrounding = 'trunc'", ("'requant.rounding' = 'trunc'",
                                       "did you mean 'toward_zero'", ROUNDING_LIST)),
    ("[spikes]\nrounding = 'round'", ("'spikes.rounding' = 'round'",
                                      "did you mean 'half_away'", ROUNDING_LIST)),
    ("[combiner]\ncast_rounding = 'nearest_even'", ("'combiner.cast_rounding'",
                                                    "did you mean 'half_even'")),
    ("[layers.output.requant]\nrounding = 'half-even'",
     ("'layers.output.requant.rounding' = 'half-even'", "did you mean 'half_even'")),
    ("[requant]\nrounding = 'HALF_UP'", ("did you mean 'half_up'", ROUNDING_LIST)),
    ("[accumulator]\noverflow = 'clip'", ("'accumulator.overflow' = 'clip'",
                                          "wrap, saturate, error")),
    ("[mac]\npre_add_overflow = 'Wrap'", ("did you mean 'wrap'", "wrap, saturate, error")),
    ("[requant]\nscheme = 'fixedpoint'", ("'requant.scheme'", "did you mean 'fixed_point'",
                                          "fbgemm, qnnpack, fixed_point, two_stage, float64, "
                                          "dequant_quant, seed_floor_divide")),
    ("[schedule]\nmode = 'sparse'", ("'schedule.mode' = 'sparse'", "dense, event_driven")),
    ("[spikes]\nquantizer = 'fma'",
     ("'spikes.quantizer'", "fma_f32, div_f32, mul_inv_f32, float64")),
    ("[report]\ncompare_with = 'pytorch_fbgem'",
     ("'report.compare_with' = 'pytorch_fbgem'", "pytorch_fbgemm", "int8_fixed_point")),
    # clamp outside the output register
    ("[requant]\nclamp_high = 256", ("'requant.clamp_high'", "u8 [0, 255]", "[0, 256]")),
    ("[requant]\nclamp_low = -1", ("'requant.clamp_low'", "u8 [0, 255]")),
    ("[requant]\noutput_bits = 4\nclamp_high = 100", ("'requant.clamp_high'", "u4 [0, 15]")),
    ("[requant]\noutput_signed = true\nclamp_low = -129",
     ("'requant.clamp_low'", "s8 [-128, 127]")),
    ("[requant]\nclamp_low = 10\nclamp_high = 5",
     ("'requant.clamp_low' (10) is above 'requant.clamp_high' (5)", "u8 [0, 255]")),
    ("[layers.output.requant]\nclamp_high = 300",
     ("layer 'output'", "'requant.clamp_high'", "u8 [0, 255]")),
]


@pytest.mark.parametrize(("text", "fragments"), BAD_FILES)
def test_bad_config_file(tmp_path: Path, text: str, fragments: tuple[str, ...]) -> None:
    path = _write(tmp_path, text + "\n")
    _raises(path, f"{path}: ", *fragments)


def test_toml_syntax_errors(tmp_path: Path) -> None:
    for i, text in enumerate(["[accumulator\nbits = 3\n", "[accumulator]\nbits = \n",
                              "[accumulator]\nbits = 3\nbits = 4\n", "a = 'unterminated\n"]):
        path = _write(tmp_path, text, f"bad{i}.toml")
        _raises(path, f"{path}: TOML syntax error", "(at ")  # at line N / at end
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    _raises(path, f"{path}: not UTF-8")


# --- schema-driven boundaries: every key, at and beyond its limits ---------------------------


def _schema_fields() -> list[tuple[str, str, dataclasses.Field]]:
    return [(s, f.name, f) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)]


def _put(prefix: str, key: str, value: object) -> dict:
    raw: dict = {}
    node = raw
    for part in prefix.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    if f"{prefix}.{key}" == "weights.bits":
        node["signed"] = False  # 1-bit weights are only possible unsigned
    return raw


@pytest.mark.parametrize(("sname", "key", "fld"), _schema_fields(),
                         ids=[f"{s}.{k}" for s, k, _ in _schema_fields()])
def test_every_key_limits(sname: str, key: str, fld: dataclasses.Field) -> None:
    """Each key: accepted at its limits / for every choice, rejected beyond them, also when
    set per layer; the error names the file and the full dotted key."""
    meta = fld.metadata
    prefixes = [sname] + ([f"layers.feature.{sname}", f"layers.output.{sname}"]
                          if sname in LAYER_SECTIONS else [])
    for prefix in prefixes:
        layer = prefix.split(".")[1] if prefix.startswith("layers.") else None

        def ok(value: object, prefix: str = prefix, layer: str | None = layer) -> None:
            cfg = build_config(_put(prefix, key, value), "schema.toml")
            sec = getattr(cfg.for_layer(layer), sname) if layer else getattr(cfg, sname)
            assert getattr(sec, key) == value

        def bad(value: object, *frags: str, prefix: str = prefix) -> None:
            with pytest.raises(ConfigError) as info:
                build_config(_put(prefix, key, value), "schema.toml")
            msg = str(info.value)
            assert msg.startswith("schema.toml: ") and f"'{prefix}.{key}'" in msg, msg
            for frag in frags:
                assert frag in msg, msg

        if "choices" in meta:
            for choice in meta["choices"]:
                ok(choice)
            bad("no_such_choice", ", ".join(meta["choices"]))
            bad(1, ", ".join(meta["choices"]))
        elif "range" in meta:
            lo, hi = meta["range"]
            ok(lo)
            ok(hi)
            if isinstance(fld.default, float):
                bad(lo - abs(lo) * 0.5 - 1, f"allowed {lo}..{hi}")
                bad(hi * 2, f"allowed {lo}..{hi}")
                bad(float("nan"), f"allowed {lo}..{hi}")
            else:
                bad(lo - 1, f"allowed {lo}..{hi}")
                bad(hi + 1, f"allowed {lo}..{hi}")
                bad(float(lo), f"must be an integer in {lo}..{hi}")
            bad("12", "must be")
            bad(True, "must be")
        elif isinstance(fld.default, bool):
            ok(True)
            ok(False)
            bad(1, "true or false")
            bad("true", "true or false")
        else:  # free-form keys (clamps, divisor lists, compare_with): a wrong type
            bad(3.5 if key != "compare_with" else 7)


def test_schema_rows_cover_every_key() -> None:
    rows = schema_rows()
    keys = [r[0] for r in rows]
    assert len(keys) == len(set(keys))
    assert set(keys) == {f"{s}.{k}" for s, k, _ in _schema_fields()}
    for needed in ("spikes.bits", "weights.bits", "accumulator.bits", "accumulator.overflow",
                   "accumulator.adder_tree_width", "requant.rounding", "mac.lanes",
                   "schedule.mode"):
        assert needed in keys
    units = schema_units()
    assert set(units) == set(keys), "give every key a unit in simulator.config.UNITS"
    for key, default, allowed, meaning in rows:
        assert default and allowed and meaning, key
        assert units[key], key
    assert dict((r[0], r[2]) for r in rows)["requant.rounding"] == " | ".join(ROUNDING_MODES)


# --- the model must fit the config (simulator.engine.check_fit) -------------------------------


def _net(k0: int = 64, places: int = 10, wmax: int = 127, wmin: int = -128):
    rng = np.random.default_rng(1)

    def layer(n_out: int, n_in: int) -> dict:
        w = rng.integers(wmin, wmax + 1, (n_out, n_in)).astype(np.int8)
        w[0, 0], w[0, 1] = wmin, wmax
        return {"weight": w, "scale": 0.01, "output_scale": 0.05, "output_zero_point": 3}

    mod = {"input_scale": 1 / 255, "input_zero_point": 0,
           "feature": layer(2 * k0, k0), "output": layer(places, 2 * k0)}
    return make_combined_network([mod], source="toy.npz")


def test_weight_memory_capacity() -> None:
    net = _net()  # 64*128 + 128*10 = 9472 bytes of int8 -> 10 KiB
    check_fit(net, load_config("int8_fixed_point", ["weights.capacity_kib=10"]))
    with pytest.raises(ConfigError) as info:
        check_fit(net, load_config("int8_fixed_point", ["weights.capacity_kib=9"]))
    msg = str(info.value)
    for frag in ("int8_fixed_point.toml", "9472 bytes", "'weights.capacity_kib' = 9",
                 "weights.capacity_kib >= 10"):
        assert frag in msg, msg
    # 16-bit weight words double the footprint
    with pytest.raises(ConfigError, match="18944 bytes"):
        check_fit(net, load_config("int8_fixed_point", ["weights.capacity_kib=10",
                                                        "weights.bits=16"]))


def test_weights_wider_than_weight_memory() -> None:
    net = _net()
    with pytest.raises(ConfigError) as info:
        check_fit(net, load_config("int8_fixed_point", ["weights.bits=4"]))
    msg = str(info.value)
    for frag in ("int8_fixed_point.toml", "module 0 layer 'feature'", "-128..127",
                 "'weights.bits' = 4", "-8..7"):
        assert frag in msg, msg
    check_fit(_net(wmax=7, wmin=-8), load_config("int8_fixed_point", ["weights.bits=4"]))
    with pytest.raises(ConfigError, match="unsigned"):
        check_fit(net, load_config("int8_fixed_point", ["weights.signed=false"]))
    with pytest.raises(ConfigError, match="'weights.word_bits' = 8"):
        check_fit(net, load_config("int8_fixed_point", ["weights.bits=16",
                                                        "weights.word_bits=8"]))


def test_scheme_must_fit_layout() -> None:
    net = _net()
    with pytest.raises(ConfigError) as info:
        check_fit(net, load_config("seed_tutorial"))
    msg = str(info.value)
    for frag in ("seed_tutorial.toml", "'requant.scheme' = 'seed_floor_divide'", "combined",
                 "toy.npz", "fbgemm, qnnpack, fixed_point"):
        assert frag in msg, msg
    for name in ("int8_fixed_point", "pytorch_fbgemm", "pytorch_qnnpack"):
        check_fit(net, load_config(name))


def test_layer_to_layer_register_fit() -> None:
    with pytest.raises(ConfigError, match="'layers.output.spikes.bits'"):
        check_fit(_net(), load_config("int8_fixed_point", ["layers.output.spikes.bits=4"]))
    with pytest.raises(ConfigError, match="'mac.pre_add_width'"):
        check_fit(_net(), load_config("int8_fixed_point", ["mac.pre_add_width=3",
                                                           "accumulator.adder_tree_width=4"]))


# --- docs/hwconfig.md is generated from the schema ----------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _doc_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_hwconfig_doc",
                                                  ROOT / "tools" / "gen_hwconfig_doc.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_hwconfig_doc_is_up_to_date() -> None:
    tool = _doc_tool()
    doc = ROOT / "docs" / "hwconfig.md"
    text = doc.read_text()
    assert tool.render(text) == text, "docs/hwconfig.md is stale: python tools/gen_hwconfig_doc.py"
    units = schema_units()
    for key, _default, _allowed, meaning in schema_rows():
        row = next((ln for ln in text.splitlines() if ln.startswith(f"| `{key}` |")), None)
        assert row is not None, key
        assert f"| {units[key]} |" in row and meaning.replace("|", "\\|") in row, row
    for name in preset_names():
        assert f"| `{name}` |" in text


def test_hwconfig_doc_check_detects_staleness(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    tool = _doc_tool()
    text = (ROOT / "docs" / "hwconfig.md").read_text()
    stale = tmp_path / "hwconfig.md"
    stale.write_text(text.replace("| `accumulator.bits` |", "| `accumulator.width` |"))
    assert tool.main(["--check", "--doc", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert tool.main(["--doc", str(stale)]) == 0  # regenerates in place
    assert stale.read_text() == text
    assert tool.main(["--check", "--doc", str(stale)]) == 0
    assert tool.toml_value(((0, 2), (2,))) == "[[0, 2], [2]]"
    assert tool.toml_value(False) == "false" and tool.toml_value("x") == '"x"'


def test_fixed_requant_shift_applies_to_every_channel_and_rejects_lossy_shifts(
    tmp_path: Path,
) -> None:
    import numpy as np

    from simulator.engine import simulate
    from simulator.loaders import load_npz
    from simulator.units.requantizer import fixed_point_multipliers

    m0, sh = fixed_point_multipliers(0.5, np.array([0.25, 0.75]), 1.0, 16, 12)
    assert sh.tolist() == [12, 12] and m0.tolist() == [512, 1536]
    net = load_npz(Path(__file__).resolve().parent.parent / "simulator/data/default_model.npz")
    x = np.random.default_rng(0).random((4, net.in_features)).astype(np.float32)
    auto = simulate(net, load_config("int8_fixed_point"), x)
    wide = simulate(net, load_config("int8_fixed_point", ["requant.shift=40"]), x)
    assert np.array_equal(auto.outputs, wide.outputs)
    with pytest.raises(ConfigError, match=r"int8_fixed_point\.toml.*requant\.shift' = 10.*0"):
        simulate(net, load_config("int8_fixed_point", ["requant.shift=10"]), x)
    with pytest.raises(ConfigError, match="requant.shift"):
        load_config("int8_fixed_point", ["requant.shift=-1"])
