// Sparse kernels for inference from a pruned model: y = x * K + bias where K (inputs x outputs)
// is given as its transpose in CSR form, one row per output channel (how the sparse export
// stores kernels, and how TFLite/XNNPACK walk sparse weights).

/// output (m x outputs) = input (m x inputs) * K + bias, K^T in CSR (`rowOffsets` has
/// outputs + 1 entries, `columns` index input features). Four input rows are processed together so
/// each stored weight is loaded once per four rows.
public func csrMatmulForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows m: Int, inputs: Int, outputs: Int,
    rowOffsets: UnsafePointer<Int32>, columns: UnsafePointer<Int32>, values: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?
) {
    var r = 0
    while r + 4 <= m {
        let x0 = input + r * inputs, x1 = x0 + inputs, x2 = x1 + inputs, x3 = x2 + inputs
        for o in 0..<outputs {
            let start = bias?[o] ?? 0
            var a0 = start, a1 = start, a2 = start, a3 = start
            for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) {
                let c = Int(columns[k]), v = values[k]
                a0 += v * x0[c]
                a1 += v * x1[c]
                a2 += v * x2[c]
                a3 += v * x3[c]
            }
            output[r * outputs + o] = a0
            output[(r + 1) * outputs + o] = a1
            output[(r + 2) * outputs + o] = a2
            output[(r + 3) * outputs + o] = a3
        }
        r += 4
    }
    while r < m {
        let x = input + r * inputs
        for o in 0..<outputs {
            var a = bias?[o] ?? 0
            for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) { a += values[k] * x[Int(columns[k])] }
            output[r * outputs + o] = a
        }
        r += 1
    }
}
