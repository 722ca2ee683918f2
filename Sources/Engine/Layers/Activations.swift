import KerasCheckpoint
import ModelState
import NeuralKernels

/// The activation layers (ReLU, LeakyReLU, ELU, ThresholdedReLU, PReLU, Activation, Softmax) and the
/// activation names of `activation=` on other layers (`withActivation`, a node of its own after
/// the layer's). `ActivationOperation` runs the kernels of `NeuralKernels/Activations.swift`.
enum Activations: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        "ReLU": LayerDefinition { builder, layer, inputs in
            let maxValue = layer.config["max_value"]?.double.map(Float.init)
            let slope = Float(layer.config["negative_slope"]?.double ?? 0)
            let threshold = Float(layer.config["threshold"]?.double ?? 0)
            return builder.addActivation(layer, .relu(ReLUParameters(maxValue: maxValue, negativeSlope: slope, threshold: threshold)),
                                         input: inputs[0])
        },
        "LeakyReLU": LayerDefinition { builder, layer, inputs in
            let slope = Float(layer.config["negative_slope"]?.double ?? layer.config["alpha"]?.double ?? 0.3)
            return builder.addActivation(layer, .relu(ReLUParameters(negativeSlope: slope)), input: inputs[0])
        },
        "ELU": LayerDefinition { builder, layer, inputs in
            builder.addActivation(layer, .pointwise(.elu(alpha: Float(layer.config["alpha"]?.double ?? 1))), input: inputs[0])
        },
        "ThresholdedReLU": LayerDefinition { builder, layer, inputs in
            builder.addActivation(layer, .pointwise(.thresholdedReLU(theta: Float(layer.config["theta"]?.double ?? 1))), input: inputs[0])
        },
        "Activation": LayerDefinition { builder, layer, inputs in
            builder.addActivation(layer, try builder.activationKind(try builder.activationName(layer), layer: layer), input: inputs[0])
        },
        // alpha has the input's shape less the batch axis, 1 on `shared_axes`; Keras 2's config
        // does not record the input's rank, so the spec leaves it open and the build checks it.
        "PReLU": LayerDefinition(weights: { _ in [WeightSpec(role: .alpha, shape: nil)] },
                                 build: { builder, layer, inputs in try builder.addPReLU(layer, input: inputs[0]) }),
        "Softmax": LayerDefinition { builder, layer, inputs in
            let shape = builder.nodes[inputs[0]].shape
            if let axis = layer.config["axis"]?.ints, axis != [-1], axis != [shape.count] {
                throw builder.error(layer, "softmax over axis \(axis) is not supported (last axis only)")
            }
            return builder.addActivation(layer, .softmax, input: inputs[0])
        },
    ]
}

extension GraphBuilder {
    /// An activation node of `layer` over the whole of its input.
    mutating func addActivation(_ layer: LayerConfig, _ kind: ActivationOperation.Kind, input: Int) -> Int {
        let shape = nodes[input].shape
        return append(node(layer, ActivationOperation(kind: kind, count: shape.reduce(1, *), lastAxis: shape.last ?? 1), shape,
                           inputs: [input]))
    }

    /// PReLU: one alpha per input element, shared (one value) along `shared_axes` (counted from 1,
    /// the batch axis 0, as Keras).
    mutating func addPReLU(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        let raw = layer.config["shared_axes"]
        let shared: [Int]
        if raw == nil || raw == .null { shared = [] }
        else if let axis = raw?.int { shared = [axis] }
        else if let axes = raw?.ints { shared = axes }
        else { throw error(layer, "shared_axes has an unexpected form") }
        guard shared.allSatisfy({ (1...shape.count).contains($0) }) else {
            throw error(layer, "shared_axes \(shared) are not axes 1...\(shape.count) of its input of shape \(shape)")
        }
        let alphaShape = shape.indices.map { shared.contains($0 + 1) ? 1 : shape[$0] }
        let alpha = try parameter(layer, .alpha, shape: alphaShape)!
        return append(node(layer, PReLUOperation(alpha: alpha, shape: shape, alphaShape: alphaShape), shape, inputs: [input]))
    }

