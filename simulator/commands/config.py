"""``hwsim config check | keys | presets``: validate a config (and its fit to a model), list
every key with its default and range, list the shipped presets (docs/hwconfig.md)."""

from __future__ import annotations

import argparse
from typing import Any

from ..config import load_config, preset_names, schema_rows


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``hwsim config`` and its three subcommands on the CLI's subparsers."""
    cfg = sub.add_parser("config", help="check configs, list keys and presets")
    csub = cfg.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    chk = csub.add_parser("check", help="validate a config (and its fit to a model)")
    chk.add_argument("file")
    chk.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    chk.add_argument("--model", help="also check that this model fits the config")
    chk.add_argument("--show", action="store_true", help="print the resolved per-layer config")
    chk.set_defaults(func=cmd_config_check)
    keys = csub.add_parser("keys", help="list every config key with default and range")
    keys.set_defaults(func=cmd_config_keys)
    pre = csub.add_parser("presets", help="list the presets in hwconfig/")
    pre.set_defaults(func=cmd_config_presets)
    return cfg


def cmd_config_check(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, args.set)
    if args.model:
        from ..engine import check_fit
        from ..loaders import ModelLimits, load_model

        net = load_model(args.model, ModelLimits.for_config(cfg))
        check_fit(net, cfg)
        print(f"{cfg.source}: ok for model {args.model}")
    else:
        print(f"{cfg.source}: ok ({cfg.name}, sha256 {cfg.sha256[:12]})")
    if args.show:
        for lname in ("feature", "output"):
            print(f"[{lname}] {cfg.for_layer(lname)}")
    return 0


def cmd_config_keys(args: argparse.Namespace) -> int:
    for key, default, allowed, doc in schema_rows():
        print(f"{key:32} default {default:14} allowed {allowed:40} {doc}")
    return 0


def cmd_config_presets(args: argparse.Namespace) -> int:
    for name in preset_names():
        cfg = load_config(name)
        print(f"{name:20} {cfg.description}")
    return 0
