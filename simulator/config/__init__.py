"""Hardware configuration: the one schema, TOML loading, validation and ``--set`` overrides.

A config is a TOML file with the sections below (every key documented in docs/hwconfig.md).
Any section except ``[layers]`` may be repeated per layer as ``[layers.<layer>.<section>]``
(layer = ``feature`` or ``output``) to override single keys for that layer.

Errors (:class:`ConfigError`) always name the file, the dotted key and what is allowed.

Modules: errors (ConfigError, hints), sections (MAC-array datapath and system sections),
neuromorphic (Loihi-class sections), schema (all sections, units, HwConfig, LayerHw, doc rows),
presets (shipped presets, name/path lookup), toml_text (reading and parsing within limits),
overrides (``--set``), validate (build_config), loading (load_config).
This package re-exports every name the former single module ``simulator.config`` defined.
"""

from __future__ import annotations

from .errors import ROUNDING_ALIASES, ConfigError
from .loading import load_config
from .neuromorphic import DenseConfig, NeuromorphicConfig, NeuronConfig, ProdNeuronConfig
from .overrides import apply_override
from .presets import PRESET_DIR, preset_names, resolve_config_path
from .schema import (
    FREE_FORM_ALLOWED,
    LAYER_KEYS,
    LAYER_SECTIONS,
    SECTIONS,
    TOP_KEYS,
    UNITS,
    HwConfig,
    LayerHw,
    schema_rows,
    schema_units,
)
from .sections import (
    AccumulatorConfig,
    ClockConfig,
    CombinerConfig,
    EnergyConfig,
    MacConfig,
    ReadoutConfig,
    ReportConfig,
    RequantConfig,
    ScheduleConfig,
    SpikesConfig,
    WeightsConfig,
    requant_clamp,
)
from .toml_text import MAX_CONFIG_BYTES, MAX_TOML_DEPTH, parse_toml, read_config_bytes
from .validate import build_config

__all__ = [
    "AccumulatorConfig", "ClockConfig", "CombinerConfig", "ConfigError", "DenseConfig",
    "EnergyConfig", "FREE_FORM_ALLOWED", "HwConfig", "LAYER_KEYS", "LAYER_SECTIONS", "LayerHw",
    "MAX_CONFIG_BYTES", "MAX_TOML_DEPTH", "MacConfig", "NeuromorphicConfig", "NeuronConfig",
    "PRESET_DIR", "ProdNeuronConfig", "ROUNDING_ALIASES", "ReadoutConfig", "ReportConfig",
    "RequantConfig", "SECTIONS", "ScheduleConfig", "SpikesConfig", "TOP_KEYS", "UNITS",
    "WeightsConfig", "apply_override", "build_config", "load_config", "parse_toml",
    "preset_names", "read_config_bytes", "requant_clamp", "resolve_config_path", "schema_rows",
    "schema_units",
]
