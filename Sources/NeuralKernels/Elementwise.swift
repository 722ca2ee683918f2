import Foundation

// BatchNormalization (inference), padding, pooling and the loss: the memory-bound kernels
// (activations are in Activations.swift). Each is a forward/backward pair over contiguous Float buffers; backward
// functions add into the input gradient.

// MARK: BatchNormalization in inference mode

@inline(__always) func load16(_ p: UnsafePointer<Float>) -> SIMD16<Float> { UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Float>.self) }
@inline(__always) func store16(_ v: SIMD16<Float>, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: SIMD16<Float>.self)
}
/// Swift's `min(max(z, 0), cap)` lane by lane: (0 >= z ? 0 : z), then (cap < m ? cap : m).
@inline(__always) func clampedReLU(_ z: SIMD16<Float>, cap: SIMD16<Float>) -> SIMD16<Float> {
    let m = z.replacing(with: 0, where: z .<= 0)
    return m.replacing(with: cap, where: m .> cap)
}

/// y = x * scale + shift per channel, where scale = gamma / sqrt(var + eps) and
/// shift = beta - mean * scale (precomputed by the caller once per weight set).
public func channelAffineForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                 scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, rows: Int, channels: Int) {
    if channels % 16 == 0 {
        // Explicit vectors (the same operations): LLVM's run-time alias checks on every short row
        // cost as much as the arithmetic.
        for r in 0..<rows {
            let x = input + r * channels, y = output + r * channels
            for c in stride(from: 0, to: channels, by: 16) { store16(load16(x + c) * load16(scale + c) + load16(shift + c), y + c) }
        }
        return
    }
    for r in 0..<rows {
        let x = input + r * channels, y = output + r * channels
        for c in 0..<channels { y[c] = x[c] * scale[c] + shift[c] }
    }
}

/// Gradients of channelAffineForward for BatchNormalization: dx += dy * scale;
/// dGamma += sum dy * (x - mean) * invStd; dBeta += sum dy.
public func batchNormInferenceBackward(
    inputGradient: UnsafeMutablePointer<Float>?, gammaGradient: UnsafeMutablePointer<Float>?,
    betaGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, rows: Int, channels: Int
) {
    if channels % 16 == 0 {
        // As channelAffineForward: explicit vectors, the same operations in the same order.
        for r in 0..<rows {
            let x = input + r * channels, dy = outputGradient + r * channels
            for c in stride(from: 0, to: channels, by: 16) {
                let d = load16(dy + c)
                if let g = gammaGradient { store16(load16(g + c) + d * (load16(x + c) - load16(mean + c)) * load16(inverseStd + c), g + c) }
                if let b = betaGradient { store16(load16(b + c) + d, b + c) }
                if let dx = inputGradient { store16(load16(dx + r * channels + c) + d * load16(scale + c), dx + r * channels + c) }
            }
        }
        return
    }
    for r in 0..<rows {
        let x = input + r * channels, dy = outputGradient + r * channels
        if let gammaGradient { for c in 0..<channels { gammaGradient[c] += dy[c] * (x[c] - mean[c]) * inverseStd[c] } }
        if let betaGradient { for c in 0..<channels { betaGradient[c] += dy[c] } }
        if let inputGradient {
            let dx = inputGradient + r * channels
            for c in 0..<channels { dx[c] += dy[c] * scale[c] }
        }
    }
}

// MARK: Loss

/// Mean categorical cross-entropy of softmax(logits) against integer labels, computed from the
/// logits (log-sum-exp) as Keras does when the model ends in a softmax. Writes d(mean loss)/dlogits
/// into `logitsGradient` when given, scaled by 1/`meanOver` (the full batch size), and the
/// softmax into `probabilities`. Returns the summed (not mean) loss of these rows, in Double.
@discardableResult
public func softmaxCrossEntropy(
    logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>, rows: Int, classes: Int,
    probabilities: UnsafeMutablePointer<Float>?, logitsGradient: UnsafeMutablePointer<Float>?, meanOver: Int
) -> Double {
    var total: Double = 0
    let scale = 1 / Float(meanOver)
    for r in 0..<rows {
        let x = logits + r * classes
        var largest = -Float.infinity
        for c in 0..<classes { largest = max(largest, x[c]) }
        var sum: Float = 0
        for c in 0..<classes { sum += exp(x[c] - largest) }
        let logSum = log(sum) + largest
        let label = Int(labels[r])
        total += Double(logSum - x[label])
        if probabilities != nil || logitsGradient != nil {
            for c in 0..<classes {
                let p = exp(x[c] - logSum)
                probabilities?[r * classes + c] = p
                logitsGradient?[r * classes + c] = (p - (c == label ? 1 : 0)) * scale
            }
        }
    }
    return total
}

