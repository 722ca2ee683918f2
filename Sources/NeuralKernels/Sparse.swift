// Sparse kernels for inference from a pruned model: y = x * K + bias where K (inputs x outputs)
// is given as its transpose in CSR form, one row per output channel (how the sparse export
// stores kernels, and how TFLite/XNNPACK walk sparse weights).

/// Rows of the input processed together: two 16-float vectors per stored weight.
let sparseTile = 32
/// A last tile shorter than this runs scalar: padding it to `sparseTile` would multiply zeros.
let scalarRows = 8

/// output (m x outputs) = input (m x inputs) * K + bias, K^T in CSR (`rowOffsets` has
/// outputs + 1 entries, `columns` index input features).
///
/// Vectorised over the m rows as in Fast Sparse ConvNets (Elsen et al.) / XNNPACK: a tile of
/// `sparseTile` input rows is transposed to channel-major (inputs x tile), so each stored weight is
/// broadcast and multiplied by contiguous activations (SIMD16), accumulated channel-major
/// (outputs x tile) and transposed back. Each output is summed in CSR order starting from the bias,
/// as the scalar form did. Empty rows give the bias; a short last tile is zero-padded, or under `scalarRows` rows runs
/// scalar.
public func csrMatmulForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows m: Int, inputs: Int, outputs: Int,
    rowOffsets: UnsafePointer<Int32>, columns: UnsafePointer<Int32>, values: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?
) {
    guard m > 0, outputs > 0 else { return }
    let tile = sparseTile
    let xt = UnsafeMutablePointer<Float>.allocate(capacity: max(inputs, 1) * tile)
    let yt = UnsafeMutablePointer<Float>.allocate(capacity: outputs * tile)
    defer { xt.deallocate(); yt.deallocate() }
    var r = 0
    while r < m {
        let n = min(tile, m - r)
        if n < scalarRows {
            // Too few rows to fill vectors (a late layer at batch 1): one row at a time, scalar,
            // summed in the same CSR order from the bias.
            for i in r..<m {
                let x = input + i * inputs
                for o in 0..<outputs {
                    var a = bias?[o] ?? 0
                    for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) { a += values[k] * x[Int(columns[k])] }
                    output[i * outputs + o] = a
                }
            }
            return
        }
        // Transpose rows r..<r+n to channel-major; pad a short tile with zeros.
        if n < tile { xt.update(repeating: 0, count: inputs * tile) }
        for i in 0..<n {
            let x = input + (r + i) * inputs
            for c in 0..<inputs { xt[c * tile + i] = x[c] }
        }
        let xr = UnsafeRawPointer(xt)
        if n <= 16 {
            // One vector per stored weight: the second would multiply only padding.
            for o in 0..<outputs {
                var a0 = SIMD16<Float>(repeating: bias?[o] ?? 0)
                for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) {
                    a0 += SIMD16<Float>(repeating: values[k])
                        * xr.loadUnaligned(fromByteOffset: Int(columns[k]) * tile * MemoryLayout<Float>.stride, as: SIMD16<Float>.self)
                }
                UnsafeMutableRawPointer(yt + o * tile).storeBytes(of: a0, as: SIMD16<Float>.self)
            }
        } else {
            for o in 0..<outputs {
                var a0 = SIMD16<Float>(repeating: bias?[o] ?? 0), a1 = a0
                for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) {
                    let v = SIMD16<Float>(repeating: values[k])
                    let p = Int(columns[k]) * tile * MemoryLayout<Float>.stride
                    a0 += v * xr.loadUnaligned(fromByteOffset: p, as: SIMD16<Float>.self)
                    a1 += v * xr.loadUnaligned(fromByteOffset: p + 64, as: SIMD16<Float>.self)
                }
                let y = UnsafeMutableRawPointer(yt + o * tile)
                y.storeBytes(of: a0, as: SIMD16<Float>.self)
                y.storeBytes(of: a1, toByteOffset: 64, as: SIMD16<Float>.self)
            }
        }
        for i in 0..<n {
            let y = output + (r + i) * outputs
            for o in 0..<outputs { y[o] = yt[o * tile + i] }
        }
        r += n
    }
}
