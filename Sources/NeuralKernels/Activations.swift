import Foundation

// The activation family: Keras' ReLU layer (and relu6, leaky_relu), sigmoid, tanh, softmax, and
// the pointwise activations Keras names as `activation=` strings and as layers (ELU, selu, gelu,
// silu, hard_sigmoid, hard_silu, softplus, softsign, exponential, mish, ThresholdedReLU). Each is a
// forward/backward pair over contiguous Float buffers; backward functions add into the input
// gradient.

// MARK: The ReLU family, sigmoid, tanh, softmax

/// Keras' ReLU layer: x >= threshold ? min(x, maxValue) : negativeSlope * (x - threshold).
public struct ReLUParameters: Sendable, Equatable {
    public var maxValue: Float?
    public var negativeSlope: Float
    public var threshold: Float
    public init(maxValue: Float? = nil, negativeSlope: Float = 0, threshold: Float = 0) {
        self.maxValue = maxValue
        self.negativeSlope = negativeSlope
        self.threshold = threshold
    }
}

public func reluForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int, _ p: ReLUParameters) {
    if p.negativeSlope == 0 && p.threshold == 0 {
        if let cap = p.maxValue {
            for i in 0..<count { output[i] = min(max(input[i], 0), cap) }
        } else {
            for i in 0..<count { output[i] = max(input[i], 0) }
        }
        return
    }
    let cap = p.maxValue ?? .infinity
    for i in 0..<count {
        let x = input[i]
        output[i] = x >= p.threshold ? min(x, cap) : p.negativeSlope * (x - p.threshold)
    }
}

/// Gradient 1 where threshold <= x < maxValue, negativeSlope below the threshold, 0 at the cap
/// (TensorFlow's Relu6Grad passes gradient for 0 < x < 6 only).
public func reluBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                         input: UnsafePointer<Float>, count: Int, _ p: ReLUParameters) {
    let cap = p.maxValue ?? .infinity
    if p.negativeSlope == 0 && p.threshold == 0 {
        for i in 0..<count {
            let x = input[i]
            inputGradient[i] += (x > 0 && x < cap) ? outputGradient[i] : 0
        }
        return
    }
    for i in 0..<count {
        let x = input[i]
        let slope: Float = x >= p.threshold ? (x < cap ? 1 : 0) : p.negativeSlope
        inputGradient[i] += slope * outputGradient[i]
    }
}

// MARK: Add followed by ReLU, fused

/// Elements per block of the fused Add + ReLU kernels: the block's sum (and gradient) stay in L1.
private let addReLUBlock = 1024

/// y[i] = inputs[0][start + i] + inputs[1][start + i] + ... for i in 0..<count, in input order (as
/// Add forms it: the first input, then each other added onto it).
@inline(__always)
private func blockSum(y: UnsafeMutablePointer<Float>, inputs: [UnsafePointer<Float>], start: Int, count n: Int) {
    let x0 = inputs[0] + start
    if inputs.count == 1 { y.update(from: x0, count: n); return }
    let x1 = inputs[1] + start
    for i in 0..<n { y[i] = x0[i] + x1[i] }
    for input in inputs.dropFirst(2) {
        let x = input + start
        for i in 0..<n { y[i] += x[i] }
    }
}

/// y = relu(inputs[0] + inputs[1] + ...): Keras' Add of same-shape tensors then its ReLU in one
/// trip through memory (ResNet's residual join). Block by block, the sum is formed as Add forms it
/// (the first input, then each other added in input order) and `reluForward` applied to it, so
/// the bits are those of the two layers apart.
public func addReLUForward(output: UnsafeMutablePointer<Float>, inputs: [UnsafePointer<Float>], count: Int,
                           _ p: ReLUParameters) {
    var start = 0
    if inputs.count == 2 && p.negativeSlope == 0 && p.threshold == 0 {
        // ResNet's case in explicit vectors: the same operations as below, in one loop.
        let (x0, x1) = (inputs[0], inputs[1])
        let cap = SIMD16<Float>(repeating: p.maxValue ?? .infinity)
        while start + 16 <= count {
            store16(clampedReLU(load16(x0 + start) + load16(x1 + start), cap: cap), output + start)
            start += 16
        }
    }
    while start < count {
        let n = min(addReLUBlock, count - start)
        blockSum(y: output + start, inputs: inputs, start: start, count: n)
        reluForward(output: output + start, input: output + start, count: n, p)
        start += n
    }
}