// MARK: Padding and pooling

/// Zero padding of (batch, h, w, c) by (top, bottom, left, right).
public func zeroPadForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, height: Int,
                           width: Int, channels: Int, top: Int, bottom: Int, left: Int, right: Int) {
    let outHeight = height + top + bottom, outWidth = width + left + right
    output.update(repeating: 0, count: batch * outHeight * outWidth * channels)
    for n in 0..<batch {
        for h in 0..<height {
            let source = input + ((n * height + h) * width) * channels
            let destination = output + ((n * outHeight + h + top) * outWidth + left) * channels
            destination.update(from: source, count: width * channels)
        }
    }
}

public func zeroPadBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                            height: Int, width: Int, channels: Int, top: Int, bottom: Int, left: Int, right: Int) {
    let outHeight = height + top + bottom, outWidth = width + left + right
    for n in 0..<batch {
        for h in 0..<height {
            let destination = inputGradient + ((n * height + h) * width) * channels
            let source = outputGradient + ((n * outHeight + h + top) * outWidth + left) * channels
            for i in 0..<(width * channels) { destination[i] += source[i] }
        }
    }
}

/// Nearest-neighbour upsampling of (batch, h, w, c) by whole factors (Keras' UpSampling2D with
/// `interpolation="nearest"`): output cell (oh, ow) is input cell (oh / sizeHeight, ow / sizeWidth).
public func upsampleNearestForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, height: Int,
                                   width: Int, channels: Int, sizeHeight: Int, sizeWidth: Int) {
    let outHeight = height * sizeHeight, outWidth = width * sizeWidth
    for n in 0..<batch {
        for oh in 0..<outHeight {
            let source = input + ((n * height + oh / sizeHeight) * width) * channels
            let destination = output + ((n * outHeight + oh) * outWidth) * channels
            for ow in 0..<outWidth {
                (destination + ow * channels).update(from: source + (ow / sizeWidth) * channels, count: channels)
            }
        }
    }
}

/// Each input cell's gradient is the sum over the sizeHeight x sizeWidth output cells copied from it.
public func upsampleNearestBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                                    height: Int, width: Int, channels: Int, sizeHeight: Int, sizeWidth: Int) {
    let outHeight = height * sizeHeight, outWidth = width * sizeWidth
    for n in 0..<batch {
        for oh in 0..<outHeight {
            let destination = inputGradient + ((n * height + oh / sizeHeight) * width) * channels
            let source = outputGradient + ((n * outHeight + oh) * outWidth) * channels
            for ow in 0..<outWidth {
                let d = destination + (ow / sizeWidth) * channels, g = source + ow * channels
                for c in 0..<channels { d[c] += g[c] }
            }
        }
    }
}

/// For a per-sample tensor of `shape` (row-major) whose axes are reordered so that output axis k
/// is input axis `order[k]` (Keras' Permute, 0-based), the input offset of each output offset.
public func permutationSources(shape: [Int], order: [Int]) -> [Int] {
    precondition(order.count == shape.count && Set(order) == Set(shape.indices), "not a permutation of the axes")
    var inputStrides = [Int](repeating: 1, count: shape.count)
    for axis in shape.indices.reversed().dropFirst() { inputStrides[axis] = inputStrides[axis + 1] * shape[axis + 1] }
    let outputShape = order.map { shape[$0] }, strides = order.map { inputStrides[$0] }
    let count = shape.reduce(1, *)
    var sources = [Int](repeating: 0, count: count), index = [Int](repeating: 0, count: shape.count), offset = 0
    for o in 0..<count {
        sources[o] = offset
        // The odometer over the output's axes, last fastest.
        var axis = shape.count - 1
        while axis >= 0 {
            index[axis] += 1
            offset += strides[axis]
            if index[axis] < outputShape[axis] { break }
            offset -= strides[axis] * outputShape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
    return sources
}

/// output[n][o] = input[n][sources[o]] for each of `batch` samples of `sources.count` output
/// values and `inputCount` input values (by default as many).
public func gatherForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, sources: [Int],
                          inputCount: Int? = nil) {
    let count = sources.count, stride = inputCount ?? count
    for n in 0..<batch {
        let x = input + n * stride, y = output + n * count
        for o in 0..<count { y[o] = x[sources[o]] }
    }
}

/// The backward of `gatherForward`: inputGradient[n][sources[o]] += outputGradient[n][o].
public func gatherBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int, sources: [Int],
                           inputCount: Int? = nil) {
    let count = sources.count, stride = inputCount ?? count
    for n in 0..<batch {
        let dx = inputGradient + n * stride, dy = outputGradient + n * count
        for o in 0..<count { dx[sources[o]] += dy[o] }
    }
}

