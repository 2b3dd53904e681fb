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
// Tiles follow the schedule: tile t holds neurons t*LANES .. t*LANES+LANES-1 of the layer's
// N_OUT; lanes of unselected neurons get zero weights and are not compared.
//
// Cycle checks (compile with -DHWSIM_TIMING: the DUT has the timing ports in_lanes, in_skip,
// acc_we, rq_issue, out_word_valid; and TIMING = 1: the layer has --timing vectors t_accw, t_issue,
// t_out): cycle 0 is the first clock cycle with rst_n high; each beat is offered in the cycle
// t_accw gives (idle cycles before it: weight-memory stalls, drains, other layers), and the
// cycle of every accumulator write (acc_we), requantizer issue (rq_issue) and output word
// (out_word_valid) is compared with t_accw / t_issue / t_out: T_COMPARISONS more comparisons.
`timescale 1ns / 1ps
`ifndef HWSIM_DUT
`define HWSIM_DUT hwsim_datapath
`endif

module tb_stream #(
    parameter integer Q = 1,
    parameter integer N = 1,
    parameter integer K = 1,
    parameter integer N0 = 0,          // first selected neuron of the layer
    parameter integer N_OUT = 1,       // neurons of the layer (tiles of the schedule)
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
    parameter integer THROUGHPUT = 1,
    parameter integer LATENCY = 3,
    parameter signed [63:0] ZX = 0,
    parameter signed [63:0] ZY = 0,
    parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255,
    parameter signed [63:0] COMPARISONS = -1,
    parameter integer TIMING = 0,      // 1: t_accw / t_issue / t_out files below exist
    parameter integer T_TILES = 1,     // tiles of t_accw (those holding selected neurons)
    parameter integer T_STEPS = 1,     // steps of t_accw (the most of any query)
    parameter integer T_BITS = 32,     // width of the cycle files (signed)
    parameter signed [63:0] T_COMPARISONS = 0,
    parameter integer FAST_FORWARD = 1,  // skip idle cycles (no work in the DUT) before a beat
    parameter integer WATCHDOG = 1000000,  // cycles in_ready may stay low before the bench fails
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
    parameter FLAGS_FILE = "flags.hex",
    parameter T_ACCW_FILE = "t_accw.hex",
    parameter T_ISSUE_FILE = "t_issue.hex",
    parameter T_OUT_FILE = "t_out.hex"
) ();
    localparam integer LW = $clog2(LANES + 1);
    localparam integer TILE0 = N0 / LANES;                  // first tile streamed
    localparam integer NT = (N0 + N - 1) / LANES - TILE0 + 1;  // tiles streamed per query
`ifdef HWSIM_TIMING
    localparam integer CHECK_CYCLES = TIMING;
    localparam integer SKIP_PORT = 1;   // the DUT has in_skip
`else
    localparam integer CHECK_CYCLES = 0;
    localparam integer SKIP_PORT = 0;
`endif
    localparam integer TD = (CHECK_CYCLES != 0) ? 1 : 0;  // cycle files are loaded
    localparam integer NA = (TD != 0) ? Q * T_TILES * T_STEPS : 1;
    localparam integer NW = (TD != 0) ? Q * N : 1;

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
    reg [T_BITS-1:0]     tamem  [0:NA-1];   // expected accumulator-write cycles
    reg [T_BITS-1:0]     timem  [0:NW-1];   // expected issue cycles
    reg [T_BITS-1:0]     tomem  [0:NW-1];   // expected output-word cycles
    integer              active [0:K-1];
    // observed cycles: accumulator writes in order; issue / output word per word (-1: none)
    integer              obs_accw  [0:NA-1];
    integer              obs_issue [0:NW-1];
    integer              obs_out   [0:NW-1];
    integer              beat_idx  [0:NA-1];   // t_accw index of each beat, in beat order
    reg                  sent      [0:NA-1];   // t_accw entry streamed as a beat
    // words in flight per lane: the word each issue of lane l carries (-1: unselected)
    integer              lane_word [0:LANES*Q*NT-1];
    integer              n_iss [0:LANES-1];
    integer              n_out [0:LANES-1];

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
    reg [LW-1:0]                 in_lanes = {LW{1'b0}};
    reg                          in_skip = 1'b0;
    wire                         out_valid;
    reg                          out_ready = 1'b0;
    wire [LANES*ACC_BITS-1:0]    out_acc;
    wire [LANES*Y_BITS-1:0]      out_y;
    wire [LANES*EV_BITS-1:0]     out_ev;
    wire [LANES*4-1:0]           out_flags;
    wire                         acc_we;
    wire [LANES-1:0]             rq_issue;
    wire [LANES-1:0]             out_word_valid;

    `HWSIM_DUT #(
        .LANES(LANES), .TREE(TREE), .X_BITS(X_BITS), .X_SIGNED(X_SIGNED), .W_BITS(W_BITS),
        .ACC_BITS(ACC_BITS), .OVERFLOW(OVERFLOW), .EV_BITS(EV_BITS), .M0_BITS(M0_BITS),
        .SHIFT_BITS(SHIFT_BITS), .ROUNDING(ROUNDING), .Y_BITS(Y_BITS), .ZX(ZX), .ZY(ZY),
