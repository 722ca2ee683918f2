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

/// Scratch floats conv2d needs for `batch` samples (0 for pointwise convolutions).
public func conv2dScratchCount(_ g: WindowGeometry, inputChannels: Int, batch: Int) -> Int {
    g.isPointwise ? 0 : batch * g.outputHeight * g.outputWidth * g.kernelHeight * g.kernelWidth * inputChannels
}

/// Gathers input patches into rows: row (n, oh, ow) holds the (kh, kw, c) window, zeros where
/// the window hangs over the padding.
@inline(__always)
public func im2col(_ columns: UnsafeMutablePointer<Float>, _ input: UnsafePointer<Float>, batch: Int,
            _ g: WindowGeometry, channels: Int) {
    let patch = g.kernelHeight * g.kernelWidth * channels
    var row = columns
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
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
            }
        }
    }
}

/// The adjoint of im2col: adds each row's window back into the input gradient.
@inline(__always)
func col2imAdd(_ inputGradient: UnsafeMutablePointer<Float>, _ columns: UnsafePointer<Float>, batch: Int,
               _ g: WindowGeometry, channels: Int) {
    let patch = g.kernelHeight * g.kernelWidth * channels
    var row = columns
    for n in 0..<batch {
        let image = inputGradient + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
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
            }
        }
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
    let a: UnsafePointer<Float>
    if g.isPointwise { a = input } else {
        im2col(scratch!, input, batch: batch, g, channels: inputChannels)
        a = UnsafePointer(scratch!)
    }
    if let bias {
        for row in 0..<rows { (output + row * outputChannels).update(from: bias, count: outputChannels) }
    }
    gemm(m: rows, n: outputChannels, k: patch, a: a, lda: patch, b: kernel, ldb: outputChannels,
         beta: bias == nil ? 0 : 1, c: output, ldc: outputChannels)
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
    let columns: UnsafePointer<Float>
    if g.isPointwise { columns = input } else {
        im2col(scratch!, input, batch: batch, g, channels: inputChannels)
        columns = UnsafePointer(scratch!)
    }
    // dK (patch x out) += columns^T (patch x rows) * dY (rows x out)
    gemm(transposeA: true, m: patch, n: outputChannels, k: rows, a: columns, lda: patch,
         b: outputGradient, ldb: outputChannels, beta: 1, c: kernelGradient, ldc: outputChannels)
    guard let inputGradient else { return }
    if g.isPointwise {
        // dX (rows x in) += dY (rows x out) * K^T (out x in)
        gemm(transposeB: true, m: rows, n: inputChannels, k: outputChannels, a: outputGradient, lda: outputChannels,
             b: kernel, ldb: outputChannels, beta: 1, c: inputGradient, ldc: inputChannels)
    } else {
        // The columns are no longer needed: reuse the scratch for dColumns.
        gemm(transposeB: true, m: rows, n: patch, k: outputChannels, a: outputGradient, lda: outputChannels,
             b: kernel, ldb: outputChannels, beta: 0, c: scratch!, ldc: patch)
        col2imAdd(inputGradient, scratch!, batch: batch, g, channels: inputChannels)
    }
}