/// Layer normalization of `rows` rows of `channels` values (Keras' LayerNormalization over the
/// last axis), in Keras 3's order: mean and variance of the row (`ops.moments`: the mean, then
/// the mean of the squared differences from it, each summed in Double and rounded to float32),
/// inv = rsqrt(variance + epsilon) * gamma, y = x * inv + (beta - mean * inv). tf_keras' fused
/// form ((x - mean) * rsqrt(variance + epsilon)) * gamma + beta is the same function, a float32
/// rounding or two apart. gamma and beta nil: 1 and 0 (scale=False, center=False).
public func layerNormForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
                             beta: UnsafePointer<Float>?, rows: Int, channels: Int, epsilon: Float) {
    for r in 0..<rows {
        let x = input + r * channels, y = output + r * channels
        let (mean, inverse) = layerNormMoments(x, channels: channels, epsilon: epsilon)
        for c in 0..<channels {
            let inv = inverse * (gamma?[c] ?? 1)
            y[c] = x[c] * inv + ((beta?[c] ?? 0) - mean * inv)
        }
    }
}

/// One row's float32 mean and rsqrt(variance + epsilon).
@inline(__always)
func layerNormMoments(_ x: UnsafePointer<Float>, channels: Int, epsilon: Float) -> (mean: Float, inverse: Float) {
    var sum = 0.0
    for c in 0..<channels { sum += Double(x[c]) }
    let mean = Float(sum / Double(channels))
    var squares = 0.0
    for c in 0..<channels { let d = Double(x[c]) - Double(mean); squares += d * d }
    let variance = Float(squares / Double(channels))
    return (mean, 1 / (variance + epsilon).squareRoot())
}

/// The backward of `layerNormForward`, added into the gradients given: with x̂ = (x - mean) r,
/// r = rsqrt(variance + epsilon) and g = dy * gamma, dx = r (g - mean(g) - x̂ mean(g x̂)),
/// dgamma = sum over rows of dy x̂, dbeta = sum of dy (row sums in Double).
public func layerNormBackward(inputGradient: UnsafeMutablePointer<Float>?, gammaGradient: UnsafeMutablePointer<Float>?,
                              betaGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
                              input: UnsafePointer<Float>, gamma: UnsafePointer<Float>?, rows: Int, channels: Int, epsilon: Float) {
    var gammaSums = [Double](repeating: 0, count: gammaGradient == nil ? 0 : channels)
    var betaSums = [Double](repeating: 0, count: betaGradient == nil ? 0 : channels)
    var normalized = [Double](repeating: 0, count: channels)
    for r in 0..<rows {
        let x = input + r * channels, dy = outputGradient + r * channels
        let (mean, inverse) = layerNormMoments(x, channels: channels, epsilon: epsilon)
        var sumG = 0.0, sumGX = 0.0
        for c in 0..<channels {
            let xhat = (Double(x[c]) - Double(mean)) * Double(inverse)
            normalized[c] = xhat
            let g = Double(dy[c]) * Double(gamma?[c] ?? 1)
            sumG += g
            sumGX += g * xhat
            if gammaGradient != nil { gammaSums[c] += Double(dy[c]) * xhat }
            if betaGradient != nil { betaSums[c] += Double(dy[c]) }
        }
        guard let dx = inputGradient.map({ $0 + r * channels }) else { continue }
        let meanG = sumG / Double(channels), meanGX = sumGX / Double(channels)
        for c in 0..<channels {
            let g = Double(dy[c]) * Double(gamma?[c] ?? 1)
            dx[c] += Float(Double(inverse) * (g - meanG - normalized[c] * meanGX))
        }
    }
    if let gammaGradient { for c in 0..<channels { gammaGradient[c] += Float(gammaSums[c]) } }
    if let betaGradient { for c in 0..<channels { betaGradient[c] += Float(betaSums[c]) } }
}