    /// Keras' activation names (`activation=` and the Activation layer), as Keras 2 and 3 define
    /// them; `hard_sigmoid` differs between the two, so the file's Keras version decides.
    func activationKind(_ name: String, layer: LayerConfig) throws -> ActivationOperation.Kind {
        switch name {
        case "linear": return .linear
        case "relu": return .relu(ReLUParameters())
        case "relu6": return .relu(ReLUParameters(maxValue: 6))
        case "leaky_relu": return .relu(ReLUParameters(negativeSlope: 0.2))
        case "sigmoid": return .sigmoid
        case "tanh": return .tanh
        case "softmax": return .softmax
        case "elu": return .pointwise(.elu(alpha: 1))
        case "selu": return .pointwise(.selu)
        case "gelu": return .pointwise(.gelu)
        case "silu", "swish": return .pointwise(.silu)
        case "hard_silu", "hard_swish": return .pointwise(.hardSilu)
        case "softplus": return .pointwise(.softplus)
        case "softsign": return .pointwise(.softsign)
        case "exponential": return .pointwise(.exponential)
        case "mish": return .pointwise(.mish)
        case "hard_sigmoid":
            guard let version = checkpoint.kerasVersion, let major = version.split(separator: ".").first.flatMap({ Int($0) }) else {
                throw error(layer, "hard_sigmoid is clip(0.2x + 0.5, 0, 1) in Keras 2 and relu6(x + 3) / 6 in Keras 3, and the file does not record its Keras version")
            }
            return .pointwise(major >= 3 ? .hardSigmoid : .hardSigmoidKeras2)
        default:
            throw error(layer, "activation '\(name)' is not supported (\(Self.activationNames.joined(separator: ", ")))")
        }
    }

    static let activationNames = ["linear", "relu", "relu6", "leaky_relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu",
                                  "silu", "swish", "hard_sigmoid", "hard_silu", "hard_swish", "softplus", "softsign",
                                  "exponential", "mish"]

    func activationName(_ layer: LayerConfig) throws -> String {
        let value = layer.config["activation"]
        if value == nil || value == .null { return "linear" }
        if let name = value?.string { return name }
        if let name = value?["config"]?["name"]?.string ?? value?["class_name"]?.string { return name.lowercased() }
        throw error(layer, "has an activation gmtool cannot read")
    }

    /// Appends `node`, then the layer's fused activation if it has one; returns the last node.
    mutating func withActivation(_ layer: LayerConfig, _ node: Node) throws -> Int {
        let index = append(node)
        let kind = try activationKind(try activationName(layer), layer: layer)
        if kind == .linear { return index }
        return append(Node(name: "\(layer.name)/activation", layerName: layer.name, className: "Activation",
                           operation: ActivationOperation(kind: kind, count: node.count, lastAxis: node.shape.last ?? 1),
                           inputs: [index], shape: node.shape))
    }
}

/// Keras' PReLU (`preluForward`): x where x > 0, alpha * x elsewhere, alpha broadcast over the
/// shared axes; its backward gives alpha's gradient summed over the batch and those axes.
final class PReLUOperation: Operation {
    let alpha: Parameter
    let count: Int
    let rowOffsets: [Int], columns: Int, columnStride: Int

    init(alpha: Parameter, shape: [Int], alphaShape: [Int]) {
        self.alpha = alpha
        count = shape.reduce(1, *)
        (rowOffsets, columnStride) = preluAlphaLayout(shape: shape, alphaShape: alphaShape)
        columns = shape.last ?? 1
    }

    var parameters: [Parameter] { [alpha] }

    func forward(_ c: PassContext) {
        preluForward(output: c.output, input: c.inputs[0], alpha: alpha.pointer, batch: c.batch, rowOffsets: rowOffsets,
                     columns: columns, columnStride: columnStride)
    }

    func backward(_ c: PassContext) {
        preluBackward(inputGradient: c.inputGradients[0], alphaGradient: c.workspace.gradient(alpha), outputGradient: c.outputGradient,
                      input: c.inputs[0], alpha: alpha.pointer, alphaCount: alpha.weight.elementCount, batch: c.batch,
                      rowOffsets: rowOffsets, columns: columns, columnStride: columnStride)
    }
}
