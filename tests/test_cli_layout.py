"""The command-line layout (docs: README "Layout", DESIGN §3): simulator/cli.py parses and
dispatches, each subcommand registers itself from simulator/commands/<name>.py, and the core
never imports a command module or the CLI."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from simulator.cli import build_parser

PKG = Path(__file__).resolve().parents[1] / "simulator"
COMMANDS = ["run", "demo", "train", "config", "report", "sweep", "export"]
# modules allowed to import simulator.commands / simulator.cli: the CLI itself, the command
# modules, and the old import path of the report command kept as a re-export
ALLOWED = {"cli.py", "report_cli.py"}


def _imported_modules(path: Path, root: Path = PKG.parent) -> list[str]:
    """Every module ``path`` imports (relative imports resolved), including lazy ones."""
    rel = path.relative_to(root).with_suffix("")
    package = list(rel.parts[:-1])  # the importing module's package
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module.split(".") if node.module else []
            if node.level:
                base = package[: len(package) - (node.level - 1)] + base
            found.append(".".join(base))
            found += [".".join([*base, a.name]) for a in node.names]
    return found


def test_core_never_imports_a_command_or_the_cli() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel in ALLOWED or rel.startswith("commands/"):
            continue
        for mod in _imported_modules(path):
            if mod == "simulator.cli" or mod.startswith(("simulator.commands.", "simulator.cli.")) \
                    or mod == "simulator.commands":
                offenders.append(f"{rel} imports {mod}")
    assert offenders == []


def test_guard_sees_relative_and_lazy_imports(tmp_path: Path) -> None:
    """The scan above can fail: a core module importing a command is found."""
    fake = tmp_path / "simulator" / "engine" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text("def f():\n    from ..commands import run\n    from ..cli import main\n"
                    "    from .. import commands\n")
    mods = _imported_modules(fake, tmp_path)
    assert {"simulator.commands.run", "simulator.cli", "simulator.commands"} <= set(mods)


def test_each_subcommand_registers_itself_in_order() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert list(sub.choices) == ["run", "demo", "train", "config", "report", "bench", "vectors",
                                 "export", "sweep"]
    for name in COMMANDS:
        mod = importlib.import_module(f"simulator.commands.{name}")
        assert callable(mod.add_parser), name
        parser = sub.choices[name]
        if name == "config":  # config check | keys | presets
            csub = next(a for a in parser._actions if a.dest == "config_command")
            funcs = [p.get_default("func") for p in csub.choices.values()]
        else:
            funcs = [parser.get_default("func")]
        assert all(f.__module__ == mod.__name__ for f in funcs), name


@pytest.mark.parametrize("name", ["add_report_parser", "cmd_report", "format_table",
                                  "load_report", "main", "report_text", "REPORT_SPEC"])
def test_old_report_cli_path_re_exports(name: str) -> None:
    old = importlib.import_module("simulator.report_cli")
    new = importlib.import_module("simulator.commands.report")
    assert getattr(old, name) is getattr(new, name)
