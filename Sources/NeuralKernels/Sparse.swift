// Sparse kernels for inference from a pruned model: y = x * K + bias where K (inputs x outputs)
// is given as its transpose in CSR form, one row per output channel (how the sparse export
// stores kernels, and how TFLite/XNNPACK walk sparse weights).

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
/// registers, the edges one float at a time.
private func transposeTile(_ src: UnsafePointer<Float>, rows: Int, columns: Int, rowStride: Int,
                           into dst: UnsafeMutablePointer<Float>, stride: Int) {
    let fullRows = rows / 16 * 16, fullColumns = columns / 16 * 16
    for i in Swift.stride(from: 0, to: fullRows, by: 16) {
        for j in Swift.stride(from: 0, to: fullColumns, by: 16) {
            transpose16(src + i * rowStride + j, rowStride, dst + j * stride + i, stride)
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

/// 16 rows of 16 floats.
private typealias Block16 = (SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>,
                             SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>,
                             SIMD16<Float>, SIMD16<Float>, SIMD16<Float>, SIMD16<Float>)

/// One perfect unshuffle of 16 rows: row i (i < 8) becomes the even lanes of rows 2i and 2i + 1,
/// row i + 8 their odd lanes. Four of them transpose the block (each moves a lane index's bit
/// into the row index).
@inline(__always)
private func unshuffle(_ b: Block16) -> Block16 {
    (SIMD16(lowHalf: b.0.evenHalf, highHalf: b.1.evenHalf),
     SIMD16(lowHalf: b.2.evenHalf, highHalf: b.3.evenHalf),
     SIMD16(lowHalf: b.4.evenHalf, highHalf: b.5.evenHalf),
     SIMD16(lowHalf: b.6.evenHalf, highHalf: b.7.evenHalf),
     SIMD16(lowHalf: b.8.evenHalf, highHalf: b.9.evenHalf),
     SIMD16(lowHalf: b.10.evenHalf, highHalf: b.11.evenHalf),
     SIMD16(lowHalf: b.12.evenHalf, highHalf: b.13.evenHalf),
     SIMD16(lowHalf: b.14.evenHalf, highHalf: b.15.evenHalf),
     SIMD16(lowHalf: b.0.oddHalf, highHalf: b.1.oddHalf),
     SIMD16(lowHalf: b.2.oddHalf, highHalf: b.3.oddHalf),
     SIMD16(lowHalf: b.4.oddHalf, highHalf: b.5.oddHalf),
     SIMD16(lowHalf: b.6.oddHalf, highHalf: b.7.oddHalf),
     SIMD16(lowHalf: b.8.oddHalf, highHalf: b.9.oddHalf),
     SIMD16(lowHalf: b.10.oddHalf, highHalf: b.11.oddHalf),
     SIMD16(lowHalf: b.12.oddHalf, highHalf: b.13.oddHalf),
     SIMD16(lowHalf: b.14.oddHalf, highHalf: b.15.oddHalf))
}

/// dst[j * dstStride + i] = src[i * srcStride + j] for a 16 x 16 block (four unshuffles in registers).
@inline(__always)
private func transpose16(_ src: UnsafePointer<Float>, _ srcStride: Int, _ dst: UnsafeMutablePointer<Float>, _ dstStride: Int) {
    let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst), f = MemoryLayout<Float>.stride
    @inline(__always) func row(_ i: Int) -> SIMD16<Float> { s.loadUnaligned(fromByteOffset: i * srcStride * f, as: SIMD16<Float>.self) }
    var b: Block16 = (row(0), row(1), row(2), row(3), row(4), row(5), row(6), row(7), row(8), row(9), row(10), row(11), row(12), row(13), row(14), row(15))
    b = unshuffle(unshuffle(unshuffle(unshuffle(b))))
    d.storeBytes(of: b.0, toByteOffset: 0 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.1, toByteOffset: 1 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.2, toByteOffset: 2 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.3, toByteOffset: 3 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.4, toByteOffset: 4 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.5, toByteOffset: 5 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.6, toByteOffset: 6 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.7, toByteOffset: 7 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.8, toByteOffset: 8 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.9, toByteOffset: 9 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.10, toByteOffset: 10 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.11, toByteOffset: 11 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.12, toByteOffset: 12 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.13, toByteOffset: 13 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.14, toByteOffset: 14 * dstStride * f, as: SIMD16<Float>.self)
    d.storeBytes(of: b.15, toByteOffset: 15 * dstStride * f, as: SIMD16<Float>.self)
}