/// Max pooling; padding cells are -infinity (never chosen), as in TensorFlow.
public func maxPoolForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int,
                           geometry g: WindowGeometry, channels: Int) {
    precondition(g.isUndilated, "pooling has no dilation")
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let y = output + ((n * g.outputHeight + oh) * g.outputWidth + ow) * channels
                y.update(repeating: -.infinity, count: channels)
                for i in 0..<g.kernelHeight {
                    let ih = oh * g.strideHeight - g.padTop + i
                    if ih < 0 || ih >= g.inputHeight { continue }
                    for j in 0..<g.kernelWidth {
                        let iw = ow * g.strideWidth - g.padLeft + j
                        if iw < 0 || iw >= g.inputWidth { continue }
                        let x = image + (ih * g.inputWidth + iw) * channels
                        for c in 0..<channels { y[c] = max(y[c], x[c]) }
                    }
                }
            }
        }
    }
}

/// The gradient goes to the first maximal input of each window (TensorFlow's MaxPoolGrad).
public func maxPoolBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                            input: UnsafePointer<Float>, output: UnsafePointer<Float>, batch: Int,
                            geometry g: WindowGeometry, channels: Int) {
    precondition(g.isUndilated, "pooling has no dilation")
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        let imageGradient = inputGradient + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let index = ((n * g.outputHeight + oh) * g.outputWidth + ow) * channels
                for c in 0..<channels {
                    let target = output[index + c]
                    var found = false
                    for i in 0..<g.kernelHeight where !found {
                        let ih = oh * g.strideHeight - g.padTop + i
                        if ih < 0 || ih >= g.inputHeight { continue }
                        for j in 0..<g.kernelWidth {
                            let iw = ow * g.strideWidth - g.padLeft + j
                            if iw < 0 || iw >= g.inputWidth { continue }
                            let offset = (ih * g.inputWidth + iw) * channels + c
                            if image[offset] == target {
                                imageGradient[offset] += outputGradient[index + c]
                                found = true
                                break
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Average pooling; with `same` padding the divisor counts only cells inside the input
/// (TensorFlow's behaviour).
public func averagePoolForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int,
                               geometry g: WindowGeometry, channels: Int) {
    precondition(g.isUndilated, "pooling has no dilation")
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let y = output + ((n * g.outputHeight + oh) * g.outputWidth + ow) * channels
                y.update(repeating: 0, count: channels)
                let (h0, h1, w0, w1) = window(g, oh, ow)
                for ih in h0..<h1 {
                    for iw in w0..<w1 {
                        let x = image + (ih * g.inputWidth + iw) * channels
                        for c in 0..<channels { y[c] += x[c] }
                    }
                }
                let inverse = 1 / Float((h1 - h0) * (w1 - w0))
                for c in 0..<channels { y[c] *= inverse }
            }
        }
    }
}

public func averagePoolBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                                batch: Int, geometry g: WindowGeometry, channels: Int) {
    precondition(g.isUndilated, "pooling has no dilation")
    for n in 0..<batch {
        let imageGradient = inputGradient + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let dy = outputGradient + ((n * g.outputHeight + oh) * g.outputWidth + ow) * channels
                let (h0, h1, w0, w1) = window(g, oh, ow)
                let inverse = 1 / Float((h1 - h0) * (w1 - w0))
                for ih in h0..<h1 {
                    for iw in w0..<w1 {
                        let dx = imageGradient + (ih * g.inputWidth + iw) * channels
                        for c in 0..<channels { dx[c] += dy[c] * inverse }
                    }
                }
            }
        }
    }
}

@inline(__always)
private func window(_ g: WindowGeometry, _ oh: Int, _ ow: Int) -> (Int, Int, Int, Int) {
    let h0 = oh * g.strideHeight - g.padTop, w0 = ow * g.strideWidth - g.padLeft
    return (max(h0, 0), min(h0 + g.kernelHeight, g.inputHeight), max(w0, 0), min(w0 + g.kernelWidth, g.inputWidth))
}

