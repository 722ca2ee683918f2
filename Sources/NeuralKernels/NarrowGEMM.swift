// C = A * B (+ C) for a narrow B: n of 16, 32, 48 or 64 columns, the output channels of ResNet-20's
// 3x3 convolutions and of the first layers of MobileNet. OpenBLAS's sgemm spends most of its time
// on these shapes packing A (m x k, the im2col columns, read once) for a product only 16-64
// columns wide (`perf` on ResNet-20: 12% in `sgemm_oncopy`, against 43% in the kernel itself).
// Here A is read in place: a register tile of R rows x n columns of C stays in registers over the
// whole k loop, each step broadcasting R entries of A and loading one row of B (n floats, in L1).

/// Whether `narrowGemm` takes a product with `n` columns.
@inline(__always)
func narrowGemmTakes(n: Int) -> Bool { n == 16 || n == 32 || n == 48 || n == 64 }

/// C (m x n) = A (m x k) * B (k x n) + (accumulate ? C : 0), row-major, n one of 16/32/48/64.
///
/// Each entry of C is its k products added in order of k by fused multiply-adds onto 0, then C's
/// old value added once (as BLAS: alpha * AB + beta * C with alpha 1, beta 0 or 1). The order
/// depends on nothing else (not the tile, not the rows around it), so a product split into row
/// tiles gives the same bits as one call over all rows, on every machine.
func narrowGemm(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
    NarrowProduct(segmentLength: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: accumulate, c: c, ldc: ldc).run(n: n, m: m)
}

/// A row of C of 16, 32, 48 or 64 floats in registers.
protocol NarrowRow {
    init()
    init(loading: UnsafePointer<Float>)
    /// self += s * w, lane by lane, fused.
    mutating func add(_ s: Float, _ w: Self)
    /// Stores the row at `to`, plus what `to` held with `accumulate`, else plus `bias` (n floats) when given.
    func store(to: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?)
}

typealias V16 = SIMD16<Float>

@inline(__always) private func load(_ p: UnsafePointer<Float>) -> V16 {
    UnsafeRawPointer(p).loadUnaligned(as: V16.self)
}

/// Stores v, v + C's old value (`accumulate`) or v + the bias (as onto a C that holds the bias).
@inline(__always) private func store(_ v: V16, _ p: UnsafeMutablePointer<Float>, _ accumulate: Bool, _ bias: UnsafePointer<Float>?) {
    let raw = UnsafeMutableRawPointer(p)
    if accumulate {
        raw.storeBytes(of: v + raw.loadUnaligned(as: V16.self), as: V16.self)
    } else if let bias {
        raw.storeBytes(of: v + load(bias), as: V16.self)
    } else {
        raw.storeBytes(of: v, as: V16.self)
    }
}

struct Lanes1: NarrowRow {
    var v0 = V16()
    init() {}
    @inline(__always) init(loading p: UnsafePointer<Float>) { v0 = load(p) }
    @inline(__always) mutating func add(_ s: Float, _ w: Lanes1) { v0.addProduct(V16(repeating: s), w.v0) }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?) {
        NeuralKernels.store(v0, p, accumulate, bias)
    }
}

struct Lanes2: NarrowRow {
    var v0 = V16(), v1 = V16()
    init() {}
    @inline(__always) init(loading p: UnsafePointer<Float>) { (v0, v1) = (load(p), load(p + 16)) }
    @inline(__always) mutating func add(_ s: Float, _ w: Lanes2) {
        let s = V16(repeating: s)
        v0.addProduct(s, w.v0)
        v1.addProduct(s, w.v1)
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?) {
        NeuralKernels.store(v0, p, accumulate, bias)
        NeuralKernels.store(v1, p + 16, accumulate, bias.map { $0 + 16 })
    }
}

