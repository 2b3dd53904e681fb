"""Execution engines: the fast vectorised path and the schedule (cycle formula)."""

from .fast import InputError, LayerRun, SimResult, check_fit, prepare_inputs, simulate

__all__ = ["InputError", "LayerRun", "SimResult", "check_fit", "prepare_inputs", "simulate"]