/// Mean over the spatial positions: (batch, positions, channels) -> (batch, channels).
public func globalAveragePoolForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int,
                                     positions: Int, channels: Int) {
    let inverse = 1 / Float(positions)
    for n in 0..<batch {
        let y = output + n * channels
        y.update(repeating: 0, count: channels)
        for p in 0..<positions {
            let x = input + (n * positions + p) * channels
            for c in 0..<channels { y[c] += x[c] }
        }
        for c in 0..<channels { y[c] *= inverse }
    }
}

public func globalAveragePoolBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                                      batch: Int, positions: Int, channels: Int) {
    let inverse = 1 / Float(positions)
    for n in 0..<batch {
        let dy = outputGradient + n * channels
        for p in 0..<positions {
            let dx = inputGradient + (n * positions + p) * channels
            for c in 0..<channels { dx[c] += dy[c] * inverse }
        }
    }
}

public func globalMaxPoolForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int,
                                 positions: Int, channels: Int) {
    for n in 0..<batch {
        let y = output + n * channels
        y.update(repeating: -.infinity, count: channels)
        for p in 0..<positions {
            let x = input + (n * positions + p) * channels
            for c in 0..<channels { y[c] = max(y[c], x[c]) }
        }
    }
}

public func globalMaxPoolBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                                  input: UnsafePointer<Float>, output: UnsafePointer<Float>, batch: Int,
                                  positions: Int, channels: Int) {
    for n in 0..<batch {
        for c in 0..<channels {
            let target = output[n * channels + c]
            for p in 0..<positions where input[(n * positions + p) * channels + c] == target {
                inputGradient[(n * positions + p) * channels + c] += outputGradient[n * channels + c]
                break
            }
        }
    }
}

// MARK: BatchNormalization followed by ReLU, fused

/// y = relu(x * scale + shift): one pass instead of two (BatchNorm then ReLU is most of
/// MobileNet's elementwise work).
public func channelAffineReLUForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                     scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, rows: Int, channels: Int,
                                     _ p: ReLUParameters) {
    let simple = p.negativeSlope == 0 && p.threshold == 0
    let cap = p.maxValue ?? .infinity
    if simple && channels % 16 == 0 {
        // As channelAffineForward: explicit vectors, the same operations.
        let capVector = SIMD16<Float>(repeating: cap)
        for r in 0..<rows {
            let x = input + r * channels, y = output + r * channels
            for c in stride(from: 0, to: channels, by: 16) {
                store16(clampedReLU(load16(x + c) * load16(scale + c) + load16(shift + c), cap: capVector), y + c)
            }
        }
        return
    }
    for r in 0..<rows {
        let x = input + r * channels, y = output + r * channels
        if simple {
            for c in 0..<channels { y[c] = min(max(x[c] * scale[c] + shift[c], 0), cap) }
        } else {
            for c in 0..<channels {
                let z = x[c] * scale[c] + shift[c]
                y[c] = z >= p.threshold ? min(z, cap) : p.negativeSlope * (z - p.threshold)
            }
        }
    }
}

/// BatchNormalization in inference mode (`scale`, `shift`: channelAffineForward's) and, when
/// `relu` is set, its ReLU, applied by a convolution's forward to its output rows as it stores
/// them (`conv2dForward`'s `epilogue`): the narrow kernel runs it over each line of output pixels
/// while that line is in L1, the others over all rows at the end. Either way each element goes
/// through `channelAffineForward` or `channelAffineReLUForward`, so the bits are those of the
/// layers apart.
public struct ChannelAffineEpilogue {
    public var scale: [Float], shift: [Float]
    public var relu: ReLUParameters?
    /// Where the normalized rows go (row r of the convolution's output to row r here).
    public var output: UnsafeMutablePointer<Float>
    /// Whether the convolution's own output is stored as well (a gradient pass reads it). Without,
    /// the narrow kernel forms each line in scratch and stores only the normalized one.
    public var keepsConvolutionOutput: Bool

    public init(scale: [Float], shift: [Float], relu: ReLUParameters?, output: UnsafeMutablePointer<Float>,
                keepsConvolutionOutput: Bool) {
        (self.scale, self.shift, self.relu, self.output, self.keepsConvolutionOutput) = (scale, shift, relu, output, keepsConvolutionOutput)
    }

