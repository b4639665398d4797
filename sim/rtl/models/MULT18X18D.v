// A behavioural model of the Lattice ECP5 MULT18X18D for Verilator, in the one configuration
// that tern's dataflow units instantiate (hw/dataflow/products.py, partial_product with
// target="ecp5"): P = A * B (each 18 bits, signed where SIGNEDA / SIGNEDB are high), with the
// input registers on A and B and the output register on P, all on CLK0 with CE0 (the cell's
// own pipeline register and the C input, SOURCEA / SOURCEB and the cascade are not used).
// Yosys has only a black box of the cell; this model lets Verilator run a design that holds
// it, so that the instance's wiring (bit order, signedness, latency) is checked against the
// behaviour the Lattice sysDSP documentation gives. Written for tern; not Lattice's model.
/* verilator lint_off UNUSEDSIGNAL */
/* verilator lint_off UNUSEDPARAM */
module MULT18X18D (
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17, B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17, C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17, SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CLK1, CLK2, CLK3, CE0, CE1, CE2, CE3, RST0, RST1, RST2, RST3,
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35
);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter GSR = "ENABLED";

    initial begin
        if (REG_INPUTA_CLK != "CLK0" || REG_INPUTB_CLK != "CLK0" || REG_OUTPUT_CLK != "CLK0")
            $fatal(1, "MULT18X18D model: only registered A, B and P on CLK0 are modelled");
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q = 18'd0, b_q = 18'd0;
    reg [35:0] p_q = 36'd0;
    wire signed [18:0] a_ext = {SIGNEDA & a_q[17], a_q};
    wire signed [18:0] b_ext = {SIGNEDB & b_q[17], b_q};
    wire signed [37:0] product = a_ext * b_ext;

    always @(posedge CLK0) begin
        if (CE0) begin
            a_q <= a;
            b_q <= b;
            p_q <= product[35:0];
        end
    end

    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p_q;
endmodule
