// hwsim_requant.v -- integer-only requantizer of the reference datapath (tempo-hwsim).
//
// Synthesizable Verilog-2005, combinational (the datapath registers its input product and its
// outputs). int8_fixed_point scheme (docs/arithmetic.md):
//   v = round(prod / 2^shift), prod = acc * M0 exact (PB = ACC_BITS + M0_BITS + 1 bits),
//   shift 0 .. PB-2; ROUNDING 0 floor, 1 ceil, 2 toward_zero, 3 half_up, 4 half_down,
//   5 half_even, 6 half_away;  y = clamp(v + ZY, CLAMP_LO, CLAMP_HI) on Y_BITS bits.
// A negative shift (left shift) is not implemented: shift_error is raised and y = CLAMP_HI.
`timescale 1ns / 1ps

module hwsim_requant #(
    parameter integer ACC_BITS = 32,
    parameter integer M0_BITS = 31,
    parameter integer SHIFT_BITS = 8,
    parameter integer ROUNDING = 5,
    parameter integer Y_BITS = 8,
    parameter signed [63:0] ZY = 0,
    parameter signed [63:0] CLAMP_LO = 0,
    parameter signed [63:0] CLAMP_HI = 255
) (
    input  wire signed [ACC_BITS+M0_BITS:0] prod,   // acc * M0, exact
    input  wire [SHIFT_BITS-1:0]            shift,  // two's complement
    output reg  [Y_BITS-1:0]                y,
    output wire                             clamp_low,
    output wire                             clamp_high,
    output wire                             shift_error
);
    localparam integer PB = ACC_BITS + M0_BITS + 1;
    localparam integer CW = ((PB + 2) > 66) ? (PB + 2) : 66;  // compare width

    wire                  neg_shift = shift[SHIFT_BITS-1];
    wire [SHIFT_BITS-2:0] s = shift[SHIFT_BITS-2:0];
    wire signed [PB-1:0]  fl = prod >>> s;                        // floor(prod / 2^s)
    wire [PB-1:0]         mask = ~({PB{1'b1}} << s);
    wire [PB-1:0]         rem = prod & mask;                      // prod - fl * 2^s
    wire [PB-1:0]         half = (s == 0) ? {PB{1'b0}} : ({{(PB - 1){1'b0}}, 1'b1} << (s - 1'b1));
    wire                  nonzero = rem != {PB{1'b0}};
    wire                  above = rem > half;
    wire                  tie = (s != 0) && (rem == half);
    wire                  neg = prod[PB-1];
    reg                   inc;
    always @(*) begin
        case (ROUNDING)
            0: inc = 1'b0;
            1: inc = nonzero;
            2: inc = nonzero && neg;
            3: inc = above || tie;
            4: inc = above;
            5: inc = above || (tie && fl[0]);
            default: inc = above || (tie && !neg);
        endcase
    end

    wire signed [CW-1:0] v = {{(CW - PB){fl[PB-1]}}, fl} + {{(CW - 1){1'b0}}, inc};
    wire signed [CW-1:0] yw = v + {{(CW - 64){ZY[63]}}, ZY};
    wire signed [CW-1:0] lo = {{(CW - 64){CLAMP_LO[63]}}, CLAMP_LO};
    wire signed [CW-1:0] hi = {{(CW - 64){CLAMP_HI[63]}}, CLAMP_HI};
    assign clamp_low = !neg_shift && (yw < lo);
    assign clamp_high = !neg_shift && (yw > hi);
    assign shift_error = neg_shift;
    always @(*) begin
        if (neg_shift || clamp_high) y = CLAMP_HI[Y_BITS-1:0];
        else if (clamp_low) y = CLAMP_LO[Y_BITS-1:0];
        else y = yw[Y_BITS-1:0];
    end
endmodule