/// The backward of `addReLUForward`, added into every input gradient given: block by block the
/// sum z is recomputed as the forward formed it, the ReLU's gradient of z is added onto a zeroed
/// block (`reluBackward`, as into the Add's zeroed gradient buffer) and that block added into each
/// input gradient in input order, as Add's backward adds it: the same bits as the layers apart.
public func addReLUBackward(inputGradients: [UnsafeMutablePointer<Float>?], outputGradient: UnsafePointer<Float>,
                            inputs: [UnsafePointer<Float>], count: Int, _ p: ReLUParameters) {
    guard inputGradients.contains(where: { $0 != nil }) else { return }
    withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * addReLUBlock) { buffer in
        let sum = buffer.baseAddress!, gradient = sum + addReLUBlock
        var start = 0
        if inputs.count == 2 && p.negativeSlope == 0 && p.threshold == 0 {
            // ResNet's case in explicit vectors, the same operations: the ReLU's gradient
            // (z > 0 and z < cap) added onto 0, then into each input gradient.
            let (x0, x1) = (inputs[0], inputs[1])
            let cap = SIMD16<Float>(repeating: p.maxValue ?? .infinity)
            while start + 16 <= count {
                let z = load16(x0 + start) + load16(x1 + start)
                let g = SIMD16<Float>() + SIMD16<Float>().replacing(with: load16(outputGradient + start), where: (z .> 0) .& (z .< cap))
                for case let dx? in inputGradients { store16(load16(dx + start) + g, dx + start) }
                start += 16
            }
        }
        while start < count {
            let n = min(addReLUBlock, count - start)
            blockSum(y: sum, inputs: inputs, start: start, count: n)
            gradient.update(repeating: 0, count: n)
            reluBackward(inputGradient: gradient, outputGradient: outputGradient + start, input: sum, count: n, p)
            for case let dx? in inputGradients {
                let d = dx + start
                for i in 0..<n { d[i] += gradient[i] }
            }
            start += n
        }
    }
}

public func sigmoidForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { output[i] = 1 / (1 + exp(-input[i])) }
}

public func sigmoidBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                            output: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { inputGradient[i] += outputGradient[i] * output[i] * (1 - output[i]) }
}

public func tanhForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { output[i] = tanh(input[i]) }
}

public func tanhBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                         output: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { inputGradient[i] += outputGradient[i] * (1 - output[i] * output[i]) }
}

/// Softmax over the last axis of (rows, classes), max-subtracted as TensorFlow does.
public func softmaxForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, rows: Int, classes: Int) {
    for r in 0..<rows {
        let x = input + r * classes, y = output + r * classes
        var largest = -Float.infinity
        for c in 0..<classes { largest = max(largest, x[c]) }
        var sum: Float = 0
        for c in 0..<classes { y[c] = exp(x[c] - largest); sum += y[c] }
        let inverse = 1 / sum
        for c in 0..<classes { y[c] *= inverse }
    }
}

/// dx += y * (dy - sum(dy * y)).
public func softmaxBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                            output: UnsafePointer<Float>, rows: Int, classes: Int) {
    for r in 0..<rows {
        let y = output + r * classes, dy = outputGradient + r * classes, dx = inputGradient + r * classes
        var dot: Float = 0
        for c in 0..<classes { dot += dy[c] * y[c] }
        for c in 0..<classes { dx[c] += y[c] * (dy[c] - dot) }
    }
}

// MARK: Pointwise activations

