"""tempo-hwsim: a bit-accurate, cycle-level hardware simulator for the int8 VPRTempo SNN."""

__version__ = "0.1.0"
