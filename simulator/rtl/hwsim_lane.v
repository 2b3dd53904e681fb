// hwsim_lane.v -- one MAC lane of the reference datapath (tempo-hwsim, docs/vectors.md).
//
// Synthesizable Verilog-2005. Per accepted step (step_en): TREE products
// (x_i - ZX) * (w_i - wzp) summed exactly by the adder tree, added into the signed ACC_BITS
// accumulator in ONE addition; OVERFLOW = 0 wraps (two's complement), 1 saturates at the
// rails (2 = error behaves as saturate: the event is counted). An addition whose exact value
// leaves the register is one overflow event (ev counts them, saturating at all ones).
// step_first clears the accumulator and the count before the step's addition.
`timescale 1ns / 1ps

module hwsim_lane #(
    parameter integer TREE = 1,        // accumulator.adder_tree_width (products per step)
    parameter integer X_BITS = 8,      // input code width
    parameter integer X_SIGNED = 0,    // input codes signed (1) or unsigned (0)
    parameter integer W_BITS = 8,      // weight width (signed)
    parameter integer ACC_BITS = 32,   // accumulator width (signed)
    parameter integer OVERFLOW = 1,    // 0 wrap, 1 saturate, 2 error (= saturate, counted)
    parameter integer EV_BITS = 16,    // overflow event counter width
    parameter signed [63:0] ZX = 0     // input zero point
) (
    input  wire                       clk,
    input  wire                       rst_n,
    input  wire                       step_en,
    input  wire                       step_first,
    input  wire [TREE*X_BITS-1:0]     x,
    input  wire [TREE*W_BITS-1:0]     w,
    input  wire [W_BITS-1:0]          wzp,
    output reg  signed [ACC_BITS-1:0] acc,
    output reg  [EV_BITS-1:0]         ev
);
    localparam integer XW = X_BITS + 2;            // x - ZX (ZX inside the code range)
    localparam integer WW = W_BITS + 2;            // w - wzp
    localparam integer PW = XW + WW;               // one product
    localparam integer TW = PW + $clog2(TREE + 1); // adder tree output
    localparam integer EW = ((TW > ACC_BITS) ? TW : ACC_BITS) + 2;  // exact accumulator sum

    localparam signed [EW-1:0] ACC_MAX = (({{(EW - 1){1'b0}}, 1'b1}) <<< (ACC_BITS - 1)) - 1;
    localparam signed [EW-1:0] ACC_MIN = -(({{(EW - 1){1'b0}}, 1'b1}) <<< (ACC_BITS - 1));
    localparam signed [XW-1:0] ZXW = ZX[XW-1:0];

    // adder tree: TREE products summed exactly
    reg signed [TW-1:0] tree;
    reg signed [XW-1:0] xo;
    reg signed [WW-1:0] wo;
    reg signed [WW-1:0] zw;
    reg signed [PW-1:0] prod;
    integer i;
    always @(*) begin
        tree = {TW{1'b0}};
        zw = {{2{wzp[W_BITS-1]}}, wzp};
        for (i = 0; i < TREE; i = i + 1) begin
            if (X_SIGNED != 0)
                xo = {{2{x[i*X_BITS+X_BITS-1]}}, x[i*X_BITS +: X_BITS]} - ZXW;
            else
                xo = {2'b00, x[i*X_BITS +: X_BITS]} - ZXW;
            wo = {{2{w[i*W_BITS+W_BITS-1]}}, w[i*W_BITS +: W_BITS]} - zw;
            prod = xo * wo;
            tree = tree + {{(TW - PW){prod[PW-1]}}, prod};
        end
    end

    // the accumulator addition and its overflow policy
    wire signed [EW-1:0] base  = step_first ? {EW{1'b0}} : {{(EW - ACC_BITS){acc[ACC_BITS-1]}}, acc};
    wire signed [EW-1:0] exact = base + {{(EW - TW){tree[TW-1]}}, tree};
    wire                 above = exact > ACC_MAX;
    wire                 below = exact < ACC_MIN;
    wire [EV_BITS-1:0]   ev_base = step_first ? {EV_BITS{1'b0}} : ev;
    reg signed [ACC_BITS-1:0] next;
    always @(*) begin
        if (OVERFLOW != 0 && above) next = ACC_MAX[ACC_BITS-1:0];
        else if (OVERFLOW != 0 && below) next = ACC_MIN[ACC_BITS-1:0];
        else next = exact[ACC_BITS-1:0];
    end

    always @(posedge clk) begin
        if (!rst_n) begin
            acc <= {ACC_BITS{1'b0}};
            ev <= {EV_BITS{1'b0}};
        end else if (step_en) begin
            acc <= next;
            if ((above || below) && ev_base != {EV_BITS{1'b1}}) ev <= ev_base + 1'b1;
            else ev <= ev_base;
        end
    end
endmodule
