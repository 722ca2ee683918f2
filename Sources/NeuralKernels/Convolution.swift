/// Geometry of a 2-D convolution or pooling window over NHWC data.
public struct WindowGeometry: Sendable, Equatable {
    public var inputHeight: Int, inputWidth: Int
    public var kernelHeight: Int, kernelWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var padTop: Int, padLeft: Int
    public var outputHeight: Int, outputWidth: Int

    public enum Padding: String, Sendable { case same, valid }

    /// TensorFlow's rule: `valid` has no padding; `same` gives ceil(in / stride) outputs and pads
    /// the total deficit, the smaller half at the top/left.
    public init(inputHeight: Int, inputWidth: Int, kernelHeight: Int, kernelWidth: Int,
                strideHeight: Int, strideWidth: Int, padding: Padding) {
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        func axis(_ size: Int, _ kernel: Int, _ stride: Int) -> (out: Int, before: Int) {
            switch padding {
            case .valid: return (size >= kernel ? (size - kernel) / stride + 1 : 0, 0)
            case .same:
                let out = (size + stride - 1) / stride
                let total = max((out - 1) * stride + kernel - size, 0)
                return (out, total / 2)
            }
        }
        let vertical = axis(inputHeight, kernelHeight, strideHeight)
        let horizontal = axis(inputWidth, kernelWidth, strideWidth)
        outputHeight = vertical.out
        outputWidth = horizontal.out
        padTop = vertical.before
        padLeft = horizontal.before
    }

    /// A 1x1, stride-1, unpadded window: the convolution is a plain matrix product.
    public var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1 && padTop == 0 && padLeft == 0
    }
}

// Conv2D forward and backward, NHWC, kernel (kh, kw, in, out) as Keras stores it.
// The convolution is im2col + one GEMM: columns are (kh, kw, in)-ordered, which is exactly the
// row order of the Keras kernel, so the kernel is used in place as a (kh*kw*in) x out matrix.

/// The most im2col floats gathered at once (2 MB): a convolution whose columns are larger runs
/// tile by tile over its output rows, so the columns it writes, and the GEMM then packs, stay in
/// cache instead of going through memory twice (ResNet-20's first stage has 29 MB of columns for
/// a 50-image chunk).
public let convolutionTileFloats = 1 << 19

/// Output rows per tile for `rows` rows of `patch` columns: the largest multiple of 16 rows that
/// fits in `convolutionTileFloats` (at least 16), or all of them when fewer. It never grows when
/// `rows` shrinks, so a scratch sized for a workspace's largest chunk holds any chunk's tile.
public func convolutionTileRows(rows: Int, patch: Int) -> Int {
    min(rows, max(16, convolutionTileFloats / max(patch, 1) / 16 * 16))
}

/// Scratch floats conv2d needs for `batch` samples (0 for pointwise convolutions): one im2col
/// tile, or what the narrow kernels need (`NarrowConvolution.scratchCount`).
public func conv2dScratchCount(_ g: WindowGeometry, inputChannels: Int, outputChannels: Int, batch: Int) -> Int {
    guard !g.isPointwise else { return 0 }
    let rows = batch * g.outputHeight * g.outputWidth, patch = g.kernelHeight * g.kernelWidth * inputChannels
    return max(convolutionTileRows(rows: rows, patch: patch) * patch,
               NarrowConvolution.scratchCount(g, inputChannels: inputChannels, outputChannels: outputChannels))
}

