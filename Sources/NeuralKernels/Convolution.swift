/// Geometry of a 2-D convolution or pooling window over NHWC data.
public struct WindowGeometry: Sendable, Equatable {
    public var inputHeight: Int, inputWidth: Int
    public var kernelHeight: Int, kernelWidth: Int
    public var strideHeight: Int, strideWidth: Int
    public var padTop: Int, padLeft: Int
    public var outputHeight: Int, outputWidth: Int
    /// The spacing of the window's taps (Keras' `dilation_rate`): tap i reads row
    /// oh * strideHeight - padTop + i * dilationHeight. The convolution and depthwise kernels read
    /// it; the pooling kernels require 1.
    public var dilationHeight: Int = 1, dilationWidth: Int = 1

    /// `causal` is Keras' Conv1D padding: (kernel - 1) * dilation zeros before, none after.
    public enum Padding: String, Sendable { case same, valid, causal }

    /// TensorFlow's rule, on the dilated window's extent (kernel - 1) * dilation + 1: `valid` has
    /// no padding; `same` gives ceil(in / stride) outputs and pads the total deficit, the smaller
    /// half at the top/left; `causal` pads extent - 1 before and gives ceil(in / stride) outputs.
    public init(inputHeight: Int, inputWidth: Int, kernelHeight: Int, kernelWidth: Int,
                strideHeight: Int, strideWidth: Int, padding: Padding, dilationHeight: Int = 1, dilationWidth: Int = 1) {
        self.inputHeight = inputHeight
        self.inputWidth = inputWidth
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideHeight = strideHeight
        self.strideWidth = strideWidth
        self.dilationHeight = dilationHeight
        self.dilationWidth = dilationWidth
        func axis(_ size: Int, _ kernel: Int, _ stride: Int, _ dilation: Int) -> (out: Int, before: Int) {
            let extent = (kernel - 1) * dilation + 1
            switch padding {
            case .valid: return (size >= extent ? (size - extent) / stride + 1 : 0, 0)
            case .same:
                let out = (size + stride - 1) / stride
                let total = max((out - 1) * stride + extent - size, 0)
                return (out, total / 2)
            case .causal: return (size > 0 ? (size - 1) / stride + 1 : 0, extent - 1)
            }
        }
        let vertical = axis(inputHeight, kernelHeight, strideHeight, dilationHeight)
        let horizontal = axis(inputWidth, kernelWidth, strideWidth, dilationWidth)
        outputHeight = vertical.out
        outputWidth = horizontal.out
        padTop = vertical.before
        padLeft = horizontal.before
    }

    /// A 1x1, stride-1, unpadded window: the convolution is a plain matrix product.
    public var isPointwise: Bool {
        kernelHeight == 1 && kernelWidth == 1 && strideHeight == 1 && strideWidth == 1 && padTop == 0 && padLeft == 0
    }