struct Lanes3: NarrowRow {
    var v0 = V16(), v1 = V16(), v2 = V16()
    init() {}
    @inline(__always) init(loading p: UnsafePointer<Float>) { (v0, v1, v2) = (load(p), load(p + 16), load(p + 32)) }
    @inline(__always) mutating func add(_ s: Float, _ w: Lanes3) {
        let s = V16(repeating: s)
        v0.addProduct(s, w.v0)
        v1.addProduct(s, w.v1)
        v2.addProduct(s, w.v2)
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?) {
        NeuralKernels.store(v0, p, accumulate, bias)
        NeuralKernels.store(v1, p + 16, accumulate, bias.map { $0 + 16 })
        NeuralKernels.store(v2, p + 32, accumulate, bias.map { $0 + 32 })
    }
}

struct Lanes4: NarrowRow {
    var v0 = V16(), v1 = V16(), v2 = V16(), v3 = V16()
    init() {}
    @inline(__always) init(loading p: UnsafePointer<Float>) { (v0, v1, v2, v3) = (load(p), load(p + 16), load(p + 32), load(p + 48)) }
    @inline(__always) mutating func add(_ s: Float, _ w: Lanes4) {
        let s = V16(repeating: s)
        v0.addProduct(s, w.v0)
        v1.addProduct(s, w.v1)
        v2.addProduct(s, w.v2)
        v3.addProduct(s, w.v3)
    }
    @inline(__always) func store(to p: UnsafeMutablePointer<Float>, accumulate: Bool, bias: UnsafePointer<Float>?) {
        NeuralKernels.store(v0, p, accumulate, bias)
        NeuralKernels.store(v1, p + 16, accumulate, bias.map { $0 + 16 })
        NeuralKernels.store(v2, p + 32, accumulate, bias.map { $0 + 32 })
        NeuralKernels.store(v3, p + 48, accumulate, bias.map { $0 + 48 })
    }
}

/// C (rows x n) = A * B (+ C), where row i of A is `segments` runs of `segmentLength` entries,
/// run s starting at a + i * lda + s * segmentStride, its entries `step` floats apart (one
/// contiguous run of k for a matrix; for a convolution read in place, a window's rows in the
/// image), and B is k x n with k = segments * segmentLength, its rows for run s starting
/// `bSegmentStride` floats after run s - 1's (segmentLength * ldb unless said otherwise).
struct NarrowProduct {
    var segments = 1, segmentLength: Int, segmentStride = 0, step = 1
    let a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int
    var bSegmentStride: Int? = nil
    let accumulate: Bool
    /// Added to every row of C as it is stored (n floats), unless `accumulate`.
    var bias: UnsafePointer<Float>? = nil
    let c: UnsafeMutablePointer<Float>, ldc: Int

    /// Register tiles of 8 rows for 16/32 columns (8 or 16 accumulators), 4 rows for 48/64 (12 or
    /// 16); the rows left over one at a time.
    @inline(__always)
    func run<R: NarrowRow>(_: R.Type, m: Int) {
        let wide = MemoryLayout<R>.size <= 2 * MemoryLayout<V16>.size
        var i = 0
        if wide {
            while i + 8 <= m { tile8(R.self, i); i += 8 }
        }
        while i + 4 <= m { tile4(R.self, i); i += 4 }
        while i < m { tile1(R.self, i); i += 1 }
    }

    private var bStride: Int { bSegmentStride ?? segmentLength * ldb }

    @inline(__always)
    func tile8<R: NarrowRow>(_: R.Type, _ i: Int) {
        var (c0, c1, c2, c3, c4, c5, c6, c7) = (R(), R(), R(), R(), R(), R(), R(), R())
        for s in 0..<segments {
            let r = a + i * lda + s * segmentStride, w0 = b + s * bStride
            for j in 0..<segmentLength {
                let w = R(loading: w0 + j * ldb), x = r + j * step
                c0.add(x[0], w); c1.add(x[lda], w); c2.add(x[2 * lda], w); c3.add(x[3 * lda], w)
                c4.add(x[4 * lda], w); c5.add(x[5 * lda], w); c6.add(x[6 * lda], w); c7.add(x[7 * lda], w)
            }
        }
        let o = c + i * ldc
        c0.store(to: o, accumulate: accumulate, bias: bias); c1.store(to: o + ldc, accumulate: accumulate, bias: bias)
        c2.store(to: o + 2 * ldc, accumulate: accumulate, bias: bias); c3.store(to: o + 3 * ldc, accumulate: accumulate, bias: bias)
        c4.store(to: o + 4 * ldc, accumulate: accumulate, bias: bias); c5.store(to: o + 5 * ldc, accumulate: accumulate, bias: bias)
        c6.store(to: o + 6 * ldc, accumulate: accumulate, bias: bias); c7.store(to: o + 7 * ldc, accumulate: accumulate, bias: bias)
    }

