"""The ``hwsim`` subcommands: one module per subcommand.

Each module registers its own parser (``add_parser(subparsers)``, which sets ``func`` to the
command) and holds the command's option checks and printing; simulator/cli.py only builds the
top-level parser from them and dispatches. The work itself lives in the core (config, loaders,
engine, runner, report, outputs, ...), which never imports anything from here.

* run.py      ``hwsim run``: a model on a hardware config (inputs, trace, cross-check)
* demo.py     ``hwsim demo``: the main job on the embedded default model and route
* train.py    ``hwsim train``: train a VPRTempo model in numpy and quantize it to int8
* config.py   ``hwsim config check | keys | presets``
* report.py   ``hwsim report``: report.json read back (schema check) and printed as tables
* sweep.py    ``hwsim sweep``: a grid of config points (the work is in simulator/exploration/)
* export.py   ``hwsim export``: a model as an ONNX or TFLite graph
* _options.py exit statuses and option types shared by the commands

``hwsim bench`` (simulator/bench.py) and ``hwsim vectors`` (simulator/vectors/command.py) are
still registered from their own packages.
"""