    /// Normalizes `count` rows of `channels` values starting at row `firstRow`, read from `rows`.
    @inline(__always)
    public func apply(_ rows: UnsafePointer<Float>, firstRow: Int, count: Int, channels: Int) {
        let destination = output + firstRow * channels
        if let relu {
            channelAffineReLUForward(output: destination, input: rows, scale: scale, shift: shift, rows: count, channels: channels, relu)
        } else {
            channelAffineForward(output: destination, input: rows, scale: scale, shift: shift, rows: count, channels: channels)
        }
    }
}

/// y = relu(z * scale[c] + shift[c]) on channel c: an inference BatchNormalization folded to
/// scale and shift, then a ReLU, applied by a kernel to its outputs in place while they are in
/// L1 (`csrMatmulForward`, `depthwiseForward`, and after a dense product). The expressions are
/// `channelAffineReLUForward`'s (multiply, then add, not fused), so the bits are those of the
/// kernel followed by that pass. In place through one pointer, so the loops vectorise (a pass
/// from a buffer to itself through two pointers would fail the vectoriser's overlap check).
public struct ChannelAffineReLU {
    public var scale: UnsafePointer<Float>
    public var shift: UnsafePointer<Float>
    public var relu: ReLUParameters

    public init(scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, relu: ReLUParameters) {
        self.scale = scale
        self.shift = shift
        self.relu = relu
    }

    /// Maps `rows` rows of `channels` outputs in place, y[r * channels + c] as channel c (NHWC).
    public func apply(_ y: UnsafeMutablePointer<Float>, rows: Int, channels: Int) {
        let p = relu, cap = p.maxValue ?? .infinity
        for r in 0..<rows {
            let y = y + r * channels
            if p.negativeSlope == 0 && p.threshold == 0 {
                for c in 0..<channels { y[c] = min(max(y[c] * scale[c] + shift[c], 0), cap) }
            } else {
                for c in 0..<channels {
                    let z = y[c] * scale[c] + shift[c]
                    y[c] = z >= p.threshold ? min(z, cap) : p.negativeSlope * (z - p.threshold)
                }
            }
        }
    }

    /// Maps a channel-major block in place: row o (`lanes` floats at y + o * lanes) is channel
    /// o's outputs, for o < channels.
    func apply(channelMajor y: UnsafeMutablePointer<Float>, channels: Int, lanes: Int) {
        let p = relu, cap = p.maxValue ?? .infinity
        for o in 0..<channels {
            let row = y + o * lanes, s = scale[o], t = shift[o]
            if p.negativeSlope == 0 && p.threshold == 0 {
                for l in 0..<lanes { row[l] = min(max(row[l] * s + t, 0), cap) }
            } else {
                for l in 0..<lanes {
                    let z = row[l] * s + t
                    row[l] = z >= p.threshold ? min(z, cap) : p.negativeSlope * (z - p.threshold)
                }
            }
        }
    }
}

/// Gradients of channelAffineReLUForward: the pre-activation z = x * scale + shift is recomputed
/// with the same float operations as the forward, so the ReLU mask is exactly the unfused one.
public func batchNormReLUBackward(
    inputGradient: UnsafeMutablePointer<Float>?, gammaGradient: UnsafeMutablePointer<Float>?,
    betaGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
    scale: UnsafePointer<Float>, shift: UnsafePointer<Float>, mean: UnsafePointer<Float>,
    inverseStd: UnsafePointer<Float>, rows: Int, channels: Int, _ p: ReLUParameters
) {
    let cap = p.maxValue ?? .infinity
    let simple = p.negativeSlope == 0 && p.threshold == 0
    if simple && channels % 16 == 0 {
        // Explicit vectors, the same operations in the same order (slope 1 or 0, then dy * slope).
        let capVector = SIMD16<Float>(repeating: cap)
        for r in 0..<rows {
            let x = input + r * channels, dy = outputGradient + r * channels
            for c in stride(from: 0, to: channels, by: 16) {
                let xc = load16(x + c)
                let z = xc * load16(scale + c) + load16(shift + c)
                let slope = SIMD16<Float>().replacing(with: 1, where: (z .> 0) .& (z .< capVector))
                let dz = load16(dy + c) * slope
                if let g = gammaGradient { store16(load16(g + c) + dz * (xc - load16(mean + c)) * load16(inverseStd + c), g + c) }
                if let b = betaGradient { store16(load16(b + c) + dz, b + c) }
                if let dx = inputGradient { store16(load16(dx + r * channels + c) + dz * load16(scale + c), dx + r * channels + c) }
            }
        }
        return
    }
    for r in 0..<rows {
        let x = input + r * channels, dy = outputGradient + r * channels
        let dx = inputGradient.map { $0 + r * channels }
        for c in 0..<channels {
            let z = x[c] * scale[c] + shift[c]
            let slope: Float = simple ? ((z > 0 && z < cap) ? 1 : 0) : (z >= p.threshold ? (z < cap ? 1 : 0) : p.negativeSlope)
            let dz = dy[c] * slope
            gammaGradient?[c] += dz * (x[c] - mean[c]) * inverseStd[c]
            betaGradient?[c] += dz
            dx?[c] += dz * scale[c]
        }
    }
}

