// tb_stream.v -- clocked bench for any DUT with the hwsim_datapath port list (tempo-hwsim).
//
// Verilog-2005 with delays (Icarus: iverilog -g2005; Verilator: --binary --timing). Reads one
// layer's vectors ($readmemh files written by `hwsim vectors`, checked to exist and be full),
// streams every tile of LANES neurons of every query through the DUT over the valid/ready
// ports (docs/vectors.md, "The clocked datapath"), and compares, per output word, the
// accumulator, the output code, the overflow event count and the flags (acc overflow, clamp
// low, clamp high; shift_error must stay 0). Ends with
//     tb_stream: <P> passed, <F> failed (<C> comparisons, <E> expected)
// and `tb_stream: PASS` ($finish) or $fatal (non-zero exit).
// The DUT module is `HWSIM_DUT (default hwsim_datapath): compile with -DHWSIM_DUT=my_top.
// Event-driven schedules skip inputs equal to ZX; a short last step is padded with ZX.
`timescale 1ns / 1ps
`ifndef HWSIM_DUT
`define HWSIM_DUT hwsim_datapath
`endif

module tb_stream #(
    parameter integer Q = 1,
    parameter integer N = 1,
    parameter integer K = 1,
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
    parameter integer Y_SIGNED = 0,
    parameter integer EVENT_DRIVEN = 0,
    parameter signed [63:0] ZX = 0,
    parameter signed [63:0] ZY = 0,
    parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255,
    parameter signed [63:0] COMPARISONS = -1,
    parameter integer MAX_REPORT = 10,
    parameter X_FILE = "x.hex",
    parameter W_FILE = "w.hex",
    parameter WZP_FILE = "wzp.hex",
    parameter M0_FILE = "m0.hex",
    parameter SHIFT_FILE = "shift.hex",
    parameter ACC_FILE = "acc.hex",
    parameter Y_FILE = "y.hex",
    parameter ACC_EV_FILE = "acc_ev.hex",
    parameter PRE_EV_FILE = "pre_ev.hex",
    parameter FLAGS_FILE = "flags.hex"
) ();
    reg [X_BITS-1:0]     xmem   [0:Q*K-1];
    reg [W_BITS-1:0]     wmem   [0:N*K-1];
    reg [W_BITS-1:0]     zwmem  [0:N-1];
    reg [M0_BITS-1:0]    m0mem  [0:N-1];
    reg [SHIFT_BITS-1:0] shmem  [0:N-1];
    reg [ACC_BITS-1:0]   accmem [0:Q*N-1];
    reg [Y_BITS-1:0]     ymem   [0:Q*N-1];
    reg [EV_BITS-1:0]    aevmem [0:Q*N-1];
    reg [EV_BITS-1:0]    pevmem [0:Q*N-1];
    reg [7:0]            flgmem [0:Q*N-1];
    integer              active [0:K-1];

    reg clk;
    initial clk = 1'b0;
    reg rst_n = 1'b0;
    always #5 clk = !clk;

    reg                          in_valid = 1'b0;
    wire                         in_ready;
    reg                          in_first = 1'b0;
    reg                          in_last = 1'b0;
    reg [TREE*X_BITS-1:0]        in_x = {TREE*X_BITS{1'b0}};
    reg [LANES*TREE*W_BITS-1:0]  in_w = {LANES*TREE*W_BITS{1'b0}};
    reg [LANES*W_BITS-1:0]       in_wzp = {LANES*W_BITS{1'b0}};
    reg [LANES*M0_BITS-1:0]      in_m0 = {LANES*M0_BITS{1'b0}};
    reg [LANES*SHIFT_BITS-1:0]   in_shift = {LANES*SHIFT_BITS{1'b0}};
    wire                         out_valid;
    reg                          out_ready = 1'b0;
    wire [LANES*ACC_BITS-1:0]    out_acc;
    wire [LANES*Y_BITS-1:0]      out_y;
    wire [LANES*EV_BITS-1:0]     out_ev;
    wire [LANES*4-1:0]           out_flags;

    `HWSIM_DUT #(
        .LANES(LANES), .TREE(TREE), .X_BITS(X_BITS), .X_SIGNED(X_SIGNED), .W_BITS(W_BITS),
        .ACC_BITS(ACC_BITS), .OVERFLOW(OVERFLOW), .EV_BITS(EV_BITS), .M0_BITS(M0_BITS),
        .SHIFT_BITS(SHIFT_BITS), .ROUNDING(ROUNDING), .Y_BITS(Y_BITS), .ZX(ZX), .ZY(ZY),
        .CLAMP_LO(CLAMP_LO), .CLAMP_HI(CLAMP_HI)
    ) dut (
        .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_ready(in_ready),
        .in_first(in_first), .in_last(in_last), .in_x(in_x), .in_w(in_w), .in_wzp(in_wzp),
        .in_m0(in_m0), .in_shift(in_shift), .out_valid(out_valid), .out_ready(out_ready),
        .out_acc(out_acc), .out_y(out_y), .out_ev(out_ev), .out_flags(out_flags)
    );

    integer i, q, t, l, s, k, n0, nt, cnt, steps, fd, rc, nwords, nbad, nwide;
    integer load_errors, passed, failed;
    reg signed [63:0] total;
    reg file_ok;
    reg [127:0] scratch;
    reg [3:0] want_flags;


    // open the file, count its words (must equal DEPTH), pre-fill with 'x, load, count 'x left
`define TS_LOAD(MEM, FILE, DEPTH, WIDTH) \
        fd = $fopen(FILE, "r"); \
        file_ok = (fd != 0); \
        if (fd == 0) begin \
            $display("tb_stream: FAIL: %0s: missing (cannot open); regenerate with hwsim vectors", FILE); \
            load_errors = load_errors + 1; \
        end else begin \
            nwords = 0; \
            nwide = 0; \
            rc = 1; \
            while (rc == 1) begin \
                rc = $fscanf(fd, "%h", scratch); \
                if (rc == 1) nwords = nwords + 1; \
                if (rc == 1 && (scratch >> WIDTH) != 128'd0) nwide = nwide + 1; \
            end \
            $fclose(fd); \
            if (nwide != 0) begin \
                $display("tb_stream: FAIL: %0s: %0d words wider than %0d bits", FILE, nwide, WIDTH); \
                load_errors = load_errors + 1; \
            end \
            if (nwords != DEPTH) begin \
                $display("tb_stream: FAIL: %0s: %0d words, expected %0d (truncated, too long or not hex)", FILE, nwords, DEPTH); \
                load_errors = load_errors + 1; \
            end \
        end \
        for (i = 0; i < DEPTH; i = i + 1) MEM[i] = {WIDTH{1'bx}}; \
        if (file_ok) begin \
            $readmemh(FILE, MEM); \
            nbad = 0; \
            for (i = 0; i < DEPTH; i = i + 1) if (^MEM[i] === 1'bx) nbad = nbad + 1; \
            if (nbad != 0) begin \
                $display("tb_stream: FAIL: %0s: %0d words still 'x after $readmemh", FILE, nbad); \
                load_errors = load_errors + 1; \
            end \
        end

    task compare;
        input [8*8-1:0] what;
        input integer qq;
        input integer jj;
        input [63:0] expected;
        input [63:0] got;
        begin
            if (expected === got) passed = passed + 1;
            else begin
                failed = failed + 1;
                if (failed <= MAX_REPORT)
                    $display("tb_stream: MISMATCH %0s query %0d neuron %0d (word %0d): expected %0d, got %0d",
                             what, qq, jj, qq * N + jj, expected, got);
            end
        end
    endtask

    // value of an input code (sign- or zero-extended)
    function signed [64:0] xval;
        input [X_BITS-1:0] v;
        begin
            if (X_SIGNED != 0) xval = {{(65 - X_BITS){v[X_BITS-1]}}, v};
            else xval = {{(65 - X_BITS){1'b0}}, v};
        end
    endfunction

    // one input beat: wait for in_ready, transfer at the next rising edge
    task send_beat;
        begin
            in_valid = 1'b1;
            while (!in_ready) begin
                @(posedge clk);
                #1;
            end
            @(posedge clk);
            #1;
            in_valid = 1'b0;
        end
    endtask

    initial begin
        load_errors = 0;
        passed = 0;
        failed = 0;
        `TS_LOAD(xmem, X_FILE, Q * K, X_BITS)
        `TS_LOAD(wmem, W_FILE, N * K, W_BITS)
        `TS_LOAD(zwmem, WZP_FILE, N, W_BITS)
        `TS_LOAD(m0mem, M0_FILE, N, M0_BITS)
        `TS_LOAD(shmem, SHIFT_FILE, N, SHIFT_BITS)
        `TS_LOAD(accmem, ACC_FILE, Q * N, ACC_BITS)
        `TS_LOAD(ymem, Y_FILE, Q * N, Y_BITS)
        `TS_LOAD(aevmem, ACC_EV_FILE, Q * N, EV_BITS)
        `TS_LOAD(pevmem, PRE_EV_FILE, Q * N, EV_BITS)
        `TS_LOAD(flgmem, FLAGS_FILE, Q * N, 8)
        for (i = 0; i < Q * N && load_errors == 0; i = i + 1)
            if (pevmem[i] != {EV_BITS{1'b0}}) begin
                $display("tb_stream: FAIL: %0s: pre-add events expected; the datapath has no pre-add stage",
                         PRE_EV_FILE);
                load_errors = load_errors + 1;
            end
        if (load_errors != 0) begin
            $display("tb_stream: 0 passed, %0d failed (vector files missing or incomplete)",
                     load_errors);
            $fatal(1, "tb_stream: FAILED: %0d vector file problem(s)", load_errors);
        end

        repeat (2) @(posedge clk);
        #1;
        rst_n = 1'b1;
        for (q = 0; q < Q; q = q + 1) begin
            cnt = 0;  // inputs this query streams (event-driven: those != ZX)
            for (k = 0; k < K; k = k + 1)
                if (!(EVENT_DRIVEN != 0 && xval(xmem[q * K + k]) == {ZX[63], ZX})) begin
                    active[cnt] = k;
                    cnt = cnt + 1;
                end
            steps = (cnt + TREE - 1) / TREE;
            if (steps == 0) steps = 1;  // an all-skipped query: one beat of zero products
            for (n0 = 0; n0 < N; n0 = n0 + LANES) begin
                nt = (N - n0 < LANES) ? (N - n0) : LANES;
                for (l = 0; l < LANES; l = l + 1) begin
                    in_wzp[l*W_BITS +: W_BITS] = (l < nt) ? zwmem[n0 + l] : {W_BITS{1'b0}};
                    in_m0[l*M0_BITS +: M0_BITS] = (l < nt) ? m0mem[n0 + l] : {M0_BITS{1'b0}};
                    in_shift[l*SHIFT_BITS +: SHIFT_BITS] = (l < nt) ? shmem[n0 + l]
                                                                    : {SHIFT_BITS{1'b0}};
                end
                for (s = 0; s < steps; s = s + 1) begin
                    for (t = 0; t < TREE; t = t + 1) begin
                        i = s * TREE + t;
                        in_x[t*X_BITS +: X_BITS] = (i < cnt) ? xmem[q * K + active[i]]
                                                             : ZX[X_BITS-1:0];
                        for (l = 0; l < LANES; l = l + 1)
                            in_w[(l*TREE + t)*W_BITS +: W_BITS] =
                                (i < cnt && l < nt) ? wmem[(n0 + l) * K + active[i]]
                                                    : {W_BITS{1'b0}};
                    end
                    in_first = (s == 0);
                    in_last = (s == steps - 1);
                    send_beat;
                end
                while (!out_valid) begin
                    @(posedge clk);
                    #1;
                end
                for (l = 0; l < nt; l = l + 1) begin
                    compare("acc", q, n0 + l,
                            {{(64 - ACC_BITS){accmem[q*N+n0+l][ACC_BITS-1]}}, accmem[q*N+n0+l]},
                            {{(64 - ACC_BITS){out_acc[l*ACC_BITS+ACC_BITS-1]}},
                             out_acc[l*ACC_BITS +: ACC_BITS]});
                    compare("code", q, n0 + l,
                            {{(64 - Y_BITS){Y_SIGNED != 0 && ymem[q*N+n0+l][Y_BITS-1]}},
                             ymem[q*N+n0+l]},
                            {{(64 - Y_BITS){Y_SIGNED != 0 && out_y[l*Y_BITS+Y_BITS-1]}},
                             out_y[l*Y_BITS +: Y_BITS]});
                    compare("acc_ev", q, n0 + l, {{(64 - EV_BITS){1'b0}}, aevmem[q*N+n0+l]},
                            {{(64 - EV_BITS){1'b0}}, out_ev[l*EV_BITS +: EV_BITS]});
                    want_flags = {1'b0, flgmem[q*N+n0+l][3], flgmem[q*N+n0+l][2],
                                  flgmem[q*N+n0+l][0]};
                    compare("flags", q, n0 + l, {60'd0, want_flags}, {60'd0, out_flags[l*4 +: 4]});
                end
                out_ready = 1'b1;
                @(posedge clk);
                #1;
                out_ready = 1'b0;
            end
        end
        $display("tb_stream: %0d passed, %0d failed (%0d comparisons, %0d expected)",
                 passed, failed, passed + failed, COMPARISONS);
        total = {32'd0, passed} + {32'd0, failed};
        if (COMPARISONS >= 0 && total != COMPARISONS)
            $fatal(1, "tb_stream: FAILED: made %0d comparisons, expected %0d",
                   passed + failed, COMPARISONS);
        if (failed != 0)
            $fatal(1, "tb_stream: FAILED: %0d mismatch(es)", failed);
        $display("tb_stream: PASS");
        $finish;
    end

`undef TS_LOAD
endmodule
