import Testing
@testable import NeuralKernels

@Suite struct SparseTests {
    /// Builds K^T (outputs x inputs) in CSR with `density` of entries kept; row 0 is left empty and
    /// row 1 fully dense when there are enough rows; density 0 gives an all-zero kernel.
    static func csr(outputs: Int, inputs: Int, density: Float, random: inout SeededRandom)
        -> (offsets: [Int32], columns: [Int32], values: [Float]) {
        var offsets: [Int32] = [0], columns: [Int32] = [], values: [Float] = []
        for o in 0..<outputs {
            for c in 0..<inputs {
                let keep = density > 0 && ((o == 1 && outputs > 2) || (o != 0 && (random.next() + 1) / 2 < density))
                let w = random.next()
                if keep { columns.append(Int32(c)); values.append(w) }
            }
            offsets.append(Int32(columns.count))
        }
        return (offsets, columns, values)
    }

    // (m, inputs, outputs): MobileNet / MobileNetV2 pointwise shapes (batch 1 and tails of the
    // 32-row tile), Dense heads, and the fixtures' small im2col patches, channel counts not
    // multiples of 16 among them.
    @Test(arguments: [(1, 1024, 1000), (4, 512, 512), (16, 256, 256), (49, 1024, 1024), (196, 512, 512), (33, 32, 64),
                      (100, 1280, 10), (57, 27, 13), (31, 24, 144), (65, 960, 160), (3, 7, 5), (32, 16, 16)])
    func matchesDenseWithinSummationTolerance(shape: (Int, Int, Int)) {
        let (m, inputs, outputs) = shape
        for density: Float in [0, 0.05, 0.1, 0.5, 1] {
            var random = SeededRandom(seed: UInt64(m * 7919 + inputs * 31 + outputs) &+ UInt64(density * 100))
            let k = Self.csr(outputs: outputs, inputs: inputs, density: density, random: &random)
            let x = random.array(m * inputs, scale: 3), bias = random.array(outputs)
            var y = [Float](repeating: .nan, count: m * outputs)
            csrMatmulForward(output: &y, input: x, rows: m, inputs: inputs, outputs: outputs, rowOffsets: k.offsets,
                             columns: k.columns, values: k.values, bias: bias)
            // Reference in Double. Float32 recursive summation of K+1 terms (the bias and K
            // products, each product rounded at most once: fused multiply-adds round only the
            // sum) has |err| <= gamma_{K+1} * (|b| + sum |w||x|),
            // gamma_n = n*u / (1 - n*u), u = 2^-24 (Higham, Accuracy and Stability, 3.1); the
            // Double reference's own error is negligible beside it.
            let u = 1.0 / Double(1 << 24)
            for r in 0..<m {
                for o in 0..<outputs {
                    // Over the stored entries of row o only: the dense kernel's other entries are
                    // zeros, which add nothing to either sum.
                    var exact = Double(bias[o]), magnitude = Double(abs(bias[o]))
                    for j in Int(k.offsets[o])..<Int(k.offsets[o + 1]) {
                        let w = Double(k.values[j]), v = Double(x[r * inputs + Int(k.columns[j])])
                        exact += w * v; magnitude += abs(w * v)
                    }
                    let n = Double(inputs + 1)
                    let bound = n * u / (1 - n * u) * magnitude
                    let got = Double(y[r * outputs + o])
                    #expect(abs(got - exact) <= bound, "m \(m) \(inputs)x\(outputs) density \(density) at (\(r), \(o))")
                    if density == 0 || o == 0 { #expect(y[r * outputs + o] == bias[o]) }
                }
            }
        }
    }

    /// Every tile width (4, 8, 16 and 32 lanes, and the tails between them) gives each output
    /// the bits of the plain loop it promises: the bias, then each stored weight's product added
    /// in CSR order by a fused multiply-add (one rounding per weight). So the tiling never changes a result, and neither do
    /// the two outputs summed at once (an odd output count leaves one alone).
    @Test func everyTileWidthGivesTheScalarLoopsBits() {
        var random = SeededRandom(seed: 99)
        let inputs = 37, outputs = 23
        let k = Self.csr(outputs: outputs, inputs: inputs, density: 0.3, random: &random)
        for m in [1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 36, 40, 47, 48, 63, 64, 65, 97] {
            let x = random.array(m * inputs, scale: 3), bias = random.array(outputs)
            var y = [Float](repeating: .nan, count: m * outputs)
            csrMatmulForward(output: &y, input: x, rows: m, inputs: inputs, outputs: outputs, rowOffsets: k.offsets,
                             columns: k.columns, values: k.values, bias: bias)
            var noBias = [Float](repeating: .nan, count: m * outputs)
            csrMatmulForward(output: &noBias, input: x, rows: m, inputs: inputs, outputs: outputs, rowOffsets: k.offsets,
                             columns: k.columns, values: k.values, bias: nil)
            for r in 0..<m {
                for o in 0..<outputs {
                    var a = bias[o], b: Float = 0
                    for j in Int(k.offsets[o])..<Int(k.offsets[o + 1]) {
                        let w = k.values[j], v = x[r * inputs + Int(k.columns[j])]
                        a.addProduct(w, v)
                        b.addProduct(w, v)
                    }
                    #expect(y[r * outputs + o].bitPattern == a.bitPattern, "m \(m) at (\(r), \(o))")
                    #expect(noBias[r * outputs + o].bitPattern == b.bitPattern, "m \(m) at (\(r), \(o)), no bias")
                }
            }
        }
    }

    /// The fused epilogue (BatchNormalization folded to scale and shift, then ReLU) gives the bits
    /// of the product followed by `channelAffineReLUForward`'s separate pass, at every tile width,
    /// for ReLU, ReLU6 and a leaky ReLU with a threshold (negative scales and shifts flip and move
    /// outputs across the ReLU's edges), with 16 and 19 output channels (two at once and a tail),
    /// an empty row and an all-zero kernel among them.
    @Test(arguments: [16, 19])
    func epilogueGivesTheSeparatePassBits(outputs: Int) {
        var random = SeededRandom(seed: UInt64(outputs))
        let inputs = 37
        let relus = [ReLUParameters(), ReLUParameters(maxValue: 6), ReLUParameters(maxValue: 0.8, negativeSlope: 0.2, threshold: 0.1)]
        for density: Float in [0, 0.3] {
            let k = Self.csr(outputs: outputs, inputs: inputs, density: density, random: &random)
            let scale = random.array(outputs, scale: 2), shift = random.array(outputs)
            for relu in relus {
                for m in [1, 3, 4, 7, 8, 13, 16, 17, 32, 45, 64, 70] {
                    let x = random.array(m * inputs, scale: 3), bias = random.array(outputs)
                    var fused = [Float](repeating: .nan, count: m * outputs), separate = fused
                    scale.withUnsafeBufferPointer { s in
                        shift.withUnsafeBufferPointer { t in
                            csrMatmulForward(output: &fused, input: x, rows: m, inputs: inputs, outputs: outputs, rowOffsets: k.offsets,
                                             columns: k.columns, values: k.values, bias: bias,
                                             epilogue: ChannelAffineReLU(scale: s.baseAddress!, shift: t.baseAddress!, relu: relu))
                        }
                    }
                    csrMatmulForward(output: &separate, input: x, rows: m, inputs: inputs, outputs: outputs, rowOffsets: k.offsets,
                                     columns: k.columns, values: k.values, bias: bias)
                    let product = separate
                    channelAffineReLUForward(output: &separate, input: product, scale: scale, shift: shift, rows: m, channels: outputs, relu)
                    #expect(fused.map(\.bitPattern) == separate.map(\.bitPattern), "m \(m) density \(density) \(relu)")
                    // Not vacuous: the ReLU's edges are crossed (some outputs clamped, some not).
                    if m >= 16 && density > 0 { #expect(Set(separate).count > m * outputs / 4, "m \(m) \(relu)") }
                }
            }
        }
    }
}
