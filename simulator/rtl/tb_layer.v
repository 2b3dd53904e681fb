// tb_layer.v -- reference test bench for one layer's test vectors (tempo-hwsim `hwsim vectors`).
//
// Verilog-2001 (Icarus: iverilog -g2005). A behavioural reference datapath reads the vectors
// with $readmemh, recomputes every accumulator and output code, compares them word by word
// with the expected files and ends with
//     tb_layer: <P> passed, <F> failed (<C> comparisons, <E> expected)
// and `tb_layer: PASS` ($finish, exit 0) or $fatal (non-zero exit) on any failure.
//
// Files (one word per line, two's complement hex at the register width; see docs/vectors.md):
//   X_FILE     Q*K  X_BITS   input codes, X_SIGNED          row-major [query][input]
//   W_FILE     N*K  W_BITS   weights, signed                row-major [neuron][input]
//   WZP_FILE   N    W_BITS   weight zero points, signed     [neuron]
//   M0_FILE    N    M0_BITS  requantizer multiplier, unsigned [neuron]  (CHECK_CODES only)
//   SHIFT_FILE N    SHIFT_BITS right shift, signed          [neuron]    (CHECK_CODES only)
//   ACC_FILE   Q*N  ACC_BITS expected accumulators, signed  row-major [query][neuron]
//   Y_FILE     Q*N  Y_BITS   expected output codes, Y_SIGNED row-major [query][neuron]
//   ACC_EV_FILE Q*N EV_BITS  accumulator overflow events per word, unsigned
//   PRE_EV_FILE Q*N EV_BITS  pre-add overflow events per word, unsigned
//   FLAGS_FILE Q*N  8        per-word flags: bit0 acc overflow (sticky), bit1 pre-add
//                            overflow (sticky), bit2 clamp low, bit3 clamp high (CHECK_CODES
//                            only), bit4 first acc event, bit5 first pre-add event of the
//                            set in schedule order (query, tile = (N0+j)/LANES, step, lane)
//
// Every file is checked before use: it must open ($fopen), hold exactly the expected number
// of words (counted with $fscanf), and leave no word of the memory at 'x after $readmemh
// (memories are pre-filled with 'x). A missing, short, long or non-hex file fails the bench.
//
// Datapath of neuron j for query q (inputs in ascending k, as simulator/units/mac_array.py):
//   x' = x - ZX, w' = w - zw_j  (RAW = 0)   or   x' = x, w' = w  (RAW = 1)
//   EVENT_DRIVEN = 1 skips inputs with x == ZX; PRE > 1 sums PRE consecutive products into a
//   signed PRE_BITS register (PRE_OVERFLOW); TREE consecutive products (or pre-add values) are
//   summed exactly and added into the signed ACC_BITS accumulator, whose OVERFLOW policy
//   (0 wrap, 1 saturate, 2 error = saturate + counted) applies to that addition; RAW = 1 ends
//   with one more addition of -ZX*sum(w) - zw*sum(x) + K*ZX*zw.
//   Requantizer (fixed_point): v = round(acc * M0_j / 2^shift_j) (exact 128-bit product;
//   ROUNDING 0 floor, 1 ceil, 2 toward_zero, 3 half_up, 4 half_down, 5 half_even,
//   6 half_away; negative shifts multiply by 2^-shift), y = clamp(v + ZY, CLAMP_LO, CLAMP_HI).
//   With CHECK_CODES = 0 (float requantizer schemes) only the accumulators are compared.
// Limits: X_BITS, W_BITS <= 32; ACC_BITS, PRE_BITS, Y_BITS <= 64; M0_BITS <= 32.
`timescale 1ns / 1ps

module tb_layer #(
    parameter Q = 1,                 // queries
    parameter N = 1,                 // output neurons
    parameter K = 1,                 // inputs per neuron
    parameter X_BITS = 8,            // input code register width
    parameter X_SIGNED = 0,          // input codes signed (1) or unsigned (0)
    parameter W_BITS = 8,            // weight width (signed)
    parameter ACC_BITS = 32,         // accumulator width (signed)
    parameter OVERFLOW = 1,          // accumulator policy: 0 wrap, 1 saturate, 2 error
    parameter TREE = 1,              // accumulator.adder_tree_width
    parameter PRE = 1,               // mac.pre_add_width (1 = no pre-add stage)
    parameter PRE_BITS = 16,         // pre-add register width (signed)
    parameter PRE_OVERFLOW = 1,      // pre-add policy: 0 wrap, 1 saturate, 2 error
    parameter RAW = 0,               // mac.operand: 0 offset, 1 raw
    parameter EVENT_DRIVEN = 0,      // schedule.mode: 0 dense, 1 event_driven
    parameter CHECK_CODES = 1,       // 1: fixed_point requantizer, compare codes too
    parameter M0_BITS = 31,          // multiplier width (unsigned)
    parameter SHIFT_BITS = 8,        // shift width (signed)
    parameter ROUNDING = 5,          // requantizer rounding (see above), 5 = half_even
    parameter Y_BITS = 8,            // output code width
    parameter Y_SIGNED = 0,          // output codes signed (1) or unsigned (0)
    parameter signed [63:0] ZX = 0,  // input zero point
    parameter signed [63:0] ZY = 0,  // output zero point
    parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255,
    parameter signed [63:0] EXP_ACC_EVENTS = -1,  // expected accumulator overflow events (-1: skip)
    parameter signed [63:0] EXP_PRE_EVENTS = -1,  // expected pre-add overflow events (-1: skip)
    parameter signed [63:0] COMPARISONS = -1,     // expected number of comparisons (-1: skip)
    parameter LANES = 1,             // mac.lanes (tile size, for the first-event order)
    parameter N0 = 0,                // layer index of the first selected neuron
    parameter EV_BITS = 16,          // width of the per-word event counts
    parameter PER_WORD = 1,          // 1: check the per-word event counts and flags
    parameter MAX_REPORT = 10,       // mismatches printed in full
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

    // vector memories (pre-filled with 'x before $readmemh)
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
    // per-word results of the behavioural datapath
    reg [63:0]           got_aev [0:Q*N-1];
    reg [63:0]           got_pev [0:Q*N-1];
    reg [7:0]            got_flg [0:Q*N-1];

    integer i, q, j, k, fd, rc, nwords, nbad;
    integer load_errors, passed, failed, cnt, pcnt;
    reg file_ok;
    reg signed [127:0] xv, wv, zw, prod, pre, tree, acc, sumw, sumx, corr, expv;
    reg signed [127:0] m0, sh, wide, v, y;
    reg signed [127:0] acc_events, pre_events;
    reg [127:0] scratch;
    integer step, fa, fp, word;
    reg [63:0] w_aev, w_pev;
    reg [127:0] key, best_acc_key, best_pre_key;
    integer best_acc_word, best_pre_word;
    reg [7:0] fmask;

    // value of a `bits`-bit word: sign-extended (sgn != 0) or zero-extended
    function signed [127:0] sext;
        input [127:0] w;
        input integer bits;
        input integer sgn;
        reg [127:0] m;
        begin
            m = (128'd1 << bits) - 128'd1;
            if (sgn != 0 && w[bits-1]) sext = (w & m) | ~m;
            else sext = w & m;
        end
    endfunction

    // true if v lies outside a signed `bits`-bit register
    function outside;
        input signed [127:0] v;
        input integer bits;
        begin
            outside = (v > ((128'sd1 <<< (bits - 1)) - 128'sd1)) || (v < -(128'sd1 <<< (bits - 1)));
        end
    endfunction

    // narrow v into a signed `bits`-bit register: policy 0 wraps, 1 and 2 saturate
    function signed [127:0] fit;
        input signed [127:0] v;
        input integer bits;
        input integer policy;
        reg signed [127:0] hi, lo;
        begin
            hi = (128'sd1 <<< (bits - 1)) - 128'sd1;
            lo = -(128'sd1 <<< (bits - 1));
            if (v >= lo && v <= hi) fit = v;
            else if (policy == 0) fit = sext(v, bits, 1);
            else if (v > hi) fit = hi;
            else fit = lo;
        end
    endfunction

    // round(v / 2^s) exactly, s in 0..126, with the named rounding mode
    function signed [127:0] round_shift;
        input signed [127:0] v;
        input integer s;
        input integer mode;
        reg signed [127:0] fl, r, half;
        reg above, tie;
        begin
            fl = v >>> s;
            r = v - (fl <<< s);
            half = (s > 0) ? (128'sd1 <<< (s - 1)) : 128'sd0;
            above = (r > half);
            tie = (r == half) && (s > 0);
            case (mode)
                0: round_shift = fl;
                1: round_shift = fl + ((r != 0) ? 1 : 0);
                2: round_shift = fl + ((r != 0 && v < 0) ? 1 : 0);
                3: round_shift = fl + ((above || tie) ? 1 : 0);
                4: round_shift = fl + (above ? 1 : 0);
                5: round_shift = fl + ((above || (tie && fl[0])) ? 1 : 0);
                default: round_shift = fl + ((above || (tie && v >= 0)) ? 1 : 0);
            endcase
        end
    endfunction

    // $fopen the file and count its words; complain if missing or not `depth` words long
    task check_file;
        input [8*1024-1:0] name;
        input integer depth;
        begin
            fd = $fopen(name, "r");
            file_ok = (fd != 0);
            if (fd == 0) begin
                $display("tb_layer: FAIL: %0s: missing (cannot open); regenerate with hwsim vectors", name);
                load_errors = load_errors + 1;
            end else begin
                nwords = 0;
                rc = 1;
                while (rc == 1) begin
                    rc = $fscanf(fd, "%h", scratch);
                    if (rc == 1) nwords = nwords + 1;
                end
                $fclose(fd);
                if (nwords != depth) begin
                    $display("tb_layer: FAIL: %0s: %0d words, expected %0d (truncated, too long or not hex)",
                             name, nwords, depth);
                    load_errors = load_errors + 1;
                end
            end
        end
    endtask

    task report_x;
        input [8*1024-1:0] name;
        input integer bad;
        begin
            if (bad != 0) begin
                $display("tb_layer: FAIL: %0s: %0d words still 'x after $readmemh (file too short?)",
                         name, bad);
                load_errors = load_errors + 1;
            end
        end
    endtask

    // check the file, pre-fill with 'x, load it and count the words left at 'x
`define TB_LOAD(MEM, FILE, DEPTH, WIDTH) \
        check_file(FILE, DEPTH); \
        for (i = 0; i < DEPTH; i = i + 1) MEM[i] = {WIDTH{1'bx}}; \
        if (file_ok) begin \
            $readmemh(FILE, MEM); \
            nbad = 0; \
            for (i = 0; i < DEPTH; i = i + 1) if (^MEM[i] === 1'bx) nbad = nbad + 1; \
            report_x(FILE, nbad); \
        end

    initial begin
        load_errors = 0;
        passed = 0;
        failed = 0;
        acc_events = 0;
        pre_events = 0;
        `TB_LOAD(xmem, X_FILE, Q * K, X_BITS)
        `TB_LOAD(wmem, W_FILE, N * K, W_BITS)
        `TB_LOAD(zwmem, WZP_FILE, N, W_BITS)
        `TB_LOAD(accmem, ACC_FILE, Q * N, ACC_BITS)
        if (CHECK_CODES != 0) begin
            `TB_LOAD(m0mem, M0_FILE, N, M0_BITS)
            `TB_LOAD(shmem, SHIFT_FILE, N, SHIFT_BITS)
            `TB_LOAD(ymem, Y_FILE, Q * N, Y_BITS)
        end
        if (PER_WORD != 0) begin
            `TB_LOAD(aevmem, ACC_EV_FILE, Q * N, EV_BITS)
            `TB_LOAD(pevmem, PRE_EV_FILE, Q * N, EV_BITS)
            `TB_LOAD(flgmem, FLAGS_FILE, Q * N, 8)
        end
        best_acc_word = -1;
        best_pre_word = -1;
        best_acc_key = 0;
        best_pre_key = 0;
        if (load_errors != 0) begin
            $display("tb_layer: 0 passed, %0d failed (vector files missing or incomplete)",
                     load_errors);
            $fatal(1, "tb_layer: FAILED: %0d vector file problem(s)", load_errors);
        end

        for (q = 0; q < Q; q = q + 1) begin
            for (j = 0; j < N; j = j + 1) begin
                zw = sext(zwmem[j], W_BITS, 1);
                acc = 0;
                tree = 0;
                pre = 0;
                cnt = 0;
                pcnt = 0;
                sumw = 0;
                sumx = 0;
                step = 0;
                fa = -1;
                fp = -1;
                w_aev = 0;
                w_pev = 0;
                word = q * N + j;
                for (k = 0; k < K; k = k + 1) begin
                    xv = sext(xmem[q * K + k], X_BITS, X_SIGNED);
                    wv = sext(wmem[j * K + k], W_BITS, 1);
                    sumw = sumw + wv;
                    sumx = sumx + xv;
                    if (!(EVENT_DRIVEN != 0 && xv == ZX)) begin
                        if (RAW != 0) prod = xv * wv;
                        else prod = (xv - ZX) * (wv - zw);
                        if (PRE > 1) begin
                            pre = pre + prod;
                            pcnt = pcnt + 1;
                            if (pcnt == PRE) begin
                                if (outside(pre, PRE_BITS)) begin
                                    pre_events = pre_events + 1;
                                    w_pev = w_pev + 1;
                                    if (fp < 0) fp = step;
                                end
                                tree = tree + fit(pre, PRE_BITS, PRE_OVERFLOW);
                                pre = 0;
                                pcnt = 0;
                            end
                        end else begin
                            tree = tree + prod;
                        end
                        cnt = cnt + 1;
                        if (cnt == TREE) begin
                            if (outside(acc + tree, ACC_BITS)) begin
                                acc_events = acc_events + 1;
                                w_aev = w_aev + 1;
                                if (fa < 0) fa = step;
                            end
                            acc = fit(acc + tree, ACC_BITS, OVERFLOW);
                            step = step + 1;
                            tree = 0;
                            cnt = 0;
                        end
                    end
                end
                if (cnt != 0) begin  // last, partial adder-tree step (pre-add padded with zeros)
                    if (pcnt != 0) begin
                        if (outside(pre, PRE_BITS)) begin
                            pre_events = pre_events + 1;
                            w_pev = w_pev + 1;
                            if (fp < 0) fp = step;
                        end
                        tree = tree + fit(pre, PRE_BITS, PRE_OVERFLOW);
                    end
                    if (outside(acc + tree, ACC_BITS)) begin
                        acc_events = acc_events + 1;
                        w_aev = w_aev + 1;
                        if (fa < 0) fa = step;
                    end
                    acc = fit(acc + tree, ACC_BITS, OVERFLOW);
                    step = step + 1;
                end
                if (RAW != 0) begin  // offset correction: one more accumulator addition
                    corr = -ZX * sumw - zw * sumx + K * ZX * zw;
                    if (outside(acc + corr, ACC_BITS)) begin
                        acc_events = acc_events + 1;
                        w_aev = w_aev + 1;
                        if (fa < 0) fa = step;
                    end
                    acc = fit(acc + corr, ACC_BITS, OVERFLOW);
                    step = step + 1;
                end
                got_aev[word] = w_aev;
                got_pev[word] = w_pev;
                got_flg[word] = {6'd0, (w_pev != 0), (w_aev != 0)};
                // schedule order of a first event: (query, tile, step, lane)
                if (fa >= 0) begin
                    key = (q * (128'd1 << 96)) + (((N0 + j) / LANES) * (128'd1 << 64))
                          + (fa * (128'd1 << 32)) + ((N0 + j) % LANES);
                    if (best_acc_word < 0 || key < best_acc_key) begin
                        best_acc_key = key;
                        best_acc_word = word;
                    end
                end
                if (fp >= 0) begin
                    key = (q * (128'd1 << 96)) + (((N0 + j) / LANES) * (128'd1 << 64))
                          + (fp * (128'd1 << 32)) + ((N0 + j) % LANES);
                    if (best_pre_word < 0 || key < best_pre_key) begin
                        best_pre_key = key;
                        best_pre_word = word;
                    end
                end

                expv = sext(accmem[q * N + j], ACC_BITS, 1);
                if (acc === expv) passed = passed + 1;
                else begin
                    failed = failed + 1;
                    if (failed <= MAX_REPORT)
                        $display("tb_layer: MISMATCH acc query %0d neuron %0d (word %0d): expected %0d, got %0d",
                                 q, j, q * N + j, expv, acc);
                end

                if (CHECK_CODES != 0) begin
                    m0 = sext(m0mem[j], M0_BITS, 0);
                    sh = sext(shmem[j], SHIFT_BITS, 1);
                    wide = acc * m0;
                    if (sh < 0) v = wide <<< (-sh);
                    else v = round_shift(wide, sh, ROUNDING);
                    y = v + ZY;
                    if (y < CLAMP_LO) begin
                        y = CLAMP_LO;
                        got_flg[word] = got_flg[word] | 8'd4;
                    end
                    if (y > CLAMP_HI) begin
                        y = CLAMP_HI;
                        got_flg[word] = got_flg[word] | 8'd8;
                    end
                    expv = sext(ymem[q * N + j], Y_BITS, Y_SIGNED);
                    if (y === expv) passed = passed + 1;
                    else begin
                        failed = failed + 1;
                        if (failed <= MAX_REPORT)
                            $display("tb_layer: MISMATCH code query %0d neuron %0d (word %0d): expected %0d, got %0d",
                                     q, j, q * N + j, expv, y);
                    end
                end
            end
        end

        if (PER_WORD != 0) begin
            if (best_acc_word >= 0) got_flg[best_acc_word] = got_flg[best_acc_word] | 8'd16;
            if (best_pre_word >= 0) got_flg[best_pre_word] = got_flg[best_pre_word] | 8'd32;
            fmask = (CHECK_CODES != 0) ? 8'hff : 8'hf3;  // clamp bits need the requantizer
            for (i = 0; i < Q * N; i = i + 1) begin
                if (got_aev[i] === sext(aevmem[i], EV_BITS, 0)) passed = passed + 1;
                else begin
                    failed = failed + 1;
                    if (failed <= MAX_REPORT)
                        $display("tb_layer: MISMATCH acc_ev query %0d neuron %0d (word %0d): expected %0d, got %0d",
                                 i / N, N0 + i % N, i, aevmem[i], got_aev[i]);
                end
                if (got_pev[i] === sext(pevmem[i], EV_BITS, 0)) passed = passed + 1;
                else begin
                    failed = failed + 1;
                    if (failed <= MAX_REPORT)
                        $display("tb_layer: MISMATCH pre_ev query %0d neuron %0d (word %0d): expected %0d, got %0d",
                                 i / N, N0 + i % N, i, pevmem[i], got_pev[i]);
                end
                if ((got_flg[i] & fmask) === (flgmem[i] & fmask)) passed = passed + 1;
                else begin
                    failed = failed + 1;
                    if (failed <= MAX_REPORT)
                        $display("tb_layer: MISMATCH flags query %0d neuron %0d (word %0d): expected %b, got %b",
                                 i / N, N0 + i % N, i, flgmem[i] & fmask, got_flg[i] & fmask);
                end
            end
        end
        if (EXP_ACC_EVENTS >= 0) begin
            if (acc_events == EXP_ACC_EVENTS) passed = passed + 1;
            else begin
                failed = failed + 1;
                $display("tb_layer: MISMATCH accumulator overflow events: expected %0d, got %0d",
                         EXP_ACC_EVENTS, acc_events);
            end
        end
        if (EXP_PRE_EVENTS >= 0) begin
            if (pre_events == EXP_PRE_EVENTS) passed = passed + 1;
            else begin
                failed = failed + 1;
                $display("tb_layer: MISMATCH pre-add overflow events: expected %0d, got %0d",
                         EXP_PRE_EVENTS, pre_events);
            end
        end

        $display("tb_layer: accumulator overflow events %0d, pre-add overflow events %0d",
                 acc_events, pre_events);
        $display("tb_layer: %0d passed, %0d failed (%0d comparisons, %0d expected)",
                 passed, failed, passed + failed, COMPARISONS);
        if (COMPARISONS >= 0 && passed + failed != COMPARISONS)
            $fatal(1, "tb_layer: FAILED: made %0d comparisons, expected %0d",
                   passed + failed, COMPARISONS);
        if (failed != 0)
            $fatal(1, "tb_layer: FAILED: %0d mismatch(es)", failed);
        $display("tb_layer: PASS");
        $finish;
    end

`undef TB_LOAD
endmodule