/// Gathers input patches into rows for the output rows `rows` (row (n, oh, ow) is
/// (n * outputHeight + oh) * outputWidth + ow): each holds the (kh, kw, c) window, zeros where
/// the window hangs over the padding. `columns` receives rows.count rows.
@inline(__always)
public func im2col(_ columns: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Range<Int>,
                   _ g: WindowGeometry, channels: Int) {
    let patch = g.kernelHeight * g.kernelWidth * channels
    let perImage = g.outputHeight * g.outputWidth
    var row = columns
    var n = rows.lowerBound / perImage, oh = rows.lowerBound % perImage / g.outputWidth, ow = rows.lowerBound % g.outputWidth
    for _ in rows {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        var destination = row
        for i in 0..<g.kernelHeight {
            let ih = oh * g.strideHeight - g.padTop + i
            if ih < 0 || ih >= g.inputHeight {
                destination.update(repeating: 0, count: g.kernelWidth * channels)
                destination += g.kernelWidth * channels
                continue
            }
            for j in 0..<g.kernelWidth {
                let iw = ow * g.strideWidth - g.padLeft + j
                if iw < 0 || iw >= g.inputWidth {
                    destination.update(repeating: 0, count: channels)
                } else {
                    destination.update(from: image + (ih * g.inputWidth + iw) * channels, count: channels)
                }
                destination += channels
            }
        }
        row += patch
        ow += 1
        if ow == g.outputWidth { ow = 0; oh += 1; if oh == g.outputHeight { oh = 0; n += 1 } }
    }
}

/// The adjoint of im2col over the output rows `rows`: adds each row's window back into the input
/// gradient, in row order (so tiles in order add exactly what one call over all rows adds).
@inline(__always)
func col2imAdd(_ inputGradient: UnsafeMutablePointer<Float>, _ columns: UnsafePointer<Float>, rows: Range<Int>,
               _ g: WindowGeometry, channels: Int) {
    let patch = g.kernelHeight * g.kernelWidth * channels
    let perImage = g.outputHeight * g.outputWidth
    var row = columns
    var n = rows.lowerBound / perImage, oh = rows.lowerBound % perImage / g.outputWidth, ow = rows.lowerBound % g.outputWidth
    for _ in rows {
        let image = inputGradient + n * g.inputHeight * g.inputWidth * channels
        var source = row
        for i in 0..<g.kernelHeight {
            let ih = oh * g.strideHeight - g.padTop + i
            if ih < 0 || ih >= g.inputHeight { source += g.kernelWidth * channels; continue }
            for j in 0..<g.kernelWidth {
                let iw = ow * g.strideWidth - g.padLeft + j
                if iw >= 0 && iw < g.inputWidth {
                    let destination = image + (ih * g.inputWidth + iw) * channels
                    for c in 0..<channels { destination[c] += source[c] }
                }
                source += channels
            }
        }
        row += patch
        ow += 1
        if ow == g.outputWidth { ow = 0; oh += 1; if oh == g.outputHeight { oh = 0; n += 1 } }
    }
}

/// Calls `body` with consecutive ranges of `rows` output rows, each at most
/// `convolutionTileRows(rows:patch:)` long.
@inline(__always)
public func forEachTile(rows: Int, patch: Int, _ body: (Range<Int>) -> Void) {
    let tile = convolutionTileRows(rows: rows, patch: patch)
    var start = 0
    while start < rows {
        body(start..<min(rows, start + tile))
        start += tile
    }
}

/// output (batch, oh, ow, out) = conv(input (batch, h, w, in), kernel) + bias.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>?,
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int
) {
    let rows = batch * g.outputHeight * g.outputWidth
    let patch = g.kernelHeight * g.kernelWidth * inputChannels
    if let bias {
        for row in 0..<rows { (output + row * outputChannels).update(from: bias, count: outputChannels) }
    }
    let beta: Float = bias == nil ? 0 : 1
    if g.isPointwise {
        gemm(m: rows, n: outputChannels, k: patch, a: input, lda: patch, b: kernel, ldb: outputChannels,
             beta: beta, c: output, ldc: outputChannels)
        return
    }
    if NarrowConvolution(g, inputChannels: inputChannels, outputChannels: outputChannels).forward {
        narrowConvolutionForward(output: output, input: input, kernel: kernel, accumulate: bias != nil, scratch: scratch,
                                 batch: batch, geometry: g, inputChannels: inputChannels, outputChannels: outputChannels)
        return
    }
    // The tiles depend on the chunk's shape alone, so the result is the same run after run.
    forEachTile(rows: rows, patch: patch) { tile in
        im2col(scratch!, input, rows: tile, g, channels: inputChannels)
        gemm(m: tile.count, n: outputChannels, k: patch, a: scratch!, lda: patch, b: kernel, ldb: outputChannels,
             beta: beta, c: output + tile.lowerBound * outputChannels, ldc: outputChannels)
    }
}