// MARK: BatchNormalization in training mode

/// Adds each channel's sum of `input` (rows x channels) into `sums`, in Double.
public func channelSums(_ input: UnsafePointer<Float>, rows: Int, channels: Int, into sums: UnsafeMutablePointer<Double>) {
    for r in 0..<rows {
        let x = input + r * channels
        for c in 0..<channels { sums[c] += Double(x[c]) }
    }
}

/// Adds each channel's sum of (x - mean)^2 into `sums`, in Double.
public func channelCenteredSquares(_ input: UnsafePointer<Float>, mean: UnsafePointer<Double>, rows: Int, channels: Int,
                                   into sums: UnsafeMutablePointer<Double>) {
    for r in 0..<rows {
        let x = input + r * channels
        for c in 0..<channels {
            let d = Double(x[c]) - mean[c]
            sums[c] += d * d
        }
    }
}

/// y = relu?(gamma * (x - mean) * invStd + beta) with batch statistics (training mode).
public func batchNormTrainingForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>,
    gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?, rows: Int, channels: Int, relu: ReLUParameters?
) {
    let scratch = UnsafeMutablePointer<Float>.allocate(capacity: 2 * channels)
    defer { scratch.deallocate() }
    let g = scratch, b = scratch + channels
    for c in 0..<channels {
        g[c] = gamma?[c] ?? 1
        b[c] = beta?[c] ?? 0
    }
    let p = relu ?? ReLUParameters()
    let cap = p.maxValue ?? .infinity
    let simple = p.negativeSlope == 0 && p.threshold == 0
    for r in 0..<rows {
        let x = input + r * channels, y = output + r * channels
        if relu == nil {
            for c in 0..<channels { y[c] = (x[c] - mean[c]) * inverseStd[c] * g[c] + b[c] }
        } else if simple {
            for c in 0..<channels { y[c] = min(max((x[c] - mean[c]) * inverseStd[c] * g[c] + b[c], 0), cap) }
        } else {
            for c in 0..<channels {
                let z = (x[c] - mean[c]) * inverseStd[c] * g[c] + b[c]
                y[c] = z >= p.threshold ? min(z, cap) : p.negativeSlope * (z - p.threshold)
            }
        }
    }
}

