import KerasCheckpoint
import NeuralKernels

// The merging family: Add, Subtract, Multiply, Average, Maximum, Minimum (elementwise, with
// TensorFlow's broadcasting of size-1 axes, as squeeze-and-excite blocks multiply an (h, w, c)
// tensor by a (1, 1, c) one) and Concatenate (last axis); also the arithmetic on a tensor and a
// number recorded in a Functional config, Keras 3's `keras.ops` and Keras 2's TFOpLambda
// (`addOperation`, which `GraphBuilder` calls for any layer that `LayerConfig.isOperation`).
// Graph building and operations.

enum Merging: LayerFamily {
    static let kinds: [String: MergeOperation.Kind] = [
        "Add": .add, "Subtract": .subtract, "Multiply": .multiply, "Average": .average,
        "Maximum": .maximum, "Minimum": .minimum,
    ]

    static let layers: [String: LayerDefinition] = kinds.mapValues { kind in
        LayerDefinition(readsSeveralInputs: true) { builder, layer, inputs in try builder.addMerge(layer, kind: kind, inputs: inputs) }
    }.merging(["Concatenate": LayerDefinition(readsSeveralInputs: true) { builder, layer, inputs in
        try builder.addConcatenate(layer, inputs: inputs)
    }]) { _, _ in preconditionFailure("Concatenate is not an elementwise merge") }
}

extension GraphBuilder {
    /// The node for an elementwise merge layer over `inputs` (node indices).
    mutating func addMerge(_ layer: LayerConfig, kind: MergeOperation.Kind, inputs: [Int]) throws -> Int {
        let shapes = inputs.map { nodes[$0].shape }
        guard inputs.count >= (kind == .subtract ? 2 : 1), kind != .subtract || inputs.count == 2 else {
            throw error(layer, kind == .subtract ? "takes exactly 2 inputs, got \(inputs.count)" : "has no inputs")
        }
        guard shapes.allSatisfy({ $0.count == shapes[0].count }) else {
            throw error(layer, "merges tensors of different ranks \(shapes)")
        }
        let output = (0..<shapes[0].count).map { axis in shapes.map { $0[axis] }.max()! }
        guard shapes.allSatisfy({ zip($0, output).allSatisfy { $0 == $1 || $0 == 1 } }) else {
            throw error(layer, "merges tensors of shapes \(shapes), which do not broadcast to one shape")
        }
        let operation: Operation = kind == .add && shapes.allSatisfy({ $0 == output })
            ? AddOperation(count: output.reduce(1, *))
            : MergeOperation(kind: kind, inputShapes: shapes, outputShape: output)
        return append(Node(name: layer.name, layerName: layer.name, className: layer.className, operation: operation,
                           inputs: inputs, shape: output))
    }

    /// Keras 2's TFOpLambda functions that are arithmetic, by the operation names of Keras 3.
    static let tensorFlowArithmetic = ["__operators__.add": "Add", "math.add": "Add", "math.multiply": "Multiply",
                                       "math.subtract": "Subtract", "math.truediv": "TrueDivide", "math.divide": "Divide"]

    /// An operation on one tensor and one number (`x + 3.0`, `x * (1 / 6)`, as MobileNetV3's hard
    /// sigmoid is written) recorded in the model config: by Keras 3 as a keras.ops operation, by
    /// Keras 2 as a TFOpLambda (`tf.__operators__.add`, `tf.math.multiply`, ...). Any other
    /// TensorFlow function is refused.
    mutating func addOperation(_ layer: LayerConfig, inputs: [Int]) throws -> Int {
        let name: String, operation: String
        if layer.className == "TFOpLambda" {
            let function = layer.config["function"]?.string ?? "?"
            name = "tf.\(function)"
            guard let arithmetic = Self.tensorFlowArithmetic[function] else {
                throw error(layer, "is the TensorFlow function \(name) recorded from Python code, which gmtool cannot run (it runs add, subtract, multiply and divide of a tensor and a number); rebuild the model with built-in Keras layers (Keras 3 saves such models with them)")
            }
            operation = arithmetic
        } else {
            (name, operation) = ("keras.ops.\(layer.className.lowercased())", layer.className)
        }
        let constants = layer.callArguments.enumerated().compactMap { index, value in value.double.map { (index, Float($0)) } }
        guard inputs.count == 1, constants.count == 1, layer.callArguments.count == 2 else {
            throw error(layer, "is the operation \(name) on \(inputs.count) tensors and \(constants.count) numbers; gmtool runs operations on one tensor and one number only")
        }
        let (position, constant) = constants[0]
        let kind: ScalarOperation.Kind
        switch (operation, position) {
        case ("Add", _): kind = .add
        case ("Multiply", _): kind = .multiply
        case ("Subtract", 1): kind = .subtract
        case ("Subtract", 0): kind = .subtractFrom
        case ("Divide", 1), ("TrueDivide", 1): kind = .divide
        default:
            throw error(layer, "is the operation \(name), which gmtool does not run (it runs add, subtract, multiply and divide by a number)")
        }
        let shape = nodes[inputs[0]].shape
        return append(Node(name: layer.name, layerName: layer.name, className: layer.className,
                           operation: ScalarOperation(kind: kind, constant: constant, count: shape.reduce(1, *)),
                           inputs: inputs, shape: shape))
    }