/// A pointwise activation: y = f(x) for each element. Each case's forward is the float32
/// expression TensorFlow evaluates for the Keras name (TensorFlow 2.15 kernels and Keras 2/3
/// sources, cited per case), and its derivative is the one TensorFlow's registered gradient
/// uses, written from the input x.
public enum PointwiseActivation: Sendable, Equatable {
    /// `elu` and the ELU layer: tf.nn.elu (x > 0 ? x : expm1(x)); for alpha != 1 Keras takes
    /// where(x > 0, elu(x), alpha * elu(x)). d/dx: 1 for x > 0, else alpha * (expm1(x) + 1)
    /// (EluGrad: dy * (y + 1) below 0).
    case elu(alpha: Float)
    /// tf.nn.selu: x < 0 ? scale * alpha * expm1(x) : scale * x (Eigen's constants).
    case selu
    /// `gelu` (Keras' default, approximate=False): tf.nn.gelu = 0.5 * x * erfc(-x / sqrt(2)).
    case gelu
    /// `silu` / `swish`: tf.nn.silu, x * sigmoid(x).
    case silu
    /// Keras 2's `hard_sigmoid`: clip(0.2 * x + 0.5, 0, 1) (tf_keras backend.hard_sigmoid).
    case hardSigmoidKeras2
    /// Keras 3's `hard_sigmoid`: relu6(x + 3) / 6 (keras/src/backend/tensorflow/nn.py).
    case hardSigmoid
    /// Keras 3's `hard_silu` / `hard_swish`: x * hard_sigmoid(x).
    case hardSilu
    /// tf.math.softplus: log1p(exp(x)), with TensorFlow's cut-offs (x above -threshold gives x,
    /// below threshold exp(x), threshold = log(float epsilon) + 2).
    case softplus
    /// x / (1 + |x|) (tf.math.softsign).
    case softsign
    /// exp(x).
    case exponential
    /// x * tanh(softplus(x)) (Keras 2 and 3 alike).
    case mish
    /// Keras 2's ThresholdedReLU layer: x * (x > theta).
    case thresholdedReLU(theta: Float)

    static let seluScale: Float = 1.0507009873554804934193349852946
    static let seluScaleAlpha: Float = 1.7580993408473768599402175208123
    static let softplusThreshold: Float = log(Float.ulpOfOne) + 2

    @inline(__always) static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    @inline(__always) static func softplus(_ x: Float) -> Float {
        if x > -softplusThreshold { return x }
        if x < softplusThreshold { return exp(x) }
        return log1p(exp(x))
    }

    /// f(x).
    @inline(__always) public func value(_ x: Float) -> Float {
        switch self {
        case .elu(let alpha):
            let y = x > 0 ? x : expm1(x)
            return alpha == 1 || x > 0 ? y : alpha * y
        case .selu: return x < 0 ? Self.seluScaleAlpha * expm1(x) : Self.seluScale * x
        case .gelu: return 0.5 * x * erfc(-x * 0.7071067811865476)
        case .silu: return x * Self.sigmoid(x)
        case .hardSigmoidKeras2: return min(max(x * 0.2 + 0.5, 0), 1)
        case .hardSigmoid: return min(max(x + 3, 0), 6) / 6
        case .hardSilu: return x * (min(max(x + 3, 0), 6) / 6)
        case .softplus: return Self.softplus(x)
        case .softsign: return x / (1 + abs(x))
        case .exponential: return exp(x)
        case .mish: return x * tanh(Self.softplus(x))
        case .thresholdedReLU(let theta): return x > theta ? x : 0
        }
    }

    /// df/dx at x, as TensorFlow's gradient computes it (at a kink, the side TensorFlow takes).
    @inline(__always) public func derivative(_ x: Float) -> Float {
        switch self {
        case .elu(let alpha): return x > 0 ? 1 : alpha * (expm1(x) + 1)
        case .selu: return x < 0 ? Self.seluScaleAlpha * expm1(x) + Self.seluScaleAlpha : Self.seluScale
        case .gelu:
            // 0.5 * erfc(-x / sqrt 2) + x * exp(-x^2 / 2) / sqrt(2 pi): the tape's derivative of
            // 0.5 * x * erfc(-x * c), since erfc'(u) = -2 / sqrt(pi) * exp(-u^2).
            return 0.5 * erfc(-x * 0.7071067811865476) + x * 0.3989422804014327 * exp(-0.5 * x * x)
        case .silu:
            let s = Self.sigmoid(x)
            return s * (1 + x * (1 - s))
        case .hardSigmoidKeras2:
            // clip_by_value passes the gradient where min <= z <= max.
            let z = x * 0.2 + 0.5
            return z >= 0 && z <= 1 ? 0.2 : 0
        case .hardSigmoid:
            // Relu6Grad passes the gradient for 0 < x + 3 < 6.
            let z = x + 3
            return z > 0 && z < 6 ? 1 / 6 : 0
        case .hardSilu:
            let z = x + 3
            return min(max(z, 0), 6) / 6 + (z > 0 && z < 6 ? x / 6 : 0)
        case .softplus: return Self.sigmoid(x)
        case .softsign:
            let d = 1 + abs(x)
            return 1 / (d * d)
        case .exponential: return exp(x)
        case .mish:
            let t = tanh(Self.softplus(x))
            return t + x * (1 - t * t) * Self.sigmoid(x)
        case .thresholdedReLU(let theta): return x > theta ? 1 : 0
        }
    }
}

