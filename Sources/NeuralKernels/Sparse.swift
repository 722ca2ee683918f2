// Sparse kernels for inference from a pruned model: y = x * K + bias where K (inputs x outputs)
// is given as its transpose in CSR form, one row per output channel (how the sparse export
// stores kernels, and how TFLite/XNNPACK walk sparse weights).

import CKernels

/// Rows of the input processed together at most (two SIMD16, two AVX-512 registers, per stored
/// weight; SIMD32 itself compiled to far slower code).
let sparseTile = 32

/// output (m x outputs) = input (m x inputs) * K + bias, K^T in CSR (`rowOffsets` has
/// outputs + 1 entries, `columns` index input features).
///
/// Vectorised over the m rows as in Fast Sparse ConvNets (Elsen et al.) / XNNPACK: a tile of up
/// to `sparseTile` input rows is transposed to channel-major (inputs x width), so each stored
/// weight is broadcast and multiplied by `width` contiguous activations, accumulated channel-major
/// (outputs x width) and transposed back. The width is the narrowest of 4, 8, 16 and 32 lanes
/// that holds the tile's rows (a late layer at batch 1 has 1 or 4 rows), the spare lanes zero.
/// Two output channels are summed at once (independent dependency chains; a single one would wait
/// on the FMA's latency at every stored weight). Each output is still the bias plus its products
/// added one at a time in CSR order by fused multiply-adds, every lane alike, so the result does
/// not depend on the tiling: it is the bits a scalar loop `a.addProduct(w, x)` over the CSR row
/// gives. Empty rows give the bias. The transposes move 16 x 16 blocks in registers.
/// With `epilogue`, each output is mapped by it (BatchNormalization + ReLU) on the channel-major
/// tile, before it is transposed out: the float operations of `channelAffineReLUForward`, so the
/// bits are those of the product followed by that pass, without the pass over the output.
public func csrMatmulForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows m: Int, inputs: Int, outputs: Int,
    rowOffsets: UnsafePointer<Int32>, columns: UnsafePointer<Int32>, values: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, epilogue: ChannelAffineReLU? = nil
) {
    guard m > 0, outputs > 0 else { return }
    let xt = UnsafeMutablePointer<Float>.allocate(capacity: max(inputs, 1) * sparseTile)
    let yt = UnsafeMutablePointer<Float>.allocate(capacity: outputs * sparseTile)
    defer { xt.deallocate(); yt.deallocate() }
    let weights = CSRKernel(outputs: outputs, rowOffsets: rowOffsets, columns: columns, values: values, bias: bias)
    var r = 0
    while r < m {
        let n = min(sparseTile, m - r)
        let width = n <= 4 ? 4 : n <= 8 ? 8 : n <= 16 ? 16 : 32
        // Transpose rows r..<r+n to channel-major (stride `width`); zero the spare lanes.
        if n < width {
            for c in 0..<inputs { (xt + c * width + n).update(repeating: 0, count: width - n) }
        }
        transposeTile(input + r * inputs, rows: n, columns: inputs, rowStride: inputs, into: xt, stride: width)
        switch width {
        case 4: weights.tile(SIMD4<Float>.self, xt, yt)
        case 8: weights.tile(SIMD8<Float>.self, xt, yt)
        case 16: weights.tile(SIMD16<Float>.self, xt, yt)
        default: weights.tile32(xt, yt)
        }
        // On the channel-major tile, still in L1/L2, before it is transposed out.
        epilogue?.apply(channelMajor: yt, channels: outputs, lanes: width)
        transposeTile(UnsafePointer(yt), rows: outputs, columns: n, rowStride: width, into: output + r * outputs, stride: outputs)
        r += n
    }
}

/// dst[j * stride + i] = src[i * rowStride + j] for i < rows, j < columns: 16 x 16 blocks in
/// registers (`gm_transpose16`, C: the unpack and 128-bit lane shuffles a 16 x 16 transpose
/// needs; the same network written with Swift's SIMD halves compiled to per-element broadcasts,
/// inserts and stack spills), the edges one float at a time.
private func transposeTile(_ src: UnsafePointer<Float>, rows: Int, columns: Int, rowStride: Int,
                           into dst: UnsafeMutablePointer<Float>, stride: Int) {
    let fullRows = rows / 16 * 16, fullColumns = columns / 16 * 16
    for i in Swift.stride(from: 0, to: fullRows, by: 16) {
        for j in Swift.stride(from: 0, to: fullColumns, by: 16) {
            gm_transpose16(src + i * rowStride + j, rowStride, dst + j * stride + i, stride)
        }
    }
    for i in 0..<rows {
        let start = i < fullRows ? fullColumns : 0
        for j in start..<columns { dst[j * stride + i] = src[i * rowStride + j] }
    }
}