    mutating func addConcatenate(_ layer: LayerConfig, inputs: [Int]) throws -> Int {
        let shapes = inputs.map { nodes[$0].shape }
        let shape = shapes[0]
        let axis = layer.config["axis"]?.int ?? -1
        guard axis == -1 || axis == shape.count else { throw error(layer, "concatenates along axis \(axis); only the last axis is supported") }
        guard shapes.allSatisfy({ $0.count == shape.count && Array($0.dropLast()) == Array(shape.dropLast()) }) else {
            throw error(layer, "concatenates tensors whose leading axes differ \(shapes)")
        }
        let widths = shapes.map { $0.last ?? 1 }
        return append(Node(name: layer.name, layerName: layer.name, className: layer.className,
                           operation: ConcatenateOperation(widths: widths, rowsPerSample: shape.dropLast().reduce(1, *)),
                           inputs: inputs, shape: Array(shape.dropLast()) + [widths.reduce(0, +)]))
    }
}

/// Add of same-shape inputs: output = inputs[0] + inputs[1] + ... in input order (Keras' order).
final class AddOperation: Operation {
    let count: Int
    init(count: Int) { self.count = count }
    func forward(_ c: PassContext) {
        let n = c.batch * count
        c.output.update(from: c.inputs[0], count: n)
        for input in c.inputs.dropFirst() { for i in 0..<n { c.output[i] += input[i] } }
    }
    func backward(_ c: PassContext) {
        let n = c.batch * count
        for case let dx? in c.inputGradients { for i in 0..<n { dx[i] += c.outputGradient[i] } }
    }
}

/// An `AddOperation` whose only consumer is a ReLU, fused into one pass each way
/// (`GraphBuilder.fuseReLUs`; `addReLUForward`/`addReLUBackward`, the same bits as the two apart).
final class AddReLUOperation: Operation {
    let count: Int
    let relu: ReLUParameters
    init(count: Int, relu: ReLUParameters) { (self.count, self.relu) = (count, relu) }
    func forward(_ c: PassContext) {
        addReLUForward(output: c.output, inputs: c.inputs.map { UnsafePointer($0) }, count: c.batch * count, relu)
    }
    func backward(_ c: PassContext) {
        addReLUBackward(inputGradients: c.inputGradients, outputGradient: c.outputGradient, inputs: c.inputs.map { UnsafePointer($0) },
                        count: c.batch * count, relu)
    }
}

/// Concatenate along the last axis.
final class ConcatenateOperation: Operation {
    /// Last-axis width of each input, and the number of rows per sample.
    let widths: [Int]
    let rowsPerSample: Int
    init(widths: [Int], rowsPerSample: Int) {
        self.widths = widths
        self.rowsPerSample = rowsPerSample
    }
    func forward(_ c: PassContext) {
        let total = widths.reduce(0, +)
        for row in 0..<(c.batch * rowsPerSample) {
            var offset = 0
            for (input, width) in zip(c.inputs, widths) {
                (c.output + row * total + offset).update(from: input + row * width, count: width)
                offset += width
            }
        }
    }
    func backward(_ c: PassContext) {
        let total = widths.reduce(0, +)
        for row in 0..<(c.batch * rowsPerSample) {
            var offset = 0
            for (dx, width) in zip(c.inputGradients, widths) {
                if let dx {
                    let source = c.outputGradient + row * total + offset
                    let destination = dx + row * width
                    for i in 0..<width { destination[i] += source[i] }
                }
                offset += width
            }
        }
    }
}

/// An elementwise merge over inputs of one rank whose axes equal the output's or are 1. Keras
/// folds left in input order (output = inputs[0]; output = op(output, inputs[i])), and so does
/// this: Add and Multiply accumulate, Average divides the sum by the input count, Maximum and
/// Minimum keep the earlier value on a tie (TensorFlow's gradient of maximum(x, y) goes to x where
/// x >= y, so the gradient goes to the first input holding the extreme).
final class MergeOperation: Operation {
    enum Kind: Sendable { case add, subtract, multiply, average, maximum, minimum }
    let kind: Kind
    /// Output elements per sample, and each input's.
    let count: Int
    let inputCounts: [Int]
    /// Per input: nil when it has the output's shape, else the input element each output element
    /// reads (per sample).
    let sources: [[Int]?]