    @inline(__always)
    func tile4<R: NarrowRow>(_: R.Type, _ i: Int) {
        var (c0, c1, c2, c3) = (R(), R(), R(), R())
        for s in 0..<segments {
            let r = a + i * lda + s * segmentStride, w0 = b + s * bStride
            for j in 0..<segmentLength {
                let w = R(loading: w0 + j * ldb), x = r + j * step
                c0.add(x[0], w); c1.add(x[lda], w); c2.add(x[2 * lda], w); c3.add(x[3 * lda], w)
            }
        }
        let o = c + i * ldc
        c0.store(to: o, accumulate: accumulate, bias: bias); c1.store(to: o + ldc, accumulate: accumulate, bias: bias)
        c2.store(to: o + 2 * ldc, accumulate: accumulate, bias: bias); c3.store(to: o + 3 * ldc, accumulate: accumulate, bias: bias)
    }

    @inline(__always)
    func tile1<R: NarrowRow>(_: R.Type, _ i: Int) {
        var c0 = R()
        for s in 0..<segments {
            let r = a + i * lda + s * segmentStride, w0 = b + s * bStride
            for j in 0..<segmentLength { c0.add(r[j * step], R(loading: w0 + j * ldb)) }
        }
        c0.store(to: c + i * ldc, accumulate: accumulate, bias: bias)
    }

    /// Runs the product over `m` rows with n columns (16, 32, 48 or 64).
    @inline(__always)
    func run(n: Int, m: Int) {
        switch n {
        case 16: run(Lanes1.self, m: m)
        case 32: run(Lanes2.self, m: m)
        case 48: run(Lanes3.self, m: m)
        default: run(Lanes4.self, m: m)
        }
    }
}

/// One image of a batch as a convolution's windows read it: in place when they stay inside it,
/// else copied into `scratch` inside the zeros of the padding (the area the windows cover,
/// `paddedImageFloats`; its border is zeroed by the first call of a pass, `clear`). Returns the
/// view and its row stride in floats.
@inline(__always)
private func windowView(_ image: UnsafePointer<Float>, _ g: WindowGeometry, channels ch: Int,
                        scratch: UnsafeMutablePointer<Float>?, clear: Bool) -> (UnsafePointer<Float>, Int) {
    let (h, w) = (g.inputHeight, g.inputWidth)
    let ph = (g.outputHeight - 1) * g.strideHeight + g.kernelHeight, pw = (g.outputWidth - 1) * g.strideWidth + g.kernelWidth
    guard g.padTop > 0 || g.padLeft > 0 || ph > h || pw > w else { return (image, w * ch) }
    if clear { scratch!.update(repeating: 0, count: paddedImageFloats(g, channels: ch)) }
    let rows = max(0, min(h, ph - g.padTop)), columns = max(0, min(w, pw - g.padLeft))
    for y in 0..<rows {
        (scratch! + ((y + g.padTop) * pw + g.padLeft) * ch).update(from: image + y * w * ch, count: columns * ch)
    }
    return (UnsafePointer(scratch!), pw * ch)
}

/// Floats of the area a convolution's windows cover in one image (padding included).
func paddedImageFloats(_ g: WindowGeometry, channels: Int) -> Int {
    ((g.outputHeight - 1) * g.strideHeight + g.kernelHeight) * ((g.outputWidth - 1) * g.strideWidth + g.kernelWidth) * channels
}