/// Adds the gradients of conv2dForward: into `kernelGradient`, `biasGradient` and (when not nil)
/// `inputGradient`. The im2col columns are rebuilt in `scratch`: it is shared by every convolution
/// of a worker, so later layers have overwritten the forward's (rebuilding is cheap next to the
/// GEMMs).
public func conv2dBackward(
    inputGradient: UnsafeMutablePointer<Float>?, kernelGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
    input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>?,
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int
) {
    let rows = batch * g.outputHeight * g.outputWidth
    let patch = g.kernelHeight * g.kernelWidth * inputChannels
    if let biasGradient {
        for row in 0..<rows {
            let dy = outputGradient + row * outputChannels
            for o in 0..<outputChannels { biasGradient[o] += dy[o] }
        }
    }
    if g.isPointwise {
        // dK (patch x out) += X^T (patch x rows) * dY (rows x out)
        gemm(transposeA: true, m: patch, n: outputChannels, k: rows, a: input, lda: patch,
             b: outputGradient, ldb: outputChannels, beta: 1, c: kernelGradient, ldc: outputChannels)
        guard let inputGradient else { return }
        // dX (rows x in) += dY (rows x out) * K^T (out x in)
        gemm(transposeB: true, m: rows, n: inputChannels, k: outputChannels, a: outputGradient, lda: outputChannels,
             b: kernel, ldb: outputChannels, beta: 1, c: inputGradient, ldc: inputChannels)
        return
    }
    let narrow = NarrowConvolution(g, inputChannels: inputChannels, outputChannels: outputChannels)
    if narrow.kernelGradient {
        narrowConvolutionKernelGradient(kernelGradient: kernelGradient, outputGradient: outputGradient, input: input,
                                        scratch: scratch, batch: batch, geometry: g, inputChannels: inputChannels,
                                        outputChannels: outputChannels)
    }
    if let inputGradient, narrow.inputGradient {
        narrowConvolutionInputGradient(inputGradient: inputGradient, outputGradient: outputGradient, kernel: kernel,
                                       scratch: scratch!, batch: batch, geometry: g, inputChannels: inputChannels,
                                       outputChannels: outputChannels)
    }
    guard !narrow.kernelGradient || (inputGradient != nil && !narrow.inputGradient) else { return }
    // Tile by tile (see conv2dForward): the kernel gradient adds the tiles' sums in order; the
    // input gradient adds every row's window in row order, as one pass would.
    forEachTile(rows: rows, patch: patch) { tile in
        let dy = outputGradient + tile.lowerBound * outputChannels
        if !narrow.kernelGradient {
            im2col(scratch!, input, rows: tile, g, channels: inputChannels)
            // dK (patch x out) += columns^T (patch x tile) * dY (tile x out)
            gemm(transposeA: true, m: patch, n: outputChannels, k: tile.count, a: scratch!, lda: patch,
                 b: dy, ldb: outputChannels, beta: 1, c: kernelGradient, ldc: outputChannels)
        }
        guard let inputGradient, !narrow.inputGradient else { return }
        // The columns are no longer needed: reuse the scratch for dColumns = dY * K^T.
        gemm(transposeB: true, m: tile.count, n: patch, k: outputChannels, a: dy, lda: outputChannels,
             b: kernel, ldb: outputChannels, beta: 0, c: scratch!, ldc: patch)
        col2imAdd(inputGradient, scratch!, rows: tile, g, channels: inputChannels)
    }
}