    init(kind: Kind, inputShapes: [[Int]], outputShape: [Int]) {
        self.kind = kind
        count = outputShape.reduce(1, *)
        inputCounts = inputShapes.map { $0.reduce(1, *) }
        sources = inputShapes.map { shape in
            if shape == outputShape { return nil }
            // Row-major strides of the input, 0 along its broadcast axes.
            var strides = [Int](repeating: 0, count: shape.count), stride = 1
            for axis in shape.indices.reversed() {
                strides[axis] = shape[axis] == 1 ? 0 : stride
                stride *= shape[axis]
            }
            var map = [Int](repeating: 0, count: outputShape.reduce(1, *))
            for j in map.indices {
                var rest = j, offset = 0
                for axis in outputShape.indices.reversed() {
                    offset += (rest % outputShape[axis]) * strides[axis]
                    rest /= outputShape[axis]
                }
                map[j] = offset
            }
            return map
        }
    }

    @inline(__always) private func value(_ c: PassContext, _ input: Int, sample: Int, _ j: Int) -> Float {
        c.inputs[input][sample * inputCounts[input] + (sources[input]?[j] ?? j)]
    }

    /// Which input the extreme of output element j comes from (Maximum, Minimum).
    @inline(__always) private func winner(_ c: PassContext, sample: Int, _ j: Int) -> Int {
        var best = value(c, 0, sample: sample, j), index = 0
        for i in 1..<c.inputs.count {
            let v = value(c, i, sample: sample, j)
            if kind == .maximum ? !(best >= v) : !(best <= v) { best = v; index = i }
        }
        return index
    }

    func forward(_ c: PassContext) {
        for s in 0..<c.batch {
            let y = c.output + s * count
            for j in 0..<count {
                var acc = value(c, 0, sample: s, j)
                switch kind {
                case .add, .average: for i in 1..<c.inputs.count { acc += value(c, i, sample: s, j) }
                case .subtract: acc -= value(c, 1, sample: s, j)
                case .multiply: for i in 1..<c.inputs.count { acc *= value(c, i, sample: s, j) }
                case .maximum, .minimum: acc = value(c, winner(c, sample: s, j), sample: s, j)
                }
                y[j] = kind == .average ? acc / Float(c.inputs.count) : acc
            }
        }
    }

    func backward(_ c: PassContext) {
        let n = c.inputs.count
        for s in 0..<c.batch {
            let dy = c.outputGradient + s * count
            func add(_ input: Int, _ j: Int, _ g: Float) {
                guard let dx = c.inputGradients[input] else { return }
                dx[s * inputCounts[input] + (sources[input]?[j] ?? j)] += g
            }
            for j in 0..<count {
                switch kind {
                case .add: for i in 0..<n { add(i, j, dy[j]) }
                case .average: for i in 0..<n { add(i, j, dy[j] / Float(n)) }
                case .subtract: add(0, j, dy[j]); add(1, j, -dy[j])
                case .multiply:
                    for i in 0..<n {
                        var others: Float = 1
                        for k in 0..<n where k != i { others *= value(c, k, sample: s, j) }
                        add(i, j, dy[j] * others)
                    }
                case .maximum, .minimum: add(winner(c, sample: s, j), j, dy[j])
                }
            }
        }
    }
}

/// y = x op c for a float32 constant c, one TensorFlow float32 operation per element.
final class ScalarOperation: Operation {
    enum Kind: Sendable { case add, multiply, subtract, subtractFrom, divide }
    let kind: Kind
    let constant: Float
    let count: Int
    init(kind: Kind, constant: Float, count: Int) { (self.kind, self.constant, self.count) = (kind, constant, count) }

    func forward(_ c: PassContext) {
        let x = c.inputs[0], y = c.output, k = constant
        for i in 0..<(c.batch * count) {
            switch kind {
            case .add: y[i] = x[i] + k
            case .multiply: y[i] = x[i] * k
            case .subtract: y[i] = x[i] - k
            case .subtractFrom: y[i] = k - x[i]
            case .divide: y[i] = x[i] / k
            }
        }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        let dy = c.outputGradient
        for i in 0..<(c.batch * count) {
            switch kind {
            case .add, .subtract: dx[i] += dy[i]
            case .subtractFrom: dx[i] -= dy[i]
            case .multiply: dx[i] += dy[i] * constant
            case .divide: dx[i] += dy[i] / constant
            }
        }
    }
}
