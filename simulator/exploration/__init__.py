"""Bit-width exploration: grids of config points, local or Dask execution, Pareto fronts.

``simulator.sweep(...)`` (here :func:`sweep`) returns the table as a pandas DataFrame;
``hwsim sweep`` is the command (docs/sweeps.md).
"""

from .api import load_sweep_data, sweep
from .grid import GridError, Point, parse_grid
from .table import pareto_front

__all__ = ["GridError", "Point", "load_sweep_data", "pareto_front", "parse_grid", "sweep"]
