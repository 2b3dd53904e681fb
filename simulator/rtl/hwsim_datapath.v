// hwsim_datapath.v -- clocked reference datapath: LANES MAC lanes + accumulators + requantizer.
//
// Synthesizable Verilog-2005 (tempo-hwsim; port list, protocol and cycle convention in
// docs/vectors.md, "The clocked datapath"). One output tile of up to LANES neurons at a time,
// output stationary, on the schedule of simulator/engine/schedule.py:
//   * input stream (valid/ready): each beat is one adder-tree step -- TREE input codes in_x
//     (shared by all lanes) and TREE weights per lane in_w; in_first marks a tile's first step
//     (accumulators and event counters clear), in_last its last one (in_m0 / in_shift, the
//     requantizer parameters of each lane, and in_lanes, the tile's busy lanes, are sampled
//     with it). Every accepted beat writes the accumulators of all lanes (acc_we high).
//     Pad a short last step with inputs equal to ZX (zero products). A beat with in_skip
//     high is a whole tile without any step (event-driven, every input at the zero point):
//     no accumulator write; its words are 0 and its drain starts in the beat's own cycle
//     (in_first / in_last / in_x / in_w are ignored, in_m0 / in_shift / in_lanes sampled).
//   * drain: in the cycles after the last beat the tile's busy lanes enter the requantizer,
//     THROUGHPUT lanes per cycle in lane order (rq_issue[i] high in lane i's issue cycle);
//     in_ready is low while the tile drains. THROUGHPUT requantizer pipelines (lane i uses
//     pipeline i % THROUGHPUT), each LATENCY >= 1 registers deep: a lane issued in cycle c
//     shows its word on out_acc / out_y / out_ev / out_flags in cycle c + LATENCY
//     (out_word_valid[i] high in that cycle). The next tile's beats may arrive while earlier
//     words are still in the pipelines.
//   * output stream (valid/ready): out_valid is high from the cycle the tile's last busy lane
//     shows its word until out_ready; while out_valid is high and out_ready low the
//     requantizer pipelines and the drain stall (a consumer that keeps out_ready high never
//     stalls the schedule).
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
    parameter signed [63:0] CLAMP_HI = 255,
    parameter integer THROUGHPUT = 1,   // requant.throughput: lanes issued per cycle
    parameter integer LATENCY = 3,      // requant.latency (>= 1): issue to output word, cycles
    parameter integer LW = $clog2(LANES + 1)  // width of in_lanes
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
    input  wire [LW-1:0]                 in_lanes,   // busy lanes 1..LANES (0: all)
    input  wire                          in_skip,    // the beat is a tile without any step
    // output stream: one word per lane
    output reg                           out_valid,
    input  wire                          out_ready,
    output reg  [LANES*ACC_BITS-1:0]     out_acc,
    output reg  [LANES*Y_BITS-1:0]       out_y,
    output reg  [LANES*EV_BITS-1:0]      out_ev,
    output reg  [LANES*4-1:0]            out_flags,
    // timing strobes (cycle checks, docs/vectors.md)
    output wire                          acc_we,          // accumulators written this cycle
    output reg  [LANES-1:0]              rq_issue,        // lane enters the requantizer
    output reg  [LANES-1:0]              out_word_valid   // lane's word is new on out_*
);
    localparam integer PB = ACC_BITS + M0_BITS + 1;
    localparam integer TP = (THROUGHPUT < LANES) ? THROUGHPUT : LANES;  // pipelines
    localparam integer LAT = (LATENCY < 1) ? 1 : LATENCY;
    localparam integer FW = EV_BITS + ACC_BITS;  // a word's accumulator and event count

    // --- control: accumulate, then drain THROUGHPUT lanes per cycle ---------------------
    reg        draining;
    reg [31:0] grp_base;    // first lane of the group issued this cycle
    reg [31:0] busy;        // busy lanes of the tile being drained
    reg        zero_q;      // the tile being drained had no step: its words are 0
    wire       adv = !(out_valid && !out_ready);  // pipelines move (no output stall)
    wire       step_en = in_valid && !in_skip && !draining;
    wire       skip_en = in_valid && in_skip && !draining && adv;  // drain starts now
    wire [31:0] in_busy = (in_lanes == {LW{1'b0}}) ? LANES : {{(32 - LW){1'b0}}, in_lanes};
    // the group issued this cycle: of the draining tile, or group 0 of a skipped one
    wire       iss_on = (draining && adv) || skip_en;
    wire [31:0] iss_base = draining ? grp_base : 32'd0;
    wire [31:0] iss_busy = draining ? busy : in_busy;
    wire       iss_zero = draining ? zero_q : 1'b1;
    wire       last_grp = iss_base + TP >= iss_busy || iss_base + TP >= LANES;
    assign in_ready = !draining && (adv || !in_skip);
    assign acc_we = step_en;

    always @(posedge clk) begin
        if (!rst_n) begin
            draining <= 1'b0;
            grp_base <= 32'd0;
            busy <= 32'd0;
            zero_q <= 1'b0;
        end else if (step_en && in_last) begin
            draining <= 1'b1;
            grp_base <= 32'd0;
            busy <= in_busy;
            zero_q <= 1'b0;
        end else if (skip_en) begin
            draining <= !last_grp;  // group 0 issues now
            grp_base <= TP;
            busy <= in_busy;
            zero_q <= 1'b1;
        end else if (draining && adv) begin
            grp_base <= grp_base + TP;
            if (last_grp) draining <= 1'b0;
        end
    end

    integer li;
    always @(*) begin
        for (li = 0; li < LANES; li = li + 1)
            rq_issue[li] = iss_on && li >= iss_base && li < iss_base + TP && li < iss_busy;
    end

    reg [LANES*M0_BITS-1:0]    m0_q;
    reg [LANES*SHIFT_BITS-1:0] shift_q;
    always @(posedge clk) begin
        if (!rst_n) begin
            m0_q <= {LANES*M0_BITS{1'b0}};
            shift_q <= {LANES*SHIFT_BITS{1'b0}};
        end else if ((step_en && in_last) || skip_en) begin
            m0_q <= in_m0;
            shift_q <= in_shift;
        end
    end
    // requantizer parameters of the group issued now (a skipped tile's come with its beat)
    wire [LANES*M0_BITS-1:0]    iss_m0 = draining ? m0_q : in_m0;
    wire [LANES*SHIFT_BITS-1:0] iss_shift = draining ? shift_q : in_shift;

    // --- MAC lanes ----------------------------------------------------------------------
    wire [LANES*ACC_BITS-1:0] acc_bus;
    wire [LANES*EV_BITS-1:0]  ev_bus;
    genvar g;
    generate
        for (g = 0; g < LANES; g = g + 1) begin : lane
            hwsim_lane #(
                .TREE(TREE), .X_BITS(X_BITS), .X_SIGNED(X_SIGNED), .W_BITS(W_BITS),
                .ACC_BITS(ACC_BITS), .OVERFLOW(OVERFLOW), .EV_BITS(EV_BITS), .ZX(ZX)
            ) mac (
                .clk(clk), .rst_n(rst_n), .step_en(step_en), .step_first(in_first),
                .x(in_x), .w(in_w[g*TREE*W_BITS +: TREE*W_BITS]),
                .wzp(in_wzp[g*W_BITS +: W_BITS]), .acc(acc_bus[g*ACC_BITS +: ACC_BITS]),
                .ev(ev_bus[g*EV_BITS +: EV_BITS])
            );
        end
    endgenerate

    // --- issue mask and tile-end tag through the pipeline (LAT - 1 registers) ------------
    wire [LANES-1:0] land_mask;   // lanes whose word is written to out_* at this edge
    wire             land_last;   // ... and it is the tile's last group
    generate
        if (LAT == 1) begin : tag0
            assign land_mask = rq_issue;
            assign land_last = iss_on && last_grp;
        end else begin : tagn
            reg [LANES-1:0] mask_q [0:LAT-2];
            reg             last_q [0:LAT-2];
            integer si;
            always @(posedge clk) begin
                if (!rst_n) begin
                    for (si = 0; si < LAT - 1; si = si + 1) begin
                        mask_q[si] <= {LANES{1'b0}};
                        last_q[si] <= 1'b0;
                    end
                end else if (adv) begin
                    mask_q[0] <= rq_issue;
                    last_q[0] <= iss_on && last_grp;
                    for (si = 1; si < LAT - 1; si = si + 1) begin
                        mask_q[si] <= mask_q[si-1];
                        last_q[si] <= last_q[si-1];
                    end
                end
            end
            assign land_mask = mask_q[LAT-2];
            assign land_last = last_q[LAT-2];
        end
    endgenerate

    // --- THROUGHPUT requantizer pipelines -----------------------------------------------
    wire [TP*FW-1:0]     land_av;     // per pipeline: {ev, acc} of the landing word
    wire [TP*Y_BITS-1:0] land_y;
    wire [TP*4-1:0]      land_flags;  // {shift_error, clamp_high, clamp_low, acc_overflow}
    genvar r;
    generate
        for (r = 0; r < TP; r = r + 1) begin : pipe
            // issue: the one lane of this pipeline's group (one-hot AND-OR select)
            reg [ACC_BITS-1:0]   s_acc;
            reg [EV_BITS-1:0]    s_ev;
            reg [M0_BITS-1:0]    s_m0;
            reg [SHIFT_BITS-1:0] s_shift;
            integer ln;
            always @(*) begin
                s_acc = {ACC_BITS{1'b0}};
                s_ev = {EV_BITS{1'b0}};
                s_m0 = {M0_BITS{1'b0}};
                s_shift = {SHIFT_BITS{1'b0}};
                for (ln = r; ln < LANES; ln = ln + TP)
                    if (rq_issue[ln]) begin
                        if (!iss_zero) begin
                            s_acc = s_acc | acc_bus[ln*ACC_BITS +: ACC_BITS];
                            s_ev = s_ev | ev_bus[ln*EV_BITS +: EV_BITS];
                        end
                        s_m0 = s_m0 | iss_m0[ln*M0_BITS +: M0_BITS];
                        s_shift = s_shift | iss_shift[ln*SHIFT_BITS +: SHIFT_BITS];
                    end
            end
            wire signed [PB-1:0] s_prod = {{(M0_BITS + 1){s_acc[ACC_BITS-1]}}, s_acc}
                                          * {{(ACC_BITS + 1){1'b0}}, s_m0};
            // stage 1 (LAT >= 2): the exact product acc * M0 in a register
            wire signed [PB-1:0] p_prod;
            wire [SHIFT_BITS-1:0] p_shift;
            wire [FW-1:0]         p_av;
            if (LAT == 1) begin : comb
                assign p_prod = s_prod;
                assign p_shift = s_shift;
                assign p_av = {s_ev, s_acc};
            end else begin : reg1
                reg signed [PB-1:0]  prod_q;
                reg [SHIFT_BITS-1:0] sh_q;
                reg [FW-1:0]         av_q;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        prod_q <= {PB{1'b0}};
                        sh_q <= {SHIFT_BITS{1'b0}};
                        av_q <= {FW{1'b0}};
                    end else if (adv) begin
                        prod_q <= s_prod;
                        sh_q <= s_shift;
                        av_q <= {s_ev, s_acc};
                    end
                end
                assign p_prod = prod_q;
                assign p_shift = sh_q;
                assign p_av = av_q;
            end
            // round, add ZY, clamp (combinational)
            wire [Y_BITS-1:0] y;
            wire clamp_low, clamp_high, shift_error;
            hwsim_requant #(
                .ACC_BITS(ACC_BITS), .M0_BITS(M0_BITS), .SHIFT_BITS(SHIFT_BITS),
                .ROUNDING(ROUNDING), .Y_BITS(Y_BITS), .ZY(ZY), .CLAMP_LO(CLAMP_LO),
                .CLAMP_HI(CLAMP_HI)
            ) rq (
                .prod(p_prod), .shift(p_shift), .y(y),
                .clamp_low(clamp_low), .clamp_high(clamp_high), .shift_error(shift_error)
            );
            wire [FW+Y_BITS+3:0] res = {p_av, y, shift_error, clamp_high, clamp_low,
                                        p_av[FW-1:ACC_BITS] != {EV_BITS{1'b0}}};
            // stages 3 .. LAT: delay registers of the result
            wire [FW+Y_BITS+3:0] fin;
            if (LAT <= 2) begin : nodelay
                assign fin = res;
            end else begin : delay
                reg [FW+Y_BITS+3:0] d_q [0:LAT-3];
                integer di;
                always @(posedge clk) begin
                    if (!rst_n) begin
                        for (di = 0; di < LAT - 2; di = di + 1) d_q[di] <= {(FW+Y_BITS+4){1'b0}};
                    end else if (adv) begin
                        d_q[0] <= res;
                        for (di = 1; di < LAT - 2; di = di + 1) d_q[di] <= d_q[di-1];
                    end
                end
                assign fin = d_q[LAT-3];
            end
            assign land_av[r*FW +: FW] = fin[FW+Y_BITS+3:Y_BITS+4];
            assign land_y[r*Y_BITS +: Y_BITS] = fin[Y_BITS+3:4];
            assign land_flags[r*4 +: 4] = fin[3:0];
        end
    endgenerate

    // --- output registers: lane i takes pipeline i % TP's word when its mask bit lands ----
    generate
        for (g = 0; g < LANES; g = g + 1) begin : outw
            always @(posedge clk) begin
                if (!rst_n) begin
                    out_acc[g*ACC_BITS +: ACC_BITS] <= {ACC_BITS{1'b0}};
                    out_ev[g*EV_BITS +: EV_BITS] <= {EV_BITS{1'b0}};
                    out_y[g*Y_BITS +: Y_BITS] <= {Y_BITS{1'b0}};
                    out_flags[g*4 +: 4] <= 4'd0;
                end else if (adv && land_mask[g]) begin
                    out_acc[g*ACC_BITS +: ACC_BITS] <= land_av[(g % TP)*FW +: ACC_BITS];
                    out_ev[g*EV_BITS +: EV_BITS] <= land_av[(g % TP)*FW + ACC_BITS +: EV_BITS];
                    out_y[g*Y_BITS +: Y_BITS] <= land_y[(g % TP)*Y_BITS +: Y_BITS];
                    out_flags[g*4 +: 4] <= land_flags[(g % TP)*4 +: 4];
                end
            end
        end
    endgenerate

    always @(posedge clk) begin
        if (!rst_n) begin
            out_valid <= 1'b0;
            out_word_valid <= {LANES{1'b0}};
        end else begin
            out_word_valid <= adv ? land_mask : {LANES{1'b0}};
            if (adv && land_last) out_valid <= 1'b1;
            else if (out_ready) out_valid <= 1'b0;
        end
    end
endmodule
