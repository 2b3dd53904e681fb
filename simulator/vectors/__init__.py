"""``hwsim vectors``: bit-exact test vectors for RTL test benches (docs/vectors.md).

For each selected layer of a module the simulator's own values are written as memory images:

======  ============  =========================  ===========================================
file    depth         word                       content
======  ============  =========================  ===========================================
x       Q*K           ``spikes.bits``, per        input codes, row-major [query][input]
                      ``spikes.signed``
w       N*K           ``weights.bits`` signed     weights, row-major [neuron][input]
wzp     N             ``weights.bits`` signed     weight zero points [neuron]
m0      N             ``multiplier_bits`` uns.    fixed_point: requantizer multiplier M0
shift   N             8 (or more) signed          fixed_point: right shift (v = acc*M0 / 2^s)
mult    N             32 unsigned                 fbgemm/qnnpack: float32 multiplier bits
acc     Q*N           ``accumulator.bits`` signed expected accumulator registers
y       Q*N           ``output_bits``, per        expected output codes, row-major
                      ``output_signed``           [query][neuron]
acc_ev  Q*N           16 (or 32) unsigned         accumulator overflow events per word
pre_ev  Q*N           16 (or 32) unsigned         pre-add overflow events per word
flags   Q*N           8 unsigned                  sticky overflow, clamp low/high, first event
t_*     (--timing)    32 (or 64) signed           accumulator-write / issue / output cycles
======  ============  =========================  ===========================================

Modules: ``encoding`` (word formats), ``layer`` (one layer's vectors), ``expectations``
(per-word expectations and timing from a stepwise replay), ``corners`` (``--corners``
synthetic layer), ``writer`` (the result set and manifest), ``bench`` (Icarus / Verilator
runners for ``tb_layer.v`` and the clocked datapath ``rtl/``), ``command`` (the CLI).

in ``$readmemh`` (``.hex``: one word per line, two's complement hex at the register width,
ceil(bits/4) digits), Xilinx ``.coe``, Intel ``.mif`` and ``.npy`` (the values themselves in
the smallest numpy integer type of the register's width and signedness, natural shape), plus
``manifest.json`` (schema ``tempo-hwsim-vectors`` 1: provenance and, for every file, its
width, signedness, depth, layout and sha256), the reference bench ``tb_layer.v`` and, per
layer, a parameterised top ``tb_top.v``. The folder is one result set (simulator.outputs):
staged inside ``--out``, published under its lock with ``manifest.json`` last, replacing the
entries of an earlier vectors set; nothing is followed through a planted symlink.
"""

from .bench import BenchRun, run_testbench
from .command import add_vectors_parser, cmd_vectors
from .encoding import (
    VectorsError,
    coe_bytes,
    hex_digits,
    hex_words,
    mif_bytes,
    npy_bytes,
    npy_dtype,
    readmemh_bytes,
    register_range,
    to_words,
)
from .layer import LayerVectors, Vector, layer_vectors, parse_range
from .writer import (
    FORMATS,
    MANIFEST,
    TB_FILE,
    TB_TOP,
    VECTORS_SCHEMA,
    VectorsJob,
    generate,
    generate_corners,
)

__all__ = [
    "BenchRun", "FORMATS", "LayerVectors", "MANIFEST", "TB_FILE", "TB_TOP", "VECTORS_SCHEMA",
    "Vector", "VectorsError", "VectorsJob", "add_vectors_parser", "cmd_vectors", "coe_bytes",
    "generate", "generate_corners", "hex_digits", "hex_words", "layer_vectors", "mif_bytes",
    "npy_bytes",
    "npy_dtype", "parse_range", "readmemh_bytes", "register_range", "run_testbench", "to_words",
]