/// Whether the narrow convolution kernels run an ungrouped, undilated Conv2D with these
/// channels: the forward and the kernel gradient for 16/32/48/64 output channels, the input
/// gradient (a convolution of the output gradient, so its width is the input channels) for
/// 16/32/48/64 input channels at stride 1. Grouped and dilated convolutions run im2col + GEMM.
public struct NarrowConvolution {
    public let forward: Bool, kernelGradient: Bool, inputGradient: Bool

    public init(_ g: WindowGeometry, inputChannels: Int, outputChannels: Int, groups: Int = 1) {
        let plain = groups == 1 && g.dilationHeight == 1 && g.dilationWidth == 1
        forward = plain && narrowGemmTakes(n: outputChannels)
        kernelGradient = forward
        inputGradient = plain && g.strideHeight == 1 && g.strideWidth == 1 && narrowGemmTakes(n: inputChannels)
    }

    /// Whether any of the three runs narrow.
    var any: Bool { forward || kernelGradient || inputGradient }

    /// The input gradient's geometry: the output gradient convolved with the flipped kernel,
    /// padded by what the forward's windows did not reach.
    static func inputGradientGeometry(_ g: WindowGeometry) -> WindowGeometry {
        var t = WindowGeometry(inputHeight: g.outputHeight, inputWidth: g.outputWidth, kernelHeight: g.kernelHeight,
                               kernelWidth: g.kernelWidth, strideHeight: 1, strideWidth: 1, padding: .valid)
        (t.padTop, t.padLeft) = (g.kernelHeight - 1 - g.padTop, g.kernelWidth - 1 - g.padLeft)
        (t.outputHeight, t.outputWidth) = (g.inputHeight, g.inputWidth)
        return t
    }

    /// Scratch floats: the forward's padded image and one line of output pixels (for an
    /// epilogue that does not keep the convolution's output), or the input gradient's padded
    /// output gradient and flipped kernel.
    public static func scratchCount(_ g: WindowGeometry, inputChannels: Int, outputChannels: Int) -> Int {
        let flipped = g.kernelHeight * g.kernelWidth * inputChannels * outputChannels
        return max(paddedImageFloats(g, channels: inputChannels) + g.outputWidth * outputChannels,
                   paddedImageFloats(inputGradientGeometry(g), channels: outputChannels) + flipped)
    }
}

/// Convolution output (batch, oh, ow, n) = conv(input, kernel) (+ bias, or + output with
/// `accumulate`) for n of 16/32/48/64 output channels, without im2col: each output row's windows
/// are read in place from the image (from a zero-padded copy of it in `scratch` when they reach
/// over the padding), as `kernelHeight` runs of kernelWidth x channels floats. The products and
/// their order are those of `narrowGemm` over the im2col columns (the padding's zeros included),
/// so the bits are the same. The bias is added to each pixel's sum as it is stored (as BLAS adds
/// the sum onto a C holding the bias, beta 1), and `epilogue` applied to each line of output
/// pixels right after, while it is in L1; without `keepsConvolutionOutput` the line is formed in
/// scratch and `output` is not written.
public func narrowConvolutionForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, bias: UnsafePointer<Float>? = nil,
    accumulate: Bool, scratch: UnsafeMutablePointer<Float>?, batch: Int, geometry g: WindowGeometry, inputChannels ch: Int,
    outputChannels n: Int, epilogue: ChannelAffineEpilogue? = nil
) {
    // Past the padded image (`NarrowConvolution.scratchCount` counts the line).
    let line: UnsafeMutablePointer<Float>? = epilogue?.keepsConvolutionOutput == false ? scratch! + paddedImageFloats(g, channels: ch) : nil
    for image in 0..<batch {
        let (view, rowStride) = windowView(input + image * g.inputHeight * g.inputWidth * ch, g, channels: ch,
                                           scratch: scratch, clear: image == 0)
        for oh in 0..<g.outputHeight {
            let row = (image * g.outputHeight + oh) * g.outputWidth
            let target = line ?? output + row * n
            NarrowProduct(
                segments: g.kernelHeight, segmentLength: g.kernelWidth * ch, segmentStride: rowStride,
                a: view + oh * g.strideHeight * rowStride, lda: g.strideWidth * ch, b: kernel, ldb: n,
                accumulate: accumulate, bias: bias, c: target, ldc: n
            ).run(n: n, m: g.outputWidth)
            epilogue?.apply(target, firstRow: row, count: g.outputWidth, channels: n)
        }
    }
}