`ifdef HWSIM_TIMING
        .THROUGHPUT(THROUGHPUT), .LATENCY(LATENCY), .LW(LW),
`endif
        .CLAMP_LO(CLAMP_LO), .CLAMP_HI(CLAMP_HI)
    ) dut (
        .clk(clk), .rst_n(rst_n), .in_valid(in_valid), .in_ready(in_ready),
        .in_first(in_first), .in_last(in_last), .in_x(in_x), .in_w(in_w), .in_wzp(in_wzp),
        .in_m0(in_m0), .in_shift(in_shift),
`ifdef HWSIM_TIMING
        .in_lanes(in_lanes), .in_skip(in_skip), .acc_we(acc_we), .rq_issue(rq_issue),
        .out_word_valid(out_word_valid),
`endif
        .out_valid(out_valid), .out_ready(out_ready),
        .out_acc(out_acc), .out_y(out_y), .out_ev(out_ev), .out_flags(out_flags)
    );
`ifndef HWSIM_TIMING
    assign acc_we = 1'b0;
    assign rq_issue = {LANES{1'b0}};
    assign out_word_valid = {LANES{1'b0}};
`endif

    integer i, q, t, l, s, k, j, nb, nt, cnt, steps, fd, rc, nwords, nbad, nwide;
    integer load_errors, passed, failed, cpassed, cfailed, n_beats, n_accw, n_extra, otile, dq, dt;
    integer cyc, ml, mj, mw, oq, ot, ol, oj, tiles_sent, skipped, stuck, next_dq, next_dt;
    reg signed [63:0] total, want_cmp;
    reg file_ok, skip_q;
    reg running = 1'b0;
    reg tiles_done = 1'b0;
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
                             what, qq, N0 + jj, qq * N + jj, expected, got);
            end
        end
    endtask

    // a cycle comparison (signed values; -1 = never seen)
    task compare_cycle;
        input [8*8-1:0] what;
        input integer qq;
        input integer jj;      // word's neuron within the selection, or -1: a beat
        input integer idx;     // beat number for beats
        input integer expected;
        input integer got;
        begin
            if (expected == got) begin
                passed = passed + 1;
                cpassed = cpassed + 1;
            end else begin
                failed = failed + 1;
                cfailed = cfailed + 1;
                if (failed <= MAX_REPORT) begin
                    if (jj < 0)
                        $display("tb_stream: MISMATCH cycle %0s query %0d beat %0d: expected cycle %0d, got %0d",
                                 what, qq, idx, expected, got);
                    else
                        $display("tb_stream: MISMATCH cycle %0s query %0d neuron %0d (word %0d): expected cycle %0d, got %0d",
                                 what, qq, N0 + jj, qq * N + jj, expected, got);
                end
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

    // a cycle word (T_BITS, signed) as an integer
    function integer tval;
        input [T_BITS-1:0] v;
        reg signed [63:0] e;
        begin
            e = {{(64 - T_BITS){v[T_BITS-1]}}, v};
            tval = e[31:0];
            if (e[63:32] != {32{e[31]}}) tval = -2;  // past 2^31 cycles: no bench runs that long
        end
    endfunction

    // cycle counter: cycle c is the clock period ending with the c-th rising edge after reset
    initial forever begin
        @(posedge clk);
        if (running) cyc = cyc + 1;
    end

    // the DUT holds no work: not draining, every issued word out, every finished tile taken
    function dut_idle;
        input integer lanes;
        integer il;
        begin
            dut_idle = (in_ready === 1'b1) && (otile == tiles_sent);
            for (il = 0; il < lanes; il = il + 1)
                if (n_out[il] != n_iss[il]) dut_idle = 1'b0;
        end
    endfunction

    // one input beat: offered from cycle `target` on (now if already past), held until taken.
    // Idle cycles before it (other layers, unselected tiles) are skipped when the DUT holds no
    // work: the cycle counter jumps to `target` (FAST_FORWARD = 1).
    task send_beat;
        input integer target;
        input skip;   // an in_skip beat: its lanes issue in its own cycle
        begin
            while (CHECK_CYCLES != 0 && cyc < target) begin
                if (FAST_FORWARD != 0 && dut_idle(LANES)) begin
                    skipped = skipped + (target - cyc);
                    cyc = target;
                end else begin
                    @(posedge clk);
                    #1;
                end
            end
            in_valid = 1'b1;
            stuck = 0;
            while (!in_ready) begin
                @(posedge clk);
                #1;
                stuck = stuck + 1;
                if (stuck > WATCHDOG) begin
                    $display("tb_stream: %0d passed, %0d failed (in_ready low for %0d cycles)",
                             passed, failed + 1, stuck);
                    $fatal(1, "tb_stream: FAILED: the DUT stopped taking beats (in_ready low)");
                end
            end
            if (skip) begin
                dq = next_dq;   // the tile that drains from this cycle on
                dt = next_dt;
            end
            @(posedge clk);
            #1;
            in_valid = 1'b0;
        end
    endtask

    // timing monitor: mid-cycle (falling edge) the strobes describe the current cycle
    initial forever begin
        @(negedge clk);
        if (running && CHECK_CYCLES != 0) begin
            if (acc_we === 1'b1) begin
                if (n_accw < NA) obs_accw[n_accw] = cyc;
                n_accw = n_accw + 1;
            end
            for (ml = 0; ml < LANES; ml = ml + 1) begin
                if (rq_issue[ml] === 1'b1) begin
                    // the tile draining: the latest one whose last beat was taken
                    mj = dt * LANES + ml - N0;
                    mw = (mj >= 0 && mj < N && dq >= 0) ? dq * N + mj : -1;
                    if (n_iss[ml] < Q * NT) lane_word[ml * Q * NT + n_iss[ml]] = mw;
                    n_iss[ml] = n_iss[ml] + 1;
                    if (mw >= 0) begin
                        if (obs_issue[mw] != -1) n_extra = n_extra + 1;
                        else obs_issue[mw] = cyc;
                    end
                end
                if (out_word_valid[ml] === 1'b1) begin
                    mw = (n_out[ml] < n_iss[ml] && n_out[ml] < Q * NT)
                        ? lane_word[ml * Q * NT + n_out[ml]] : -2;
                    if (mw == -2) n_extra = n_extra + 1;  // a word never issued
                    n_out[ml] = n_out[ml] + 1;
                    if (mw >= 0) begin
                        if (obs_out[mw] != -1) n_extra = n_extra + 1;
                        else obs_out[mw] = cyc;
                    end
                end
            end
        end
    end

    // output monitor: each tile's words, compared when out_valid (out_ready is kept high)
    initial forever begin
        @(negedge clk);
        if (running && out_valid === 1'b1 && out_ready && !tiles_done) begin
            oq = otile / NT;
            ot = TILE0 + otile % NT;
            for (ol = 0; ol < LANES; ol = ol + 1) begin
                oj = ot * LANES + ol - N0;
                if (oj >= 0 && oj < N) begin
                    compare("acc", oq, oj,
                            {{(64 - ACC_BITS){accmem[oq*N+oj][ACC_BITS-1]}}, accmem[oq*N+oj]},
                            {{(64 - ACC_BITS){out_acc[ol*ACC_BITS+ACC_BITS-1]}},
                             out_acc[ol*ACC_BITS +: ACC_BITS]});
                    compare("code", oq, oj,
                            {{(64 - Y_BITS){Y_SIGNED != 0 && ymem[oq*N+oj][Y_BITS-1]}}, ymem[oq*N+oj]},
                            {{(64 - Y_BITS){Y_SIGNED != 0 && out_y[ol*Y_BITS+Y_BITS-1]}},
                             out_y[ol*Y_BITS +: Y_BITS]});
                    compare("acc_ev", oq, oj, {{(64 - EV_BITS){1'b0}}, aevmem[oq*N+oj]},
                            {{(64 - EV_BITS){1'b0}}, out_ev[ol*EV_BITS +: EV_BITS]});
                    want_flags = {1'b0, flgmem[oq*N+oj][3], flgmem[oq*N+oj][2], flgmem[oq*N+oj][0]};
                    compare("flags", oq, oj, {60'd0, want_flags}, {60'd0, out_flags[ol*4 +: 4]});
                end
            end
            otile = otile + 1;
            if (otile == Q * NT) tiles_done = 1'b1;
        end
    end

    initial begin
        load_errors = 0;
        passed = 0;
        failed = 0;
        cpassed = 0;
        cfailed = 0;
        running = 1'b0;
        tiles_done = 1'b0;
        cyc = 0;
        otile = 0;
        n_beats = 0;
        n_accw = 0;
        n_extra = 0;
        tiles_sent = 0;
        skipped = 0;
        dq = -1;
        dt = 0;
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
        if (TD != 0) begin
            `TS_LOAD(tamem, T_ACCW_FILE, NA, T_BITS)
            `TS_LOAD(timem, T_ISSUE_FILE, NW, T_BITS)
            `TS_LOAD(tomem, T_OUT_FILE, NW, T_BITS)
        end
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
        if (CHECK_CYCLES != 0)
            $display("tb_stream: cycle checks on (acc_we, rq_issue, out_word_valid against t_accw, t_issue, t_out)");
        else if (TIMING != 0)
            $display("tb_stream: cycle checks off: compile with -DHWSIM_TIMING for a DUT with the timing ports");
        for (i = 0; i < NA; i = i + 1) begin
            obs_accw[i] = -1;
            beat_idx[i] = -1;
            sent[i] = 1'b0;
        end
        for (i = 0; i < NW; i = i + 1) begin
            obs_issue[i] = -1;
            obs_out[i] = -1;
        end
        for (l = 0; l < LANES; l = l + 1) begin
            n_iss[l] = 0;
            n_out[l] = 0;
        end

        repeat (2) @(posedge clk);
        #1;
        rst_n = 1'b1;
        out_ready = 1'b1;
        running = 1'b1;   // this period is cycle 0
        for (q = 0; q < Q; q = q + 1) begin
            cnt = 0;  // inputs this query streams (event-driven: those != ZX)
            for (k = 0; k < K; k = k + 1)
                if (!(EVENT_DRIVEN != 0 && xval(xmem[q * K + k]) == {ZX[63], ZX})) begin
                    active[cnt] = k;
                    cnt = cnt + 1;
                end
            steps = (cnt + TREE - 1) / TREE;
            // a query without any active input: one in_skip beat per tile (timing ports), or
            // one beat of zero products (a DUT without them)
            skip_q = (steps == 0) && (SKIP_PORT != 0);
            if (steps == 0) steps = 1;
            for (nb = 0; nb < NT; nb = nb + 1) begin
                t = TILE0 + nb;
                nt = (N_OUT - t * LANES < LANES) ? (N_OUT - t * LANES) : LANES;  // busy lanes
                if (nt < 1 || nt > LANES)
                    $fatal(1, "tb_stream: FAILED: tile %0d has %0d busy lanes (N0, N, N_OUT?)", t, nt);
                in_lanes = nt[LW-1:0];
                for (l = 0; l < LANES; l = l + 1) begin
                    j = t * LANES + l - N0;
                    in_wzp[l*W_BITS +: W_BITS] = (j >= 0 && j < N) ? zwmem[j] : {W_BITS{1'b0}};
                    in_m0[l*M0_BITS +: M0_BITS] = (j >= 0 && j < N) ? m0mem[j] : {M0_BITS{1'b0}};
                    in_shift[l*SHIFT_BITS +: SHIFT_BITS] = (j >= 0 && j < N) ? shmem[j]
                                                                             : {SHIFT_BITS{1'b0}};
                end
                for (s = 0; s < steps; s = s + 1) begin
                    for (k = 0; k < TREE; k = k + 1) begin
                        i = s * TREE + k;
                        in_x[k*X_BITS +: X_BITS] = (i < cnt) ? xmem[q * K + active[i]]
                                                             : ZX[X_BITS-1:0];
                        for (l = 0; l < LANES; l = l + 1) begin
                            j = t * LANES + l - N0;
                            in_w[(l*TREE + k)*W_BITS +: W_BITS] =
                                (i < cnt && j >= 0 && j < N) ? wmem[j * K + active[i]]
                                                             : {W_BITS{1'b0}};
                        end
                    end
                    in_first = (s == 0);
                    in_last = (s == steps - 1);
                    in_skip = skip_q;
                    i = -1;   // the beat's cycle
                    if (skip_q) begin
                        // the tile's drain starts in the beat's cycle: lane l issues
                        // floor(l / THROUGHPUT) cycles later
                        for (l = LANES - 1; l >= 0; l = l - 1) begin
                            j = t * LANES + l - N0;
                            if (TD != 0 && j >= 0 && j < N)
                                i = tval(timem[q * N + j]) - l / THROUGHPUT;
                        end
                        next_dq = q;
                        next_dt = t;
                    end else begin
                        if (TD != 0 && s < T_STEPS && nb < T_TILES && n_beats < NA) begin
                            beat_idx[n_beats] = (q * T_TILES + nb) * T_STEPS + s;
                            i = tval(tamem[beat_idx[n_beats]]);
                            sent[beat_idx[n_beats]] = 1'b1;
                        end
                        n_beats = n_beats + 1;
                    end
                    send_beat(i, skip_q);
                    if (s == steps - 1) begin
                        dq = q;   // the tile whose lanes drain next
                        dt = t;
                        tiles_sent = tiles_sent + 1;
                    end
                    in_skip = 1'b0;
                end
            end
        end
        // the last words: wait for the outputs (and the last output-word strobes)
        i = 0;
        while (!tiles_done && i < WATCHDOG) begin
            @(posedge clk);
            #1;
            i = i + 1;
        end
        repeat (LATENCY + 2) @(posedge clk);
        #1;
        running = 1'b0;
        if (!tiles_done)
            $display("tb_stream: FAIL: %0d of %0d tiles never raised out_valid", Q * NT - otile,
                     Q * NT);
        want_cmp = COMPARISONS;
        if (CHECK_CYCLES != 0) begin
            want_cmp = COMPARISONS + T_COMPARISONS;
            // accumulator writes: one per beat = per (query, tile, step) of t_accw
            for (i = 0; i < n_beats && i < NA; i = i + 1)
                if (beat_idx[i] >= 0)
                    compare_cycle("t_accw", beat_idx[i] / (T_TILES * T_STEPS), -1,
                                  beat_idx[i] % (T_TILES * T_STEPS),
                                  tval(tamem[beat_idx[i]]), obs_accw[i]);
                else begin
                    failed = failed + 1;   // a beat the schedule does not have
                    cfailed = cfailed + 1;
                end
            // a step of the schedule the bench did not send
            for (i = 0; i < NA; i = i + 1)
                if (!sent[i] && tval(tamem[i]) != -1) begin
                    failed = failed + 1;
                    cfailed = cfailed + 1;
                    if (failed <= MAX_REPORT)
                        $display("tb_stream: MISMATCH cycle t_accw: step %0d of t_accw was never streamed", i);
                end
            for (i = 0; i < NW; i = i + 1) begin
                compare_cycle("t_issue", i / N, i % N, 0, tval(timem[i]), obs_issue[i]);
                compare_cycle("t_out", i / N, i % N, 0, tval(tomem[i]), obs_out[i]);
            end
            if (n_accw != n_beats || n_beats > NA) begin
                $display("tb_stream: FAIL: %0d accumulator writes (acc_we) for %0d beats",
                         n_accw, n_beats);
                failed = failed + 1;
                cfailed = cfailed + 1;
            end
            if (n_extra != 0) begin
                $display("tb_stream: FAIL: %0d issue / output-word strobes more than the words",
                         n_extra);
                failed = failed + 1;
                cfailed = cfailed + 1;
            end
        end
        if (!tiles_done) failed = failed + 1;
        if (CHECK_CYCLES != 0) begin
            $display("tb_stream: last cycle %0d; %0d idle cycles skipped (no work in the DUT)",
                     cyc, skipped);
            $display("tb_stream: words %0d passed, %0d failed; cycles %0d passed, %0d failed",
                     passed - cpassed, failed - cfailed, cpassed, cfailed);
        end
        $display("tb_stream: %0d passed, %0d failed (%0d comparisons, %0d expected)",
                 passed, failed, passed + failed, want_cmp);
        total = {32'd0, passed} + {32'd0, failed};
        if (COMPARISONS >= 0 && total != want_cmp)
            $fatal(1, "tb_stream: FAILED: made %0d comparisons, expected %0d",
                   passed + failed, want_cmp);
        if (failed != 0)
            $fatal(1, "tb_stream: FAILED: %0d mismatch(es)", failed);
        $display("tb_stream: PASS");
        $finish;
    end

`undef TS_LOAD
endmodule
