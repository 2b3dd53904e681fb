// hwsim_datapath.v -- clocked reference datapath: LANES MAC lanes + accumulators + requantizer.
//
// Synthesizable Verilog-2005 (tempo-hwsim; port list and protocol in docs/vectors.md).
// One output tile of LANES neurons at a time, output stationary:
//   * input stream (valid/ready): each beat is one adder-tree step -- TREE input codes in_x
//     (shared by all lanes) and TREE weights per lane in_w; in_first marks a tile's first step
//     (accumulators and event counters clear), in_last its last one (in_m0 / in_shift, the
//     requantizer parameters of each lane, are sampled with it). Pad a short last step with
//     inputs equal to ZX (zero products).
//   * after the last beat: cycle 1 forms acc * M0 per lane, cycle 2 rounds and clamps, then
//     the output stream (valid/ready) holds, per lane, the accumulator, the output code, the
//     overflow event count and flags {shift_error, clamp_high, clamp_low, acc_overflow} until
//     out_ready; in_ready is low from the last beat until the output is taken.
// Lane i occupies bits [i*WIDTH +: WIDTH] of every per-lane bus.
`timescale 1ns / 1ps

module hwsim_datapath #(
    parameter integer LANES = 4,
    parameter integer TREE = 1,
    parameter integer X_BITS = 8,
    parameter integer X_SIGNED = 0,
    parameter integer W_BITS = 8,
    parameter integer ACC_BITS = 32,
    parameter integer OVERFLOW = 1,
    parameter integer EV_BITS = 16,
    parameter integer M0_BITS = 31,
    parameter integer SHIFT_BITS = 8,
    parameter integer ROUNDING = 5,
    parameter integer Y_BITS = 8,
    parameter signed [63:0] ZX = 0,
    parameter signed [63:0] ZY = 0,
    parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255
) (
    input  wire                          clk,
    input  wire                          rst_n,
    // input stream: one adder-tree step of one tile
    input  wire                          in_valid,
    output wire                          in_ready,
    input  wire                          in_first,
    input  wire                          in_last,
    input  wire [TREE*X_BITS-1:0]        in_x,
    input  wire [LANES*TREE*W_BITS-1:0]  in_w,
    input  wire [LANES*W_BITS-1:0]       in_wzp,
    input  wire [LANES*M0_BITS-1:0]      in_m0,
    input  wire [LANES*SHIFT_BITS-1:0]   in_shift,
    // output stream: one word per lane
    output wire                          out_valid,
    input  wire                          out_ready,
    output wire [LANES*ACC_BITS-1:0]     out_acc,
    output reg  [LANES*Y_BITS-1:0]       out_y,
    output wire [LANES*EV_BITS-1:0]      out_ev,
    output reg  [LANES*4-1:0]            out_flags
);
    localparam integer PB = ACC_BITS + M0_BITS + 1;
    localparam [1:0] S_ACC = 2'd0, S_MUL = 2'd1, S_RND = 2'd2, S_OUT = 2'd3;

    reg [1:0] state;
    wire step_en = in_valid && (state == S_ACC);
    assign in_ready = (state == S_ACC);
    assign out_valid = (state == S_OUT);

    always @(posedge clk) begin
        if (!rst_n) state <= S_ACC;
        else begin
            case (state)
                S_ACC: if (step_en && in_last) state <= S_MUL;
                S_MUL: state <= S_RND;
                S_RND: state <= S_OUT;
                default: if (out_ready) state <= S_ACC;
            endcase
        end
    end

    reg [LANES*M0_BITS-1:0]    m0_q;
    reg [LANES*SHIFT_BITS-1:0] shift_q;
    always @(posedge clk) begin
        if (!rst_n) begin
            m0_q <= {LANES*M0_BITS{1'b0}};
            shift_q <= {LANES*SHIFT_BITS{1'b0}};
        end else if (step_en && in_last) begin
            m0_q <= in_m0;
            shift_q <= in_shift;
        end
    end

    genvar g;
    generate
        for (g = 0; g < LANES; g = g + 1) begin : lane
            wire signed [ACC_BITS-1:0] acc;
            wire [EV_BITS-1:0] ev;
            reg signed [PB-1:0] prod_q;
            wire [Y_BITS-1:0] y;
            wire clamp_low, clamp_high, shift_error;
            hwsim_lane #(
                .TREE(TREE), .X_BITS(X_BITS), .X_SIGNED(X_SIGNED), .W_BITS(W_BITS),
                .ACC_BITS(ACC_BITS), .OVERFLOW(OVERFLOW), .EV_BITS(EV_BITS), .ZX(ZX)
            ) mac (
                .clk(clk), .rst_n(rst_n), .step_en(step_en), .step_first(in_first),
                .x(in_x), .w(in_w[g*TREE*W_BITS +: TREE*W_BITS]),
                .wzp(in_wzp[g*W_BITS +: W_BITS]), .acc(acc), .ev(ev)
            );
            // cycle 1: the exact product acc * M0 (M0 unsigned)
            always @(posedge clk) begin
                if (!rst_n) prod_q <= {PB{1'b0}};
                else if (state == S_MUL)
                    prod_q <= {{(M0_BITS + 1){acc[ACC_BITS-1]}}, acc}
                              * {{(ACC_BITS + 1){1'b0}}, m0_q[g*M0_BITS +: M0_BITS]};
            end
            // cycle 2: round, add ZY, clamp
            hwsim_requant #(
                .ACC_BITS(ACC_BITS), .M0_BITS(M0_BITS), .SHIFT_BITS(SHIFT_BITS),
                .ROUNDING(ROUNDING), .Y_BITS(Y_BITS), .ZY(ZY), .CLAMP_LO(CLAMP_LO),
                .CLAMP_HI(CLAMP_HI)
            ) rq (
                .prod(prod_q), .shift(shift_q[g*SHIFT_BITS +: SHIFT_BITS]), .y(y),
                .clamp_low(clamp_low), .clamp_high(clamp_high), .shift_error(shift_error)
            );
            always @(posedge clk) begin
                if (!rst_n) begin
                    out_y[g*Y_BITS +: Y_BITS] <= {Y_BITS{1'b0}};
                    out_flags[g*4 +: 4] <= 4'd0;
                end else if (state == S_RND) begin
                    out_y[g*Y_BITS +: Y_BITS] <= y;
                    out_flags[g*4 +: 4] <= {shift_error, clamp_high, clamp_low,
                                            ev != {EV_BITS{1'b0}}};
                end
            end
            assign out_acc[g*ACC_BITS +: ACC_BITS] = acc;
            assign out_ev[g*EV_BITS +: EV_BITS] = ev;
        end
    endgenerate
endmodule