/// K^T in CSR and the bias, for `csrMatmulForward`'s tiles.
private struct CSRKernel {
    let outputs: Int
    let rowOffsets: UnsafePointer<Int32>
    let columns: UnsafePointer<Int32>
    let values: UnsafePointer<Float>
    let bias: UnsafePointer<Float>?

    /// yt (outputs x V.scalarCount) = K^T * xt (inputs x V.scalarCount) + bias, both channel-major.
    @inline(__always)
    func tile<V: SIMD>(_: V.Type, _ xt: UnsafeMutablePointer<Float>, _ yt: UnsafeMutablePointer<Float>) where V.Scalar == Float {
        let x = UnsafeRawPointer(xt), y = UnsafeMutableRawPointer(yt)
        let stride = MemoryLayout<V>.size
        @inline(__always) func add(_ k: Int, _ a: inout V) {
            a.addProduct(V(repeating: values[k]), x.loadUnaligned(fromByteOffset: Int(columns[k]) * stride, as: V.self))
        }
        var o = 0
        while o + 1 < outputs {
            // Outputs o and o + 1 together over their common length, then the longer one's rest.
            let a0 = Int(rowOffsets[o]), a1 = Int(rowOffsets[o + 1]), b1 = Int(rowOffsets[o + 2])
            var a = V(repeating: bias?[o] ?? 0), b = V(repeating: bias?[o + 1] ?? 0)
            let common = min(a1 - a0, b1 - a1)
            for j in 0..<common {
                add(a0 + j, &a)
                add(a1 + j, &b)
            }
            for k in (a0 + common)..<a1 { add(k, &a) }
            for k in (a1 + common)..<b1 { add(k, &b) }
            y.storeBytes(of: a, toByteOffset: o * stride, as: V.self)
            y.storeBytes(of: b, toByteOffset: (o + 1) * stride, as: V.self)
            o += 2
        }
        if o < outputs {
            var a = V(repeating: bias?[o] ?? 0)
            for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) { add(k, &a) }
            y.storeBytes(of: a, toByteOffset: o * stride, as: V.self)
        }
    }

    /// `tile` for 32 lanes, as two SIMD16 halves.
    func tile32(_ xt: UnsafeMutablePointer<Float>, _ yt: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        let x = UnsafeRawPointer(xt), y = UnsafeMutableRawPointer(yt)
        let stride = 2 * MemoryLayout<V>.size, half = MemoryLayout<V>.size
        @inline(__always) func add(_ k: Int, _ low: inout V, _ high: inout V) {
            let w = V(repeating: values[k]), p = Int(columns[k]) * stride
            low.addProduct(w, x.loadUnaligned(fromByteOffset: p, as: V.self))
            high.addProduct(w, x.loadUnaligned(fromByteOffset: p + half, as: V.self))
        }
        @inline(__always) func store(_ o: Int, _ low: V, _ high: V) {
            y.storeBytes(of: low, toByteOffset: o * stride, as: V.self)
            y.storeBytes(of: high, toByteOffset: o * stride + half, as: V.self)
        }
        var o = 0
        while o + 1 < outputs {
            let a0 = Int(rowOffsets[o]), a1 = Int(rowOffsets[o + 1]), b1 = Int(rowOffsets[o + 2])
            var a = V(repeating: bias?[o] ?? 0), aHigh = a, b = V(repeating: bias?[o + 1] ?? 0), bHigh = b
            let common = min(a1 - a0, b1 - a1)
            for j in 0..<common {
                add(a0 + j, &a, &aHigh)
                add(a1 + j, &b, &bHigh)
            }
            for k in (a0 + common)..<a1 { add(k, &a, &aHigh) }
            for k in (a1 + common)..<b1 { add(k, &b, &bHigh) }
            store(o, a, aHigh)
            store(o + 1, b, bHigh)
            o += 2
        }
        if o < outputs {
            var a = V(repeating: bias?[o] ?? 0), aHigh = a
            for k in Int(rowOffsets[o])..<Int(rowOffsets[o + 1]) { add(k, &a, &aHigh) }
            store(o, a, aHigh)
        }
    }
}