/// First half of the training-mode backward: dz = dy * relu'(z) per element (written to
/// `preActivationGradient`, which may be `outputGradient` itself), and each channel's sums of dz
/// and dz * xhat added into `sumGradient` / `sumGradientTimesNormalized` (Double; they are also
/// dbeta and dgamma). Rows are summed in float32 in blocks of 64 and the blocks in Double: the
/// inner loop stays vectorised across channels and long sums keep their precision.
public func batchNormTrainingBackwardSums(
    preActivationGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, gamma: UnsafePointer<Float>?, beta: UnsafePointer<Float>?,
    rows: Int, channels: Int, relu: ReLUParameters?,
    sumGradient: UnsafeMutablePointer<Double>, sumGradientTimesNormalized: UnsafeMutablePointer<Double>
) {
    // The per-channel constants are tiled over `tile` consecutive rows so the inner loop runs
    // over tile * channels contiguous elements: with MobileNet's 16-64 channels a per-row loop
    // spends its time in loop set-up, not arithmetic (measured: 41% of a training epoch).
    // Raw buffers, not arrays, so no bounds or exclusivity checks stop vectorisation.
    let tile = max(1, 256 / channels)
    let width = tile * channels
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: 6 * width)
    defer { buffer.deallocate() }
    let m = buffer, inv = buffer + width, g = buffer + 2 * width, b = buffer + 3 * width
    let blockGradient = buffer + 4 * width, blockNormalized = buffer + 5 * width
    for i in 0..<width {
        let c = i % channels
        m[i] = mean[c]
        inv[i] = inverseStd[c]
        g[i] = gamma?[c] ?? 1
        b[i] = beta?[c] ?? 0
        blockGradient[i] = 0
        blockNormalized[i] = 0
    }
    let p = relu ?? ReLUParameters()
    let cap = p.maxValue ?? .infinity
    let simple = p.negativeSlope == 0 && p.threshold == 0
    func flush() {
        for i in 0..<width {
            sumGradient[i % channels] += Double(blockGradient[i])
            sumGradientTimesNormalized[i % channels] += Double(blockNormalized[i])
            blockGradient[i] = 0
            blockNormalized[i] = 0
        }
    }
    var row = 0, blocks = 0
    while row < rows {
        let count = min(tile, rows - row) * channels
        let x = input + row * channels, dy = outputGradient + row * channels, dz = preActivationGradient + row * channels
        if relu == nil {
            for i in 0..<count {
                let normalized = (x[i] - m[i]) * inv[i]
                let d = dy[i]
                dz[i] = d
                blockGradient[i] += d
                blockNormalized[i] += d * normalized
            }
        } else if simple {
            // Explicit vectors: with eight pointers in play LLVM gives up on the run-time alias
            // checks and leaves the plain loop scalar (and branchy). Same operations, same order.
            typealias Vector = SIMD16<Float>
            @inline(__always) func load(_ p: UnsafePointer<Float>) -> Vector { UnsafeRawPointer(p).loadUnaligned(as: Vector.self) }
            @inline(__always) func store(_ v: Vector, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: Vector.self) }
            let capVector = Vector(repeating: cap)
            var i = 0
            while i + Vector.scalarCount <= count {
                let normalized = (load(x + i) - load(m + i)) * load(inv + i)
                let z = normalized * load(g + i) + load(b + i)
                // ReLU / ReLU6 pass the gradient where 0 < z < cap (TensorFlow's rule).
                let d = Vector().replacing(with: load(dy + i), where: (z .> 0) .& (z .< capVector))
                store(d, dz + i)
                store(load(blockGradient + i) + d, blockGradient + i)
                store(load(blockNormalized + i) + d * normalized, blockNormalized + i)
                i += Vector.scalarCount
            }
            while i < count {
                let normalized = (x[i] - m[i]) * inv[i]
                let z = normalized * g[i] + b[i]
                let d: Float = (z > 0 && z < cap) ? dy[i] : 0
                dz[i] = d
                blockGradient[i] += d
                blockNormalized[i] += d * normalized
                i += 1
            }
        } else {
            for i in 0..<count {
                let normalized = (x[i] - m[i]) * inv[i]
                let z = normalized * g[i] + b[i]
                let slope: Float = z >= p.threshold ? (z < cap ? 1 : 0) : p.negativeSlope
                let d = dy[i] * slope
                dz[i] = d
                blockGradient[i] += d
                blockNormalized[i] += d * normalized
            }
        }
        row += tile
        blocks += 1
        // Float partial sums over at most 64 tiles, then Double.
        if blocks == 64 { flush(); blocks = 0 }
    }
    flush()
}

/// Second half: dx += gamma * invStd * (dz - sum(dz)/N - xhat * sum(dz * xhat)/N), N the number
/// of rows over the whole batch (all workers).
public func batchNormTrainingBackwardInput(
    inputGradient: UnsafeMutablePointer<Float>, preActivationGradient: UnsafePointer<Float>, input: UnsafePointer<Float>,
    mean: UnsafePointer<Float>, inverseStd: UnsafePointer<Float>, gamma: UnsafePointer<Float>?,
    meanGradient: UnsafePointer<Float>, meanGradientTimesNormalized: UnsafePointer<Float>, rows: Int, channels: Int
) {
    let factor = UnsafeMutablePointer<Float>.allocate(capacity: channels)
    defer { factor.deallocate() }
    for c in 0..<channels { factor[c] = (gamma?[c] ?? 1) * inverseStd[c] }
    for r in 0..<rows {
        let x = input + r * channels, dz = preActivationGradient + r * channels, dx = inputGradient + r * channels
        for c in 0..<channels {
            let normalized = (x[c] - mean[c]) * inverseStd[c]
            dx[c] += factor[c] * (dz[c] - meanGradient[c] - normalized * meanGradientTimesNormalized[c])
        }
    }
}