/// Adds the kernel gradient of a convolution with 16/32/48/64 output channels into
/// `kernelGradient`, image by image without im2col or a padded copy: for each window tap (i, j)
/// the (input channels x output channels) block is the sum over the output pixels whose tap lies
/// inside the image (a rectangle of them; the others would add zeros) of the input under the tap
/// times the pixel's output gradient, added in pixel order, then added to the gradient (images
/// in order).
public func narrowConvolutionKernelGradient(
    kernelGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
    batch: Int, geometry g: WindowGeometry, inputChannels ch: Int, outputChannels n: Int
) {
    let pixels = g.outputHeight * g.outputWidth
    /// The outputs o in 0..<count with 0 <= o * stride - pad + tap < size.
    func inside(_ tap: Int, _ pad: Int, _ stride: Int, _ size: Int, _ count: Int) -> Range<Int> {
        // Both bounds with non-negative numerators, so integer division is the floor.
        let low = pad > tap ? (pad - tap + stride - 1) / stride : 0
        let last = size - 1 + pad - tap
        let high = last < 0 ? 0 : min(count, last / stride + 1)
        return low..<max(low, high)
    }
    for i in 0..<g.kernelHeight {
        let rows = inside(i, g.padTop, g.strideHeight, g.inputHeight, g.outputHeight)
        for j in 0..<g.kernelWidth {
            let columns = inside(j, g.padLeft, g.strideWidth, g.inputWidth, g.outputWidth)
            guard !rows.isEmpty && !columns.isEmpty else { continue }
            let firstY = rows.lowerBound * g.strideHeight - g.padTop + i, firstX = columns.lowerBound * g.strideWidth - g.padLeft + j
            for image in 0..<batch {
                NarrowProduct(
                    segments: rows.count, segmentLength: columns.count, segmentStride: g.strideHeight * g.inputWidth * ch,
                    step: g.strideWidth * ch, a: input + ((image * g.inputHeight + firstY) * g.inputWidth + firstX) * ch, lda: 1,
                    b: outputGradient + (image * pixels + rows.lowerBound * g.outputWidth + columns.lowerBound) * n, ldb: n,
                    bSegmentStride: g.outputWidth * n, accumulate: true,
                    c: kernelGradient + (i * g.kernelWidth + j) * ch * n, ldc: n
                ).run(n: n, m: ch)
            }
        }
    }
}

/// Adds the input gradient of a stride-1 convolution with 16/32/48/64 input channels into
/// `inputGradient`: the output gradient convolved, as `narrowConvolutionForward`, with the kernel
/// flipped in both axes and its channel axes swapped.
public func narrowConvolutionInputGradient(
    inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    scratch: UnsafeMutablePointer<Float>, batch: Int, geometry g: WindowGeometry, inputChannels ch: Int, outputChannels n: Int
) {
    let (kh, kw) = (g.kernelHeight, g.kernelWidth)
    let flipped = scratch
    for i in 0..<kh {
        for j in 0..<kw {
            for c in 0..<ch {
                for o in 0..<n { flipped[(((kh - 1 - i) * kw + (kw - 1 - j)) * n + o) * ch + c] = kernel[((i * kw + j) * ch + c) * n + o] }
            }
        }
    }
    narrowConvolutionForward(output: inputGradient, input: outputGradient, kernel: flipped, accumulate: true,
                             scratch: scratch + kh * kw * ch * n, batch: batch,
                             geometry: NarrowConvolution.inputGradientGeometry(g), inputChannels: n, outputChannels: ch)
}