    /// Whether the taps are adjacent (the pooling kernels need it).
    public var isUndilated: Bool { dilationHeight == 1 && dilationWidth == 1 }
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

/// Scratch floats conv2d needs for `batch` samples (0 for pointwise convolutions): one tile of
/// one group's columns (`groups` splits the input channels; see conv2dForward), or what the
/// narrow kernels need (`NarrowConvolution.scratchCount`).
public func conv2dScratchCount(_ g: WindowGeometry, inputChannels: Int, outputChannels: Int, batch: Int, groups: Int = 1) -> Int {
    guard !g.isPointwise else { return 0 }
    let rows = batch * g.outputHeight * g.outputWidth, patch = g.kernelHeight * g.kernelWidth * (inputChannels / groups)
    let tile = convolutionTileRows(rows: rows, patch: patch) * patch
    guard NarrowConvolution(g, inputChannels: inputChannels, outputChannels: outputChannels, groups: groups).any else { return tile }
    return max(tile, NarrowConvolution.scratchCount(g, inputChannels: inputChannels, outputChannels: outputChannels))
}

/// Gathers input patches into rows for the output rows `rows` (row (n, oh, ow) is
/// (n * outputHeight + oh) * outputWidth + ow): each holds the (kh, kw, c) window of input
/// channels `firstChannel..<firstChannel + channels` (of `pixelChannels` per pixel; all of them
/// by default), taps `dilation` apart, zeros where the window hangs over the padding. `columns`
/// receives rows.count rows.
@inline(__always)
public func im2col(_ columns: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, rows: Range<Int>,
                   _ g: WindowGeometry, channels: Int, pixelChannels: Int? = nil, firstChannel: Int = 0) {
    let stride = pixelChannels ?? channels
    let patch = g.kernelHeight * g.kernelWidth * channels
    let perImage = g.outputHeight * g.outputWidth
    var row = columns
    var n = rows.lowerBound / perImage, oh = rows.lowerBound % perImage / g.outputWidth, ow = rows.lowerBound % g.outputWidth
    for _ in rows {
        let image = input + n * g.inputHeight * g.inputWidth * stride + firstChannel
        var destination = row
        for i in 0..<g.kernelHeight {
            let ih = oh * g.strideHeight - g.padTop + i * g.dilationHeight
            if ih < 0 || ih >= g.inputHeight {
                destination.update(repeating: 0, count: g.kernelWidth * channels)
                destination += g.kernelWidth * channels
                continue
            }
            for j in 0..<g.kernelWidth {
                let iw = ow * g.strideWidth - g.padLeft + j * g.dilationWidth
                if iw < 0 || iw >= g.inputWidth {
                    destination.update(repeating: 0, count: channels)
                } else {
                    destination.update(from: image + (ih * g.inputWidth + iw) * stride, count: channels)
                }
                destination += channels
            }
        }
        row += patch
        ow += 1
        if ow == g.outputWidth { ow = 0; oh += 1; if oh == g.outputHeight { oh = 0; n += 1 } }
    }
}

/// The adjoint of im2col over the output rows `rows` (same channel selection): adds each row's
/// window back into the input gradient, in row order (so tiles in order add exactly what one call
/// over all rows adds).
@inline(__always)
func col2imAdd(_ inputGradient: UnsafeMutablePointer<Float>, _ columns: UnsafePointer<Float>, rows: Range<Int>,
               _ g: WindowGeometry, channels: Int, pixelChannels: Int? = nil, firstChannel: Int = 0) {
    let stride = pixelChannels ?? channels
    let patch = g.kernelHeight * g.kernelWidth * channels
    let perImage = g.outputHeight * g.outputWidth
    var row = columns
    var n = rows.lowerBound / perImage, oh = rows.lowerBound % perImage / g.outputWidth, ow = rows.lowerBound % g.outputWidth
    for _ in rows {
        let image = inputGradient + n * g.inputHeight * g.inputWidth * stride + firstChannel
        var source = row
        for i in 0..<g.kernelHeight {
            let ih = oh * g.strideHeight - g.padTop + i * g.dilationHeight
            if ih < 0 || ih >= g.inputHeight { source += g.kernelWidth * channels; continue }
            for j in 0..<g.kernelWidth {
                let iw = ow * g.strideWidth - g.padLeft + j * g.dilationWidth
                if iw >= 0 && iw < g.inputWidth {
                    let destination = image + (ih * g.inputWidth + iw) * stride
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

/// output (batch, oh, ow, out) = conv(input (batch, h, w, in), kernel) + bias, then `epilogue`
/// (BatchNorm, optionally with its ReLU) over every output row: as each line of pixels is stored
/// where the narrow kernel runs (`narrowConvolutionForward`; `output` then unwritten unless the
/// epilogue keeps it), over all rows at the end elsewhere.
///
/// With `groups` > 1 (Keras' grouped Conv2D) the kernel is (kh, kw, in / groups, out): output
/// channels `gi * out/groups ..< (gi + 1) * out/groups` read input channels
/// `gi * in/groups ..< (gi + 1) * in/groups`. Each group is its own im2col of its channels and a
/// GEMM against the kernel's columns of that group (leading dimension `out`), written into the
/// group's output columns.
public func conv2dForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>?,
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int, groups: Int = 1,
    epilogue: ChannelAffineEpilogue? = nil
) {
    let rows = batch * g.outputHeight * g.outputWidth
    if !g.isPointwise && NarrowConvolution(g, inputChannels: inputChannels, outputChannels: outputChannels, groups: groups).forward {
        narrowConvolutionForward(output: output, input: input, kernel: kernel, bias: bias, accumulate: false, scratch: scratch,
                                 batch: batch, geometry: g, inputChannels: inputChannels, outputChannels: outputChannels,
                                 epilogue: epilogue)
        return
    }
    defer { epilogue?.apply(output, firstRow: 0, count: rows, channels: outputChannels) }
    let groupInputs = inputChannels / groups, groupOutputs = outputChannels / groups
    let patch = g.kernelHeight * g.kernelWidth * groupInputs
    if let bias {
        for row in 0..<rows { (output + row * outputChannels).update(from: bias, count: outputChannels) }
    }
    let beta: Float = bias == nil ? 0 : 1
    if g.isPointwise {
        for group in 0..<groups {
            gemm(m: rows, n: groupOutputs, k: patch, a: input + group * groupInputs, lda: inputChannels,
                 b: kernel + group * groupOutputs, ldb: outputChannels, beta: beta, c: output + group * groupOutputs,
                 ldc: outputChannels)
        }
        return
    }
    // The tiles depend on the chunk's shape alone, so the result is the same run after run.
    forEachTile(rows: rows, patch: patch) { tile in
        for group in 0..<groups {
            im2col(scratch!, input, rows: tile, g, channels: groupInputs, pixelChannels: inputChannels,
                   firstChannel: group * groupInputs)
            gemm(m: tile.count, n: groupOutputs, k: patch, a: scratch!, lda: patch, b: kernel + group * groupOutputs,
                 ldb: outputChannels, beta: beta, c: output + tile.lowerBound * outputChannels + group * groupOutputs,
                 ldc: outputChannels)
        }
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
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int, groups: Int = 1
) {
    let rows = batch * g.outputHeight * g.outputWidth
    let groupInputs = inputChannels / groups, groupOutputs = outputChannels / groups
    let patch = g.kernelHeight * g.kernelWidth * groupInputs
    if let biasGradient {
        for row in 0..<rows {
            let dy = outputGradient + row * outputChannels
            if outputChannels % 16 == 0 {
                // Explicit vectors, the same additions in the same (row) order.
                for o in stride(from: 0, to: outputChannels, by: 16) { store16(load16(biasGradient + o) + load16(dy + o), biasGradient + o) }
            } else {
                for o in 0..<outputChannels { biasGradient[o] += dy[o] }
            }
        }
    }
    if g.isPointwise {
        for group in 0..<groups {
            let (i0, o0) = (group * groupInputs, group * groupOutputs)
            // dK (patch x out) += X^T (patch x rows) * dY (rows x out)
            gemm(transposeA: true, m: patch, n: groupOutputs, k: rows, a: input + i0, lda: inputChannels,
                 b: outputGradient + o0, ldb: outputChannels, beta: 1, c: kernelGradient + o0, ldc: outputChannels)
            guard let inputGradient else { continue }
            // dX (rows x in) += dY (rows x out) * K^T (out x in)
            gemm(transposeB: true, m: rows, n: groupInputs, k: groupOutputs, a: outputGradient + o0, lda: outputChannels,
                 b: kernel + o0, ldb: outputChannels, beta: 1, c: inputGradient + i0, ldc: inputChannels)
        }
        return
    }
    let narrow = NarrowConvolution(g, inputChannels: inputChannels, outputChannels: outputChannels, groups: groups)
    if narrow.kernelGradient {
        narrowConvolutionKernelGradient(kernelGradient: kernelGradient, outputGradient: outputGradient, input: input,
                                        batch: batch, geometry: g, inputChannels: inputChannels,
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
        for group in 0..<groups {
            let (i0, o0) = (group * groupInputs, group * groupOutputs)
            let dy = outputGradient + tile.lowerBound * outputChannels + o0
            if !narrow.kernelGradient {
                im2col(scratch!, input, rows: tile, g, channels: groupInputs, pixelChannels: inputChannels, firstChannel: i0)
                // dK (patch x out) += columns^T (patch x tile) * dY (tile x out)
                gemm(transposeA: true, m: patch, n: groupOutputs, k: tile.count, a: scratch!, lda: patch,
                     b: dy, ldb: outputChannels, beta: 1, c: kernelGradient + o0, ldc: outputChannels)
            }
            guard let inputGradient, !narrow.inputGradient else { continue }
            // The columns are no longer needed: reuse the scratch for dColumns = dY * K^T.
            gemm(transposeB: true, m: tile.count, n: patch, k: groupOutputs, a: dy, lda: outputChannels,
                 b: kernel + o0, ldb: outputChannels, beta: 0, c: scratch!, ldc: patch)
            col2imAdd(inputGradient, scratch!, rows: tile, g, channels: groupInputs, pixelChannels: inputChannels,
                      firstChannel: i0)
        }
    }
}

// Conv2DTranspose, NHWC, kernel (kh, kw, out, in) as Keras stores it: the adjoint of the Conv2D
// with geometry `g` from the transposed convolution's output (g's input, `outputChannels`) to its
// input (g's output, `inputChannels`). So the forward pass is that Conv2D's input gradient
// (columns = X K^T, added back by col2im), the input gradient is that Conv2D's forward pass
// (im2col of dY times K), and the kernel gradient is im2col(dY)^T X. The Keras kernel, read as a
// (kh*kw*out) x in matrix, is the Conv2D's kernel matrix as it is.

/// output (batch, g.inputHeight, g.inputWidth, out) = conv_transpose(input (batch, g.outputHeight,
/// g.outputWidth, in), kernel) + bias. Output cells no window reaches hold the bias alone.
public func conv2dTransposeForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, scratch: UnsafeMutablePointer<Float>?,
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int
) {
    let rows = batch * g.outputHeight * g.outputWidth, outputRows = batch * g.inputHeight * g.inputWidth
    let patch = g.kernelHeight * g.kernelWidth * outputChannels
    for row in 0..<outputRows {
        if let bias { (output + row * outputChannels).update(from: bias, count: outputChannels) }
        else { (output + row * outputChannels).update(repeating: 0, count: outputChannels) }
    }
    if g.isPointwise {
        // Y (rows x out) += X (rows x in) * K^T (in x out)
        gemm(transposeB: true, m: rows, n: outputChannels, k: inputChannels, a: input, lda: inputChannels,
             b: kernel, ldb: inputChannels, beta: 1, c: output, ldc: outputChannels)
        return
    }
    forEachTile(rows: rows, patch: patch) { tile in
        // columns (tile x patch) = X (tile x in) * K^T (in x patch), added back in row order.
        gemm(transposeB: true, m: tile.count, n: patch, k: inputChannels, a: input + tile.lowerBound * inputChannels,
             lda: inputChannels, b: kernel, ldb: inputChannels, beta: 0, c: scratch!, ldc: patch)
        col2imAdd(output, scratch!, rows: tile, g, channels: outputChannels)
    }
}

/// Adds the gradients of conv2dTransposeForward into `kernelGradient`, `biasGradient` and (when
/// not nil) `inputGradient`.
public func conv2dTransposeBackward(
    inputGradient: UnsafeMutablePointer<Float>?, kernelGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
    input: UnsafePointer<Float>, kernel: UnsafePointer<Float>, scratch: UnsafeMutablePointer<Float>?,
    batch: Int, geometry g: WindowGeometry, inputChannels: Int, outputChannels: Int
) {
    let rows = batch * g.outputHeight * g.outputWidth, outputRows = batch * g.inputHeight * g.inputWidth
    let patch = g.kernelHeight * g.kernelWidth * outputChannels
    if let biasGradient {
        for row in 0..<outputRows {
            let dy = outputGradient + row * outputChannels
            for o in 0..<outputChannels { biasGradient[o] += dy[o] }
        }
    }
    if g.isPointwise {
        // dK (out x in) += dY^T (out x rows) * X (rows x in)
        gemm(transposeA: true, m: outputChannels, n: inputChannels, k: rows, a: outputGradient, lda: outputChannels,
             b: input, ldb: inputChannels, beta: 1, c: kernelGradient, ldc: inputChannels)
        guard let inputGradient else { return }
        // dX (rows x in) += dY (rows x out) * K (out x in)
        gemm(m: rows, n: inputChannels, k: outputChannels, a: outputGradient, lda: outputChannels, b: kernel,
             ldb: inputChannels, beta: 1, c: inputGradient, ldc: inputChannels)
        return
    }
    forEachTile(rows: rows, patch: patch) { tile in
        im2col(scratch!, outputGradient, rows: tile, g, channels: outputChannels)
        let x = input + tile.lowerBound * inputChannels
        // dK (patch x in) += columns^T (patch x tile) * X (tile x in)
        gemm(transposeA: true, m: patch, n: inputChannels, k: tile.count, a: scratch!, lda: patch, b: x, ldb: inputChannels,
             beta: 1, c: kernelGradient, ldc: inputChannels)
        guard let inputGradient else { return }
        // dX (tile x in) += columns (tile x patch) * K (patch x in)
        gemm(m: tile.count, n: inputChannels, k: patch, a: scratch!, lda: patch, b: kernel, ldb: inputChannels,
             beta: 1, c: inputGradient + tile.lowerBound * inputChannels, ldc: inputChannels)
    }
}