public func pointwiseForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int,
                             _ f: PointwiseActivation) {
    for i in 0..<count { output[i] = f.value(input[i]) }
}

/// dx += dy * f'(x).
public func pointwiseBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>,
                              input: UnsafePointer<Float>, count: Int, _ f: PointwiseActivation) {
    for i in 0..<count { inputGradient[i] += outputGradient[i] * f.derivative(input[i]) }
}

/// Where PReLU's alpha broadcasts over a sample of `shape` (row-major, the last axis the
/// columns): alpha has `alphaShape`, the sample's shape with 1 on the shared axes. Returns each
/// row's alpha offset and the alpha stride along the last axis (0 when it is shared).
public func preluAlphaLayout(shape: [Int], alphaShape: [Int]) -> (rowOffsets: [Int], columnStride: Int) {
    precondition(shape.count == alphaShape.count && zip(shape, alphaShape).allSatisfy { $1 == $0 || $1 == 1 })
    guard let last = shape.indices.last else { return ([0], 0) }
    var strides = [Int](repeating: 0, count: shape.count), stride = 1
    for axis in shape.indices.reversed() {
        strides[axis] = alphaShape[axis] == 1 && shape[axis] != 1 ? 0 : stride
        stride *= alphaShape[axis]
    }
    let rows = shape.dropLast().reduce(1, *)
    var offsets = [Int](repeating: 0, count: rows)
    for r in 0..<rows {
        var rest = r, offset = 0
        for axis in (0..<last).reversed() {
            offset += (rest % shape[axis]) * strides[axis]
            rest /= shape[axis]
        }
        offsets[r] = offset
    }
    return (offsets, strides[last])
}

/// Keras' PReLU, relu(x) - alpha * relu(-x): x where x > 0, else alpha * x (both float32
/// products are exact negations of each other, so this is Keras' value bit for bit), over `batch`
/// samples of rows x columns values, alpha laid out as `preluAlphaLayout` says.
public func preluForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, alpha: UnsafePointer<Float>, batch: Int,
                         rowOffsets: [Int], columns: Int, columnStride: Int) {
    var i = 0
    for _ in 0..<batch {
        for offset in rowOffsets {
            let a = alpha + offset
            for c in 0..<columns {
                let x = input[i]
                output[i] = x > 0 ? x : a[c * columnStride] * x
                i += 1
            }
        }
    }
}

/// The backward of `preluForward`, added into the gradients given: dx = dy where x > 0, alpha dy
/// where x < 0, 0 at 0 (TensorFlow's relu gradient is 0 there); dalpha = the sum of dy x over the
/// x < 0 that share the alpha (the batch and the shared axes), summed in Double.
public func preluBackward(inputGradient: UnsafeMutablePointer<Float>?, alphaGradient: UnsafeMutablePointer<Float>?,
                          outputGradient: UnsafePointer<Float>, input: UnsafePointer<Float>, alpha: UnsafePointer<Float>,
                          alphaCount: Int, batch: Int, rowOffsets: [Int], columns: Int, columnStride: Int) {
    var sums = [Double](repeating: 0, count: alphaGradient == nil ? 0 : alphaCount)
    var i = 0
    for _ in 0..<batch {
        for offset in rowOffsets {
            for c in 0..<columns {
                let x = input[i], dy = outputGradient[i], j = offset + c * columnStride
                if let inputGradient { inputGradient[i] += x > 0 ? dy : (x < 0 ? alpha[j] * dy : 0) }
                if alphaGradient != nil, x < 0 { sums[j] += Double(dy) * Double(x) }
                i += 1
            }
        }
    }
    if let alphaGradient { for j in 0..<alphaCount { alphaGradient[j] += Float(sums[j]) } }
}
