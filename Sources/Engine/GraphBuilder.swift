import KerasCheckpoint
import ModelState
import NeuralKernels

/// One node of the computation: an operation, the nodes it reads, and its per-sample shape.
struct Node {
    var name: String
    var layerName: String
    var className: String
    var operation: Operation
    var inputs: [Int]
    var shape: [Int]
    var count: Int { shape.reduce(1, *) }
}

/// Builds the node list from a Keras model config and checks every weight against the shape the
/// layer needs (missing, extra or misshapen weights are errors that name the layer).
struct GraphBuilder {
    let model: Model
    let checkpoint: Checkpoint
    let source: String
    var nodes: [Node] = []
    /// The layers that are the identity here but act in Keras' training (augmentation, noise),
    /// each as a sentence naming the layer.
    var trainingOnlyLayers: [String] = []
    /// Which kernels convolution and Dense layers stored sparse in the checkpoint run.
    var kernels: KernelChoice = .dense
    private var weightsByLayer: [String: [CheckpointWeight]] = [:]
    private var usedWeights: Set<String> = []

    init(model: Model) {
        self.model = model
        checkpoint = model.checkpoint
        source = checkpoint.path
        // By the layer that owns each weight (inside a nested model, the inner layer).
        for weight in checkpoint.weights { weightsByLayer[weight.layerName, default: []].append(weight) }
    }

    func error(_ layer: LayerConfig, _ problem: String) -> CheckpointError {
        CheckpointError(file: source, object: "layer \(layer.name) (\(layer.className))", problem: problem)
    }

    /// Builds the graph; `inputShape` (H, W, C) fills any size the config leaves open.
    mutating func build(_ config: ModelConfig, inputShape override: [Int]?) throws -> (input: Int, output: Int) {
        var declared = config.inputShape
        if let override {
            if let declared, declared.count == override.count,
               zip(declared, override).contains(where: { $0 != nil && $0 != $1 }) {
                let text = declared.map { $0.map(String.init) ?? "None" }.joined(separator: ", ")
                throw CheckpointError(file: source, problem: "the model takes inputs of shape (\(text)), not \(override)")
            }
            declared = override.map { Optional($0) }
        }
        guard let shape = declared?.compactMap({ $0 }), shape.count == declared?.count, !shape.isEmpty else {
            throw CheckpointError(file: source, problem: "the model config leaves the input size open; give the image size")
        }
        let inputNode = append(Node(name: "input", layerName: "input", className: "InputLayer",
                                    operation: InputOperation(), inputs: [], shape: shape))
        let output = try addModel(config, input: inputNode)
        try checkAllWeightsUsed()
        return (inputNode, output)
    }

    /// The layers of `config`, the whole model or one used as a layer inside it (at any depth),
    /// applied to node `input`; returns the model's output node. Layer names are looked up in
    /// the model's own scope, as Keras does.
    private mutating func addModel(_ config: ModelConfig, input: Int) throws -> Int {
        switch config.kind {
        case .sequential:
            var current = input
            for layer in config.layers where layer.className != "InputLayer" {
                current = try add(layer, inputs: [current])
            }
            return current
        case .functional:
            guard config.inputs.count == 1, config.outputs.count == 1 else {
                throw CheckpointError(file: source, problem: "\(config.name): models with \(config.inputs.count) inputs and \(config.outputs.count) outputs are not supported (one of each)")
            }
            var outputOfLayer: [String: Int] = [:]
            // Keras 2 numbers a nested model's call after the node its own Input made, so a
            // reference to the one call of a model is to its node 1; Keras 3 writes node 0.
            let nestedModels = Set(config.layers.filter { $0.nestedModel != nil }.map(\.name))
            for layer in config.layers {
                if layer.className == "InputLayer" {
                    outputOfLayer[layer.name] = input
                    continue
                }
                guard layer.inboundNodes.count == 1 else {
                    throw error(layer, layer.inboundNodes.isEmpty ? "is not connected to the graph"
                                : "is called \(layer.inboundNodes.count) times (shared layers are not supported)")
                }
                let inputs = try layer.inboundNodes[0].map { reference -> Int in
                    let callNodes = nestedModels.contains(reference.layer) ? [0, 1] : [0]
                    guard let node = outputOfLayer[reference.layer], callNodes.contains(reference.node), reference.tensor == 0 else {
                        throw error(layer, "reads \(reference.layer)[\(reference.node)][\(reference.tensor)], which is not an earlier layer's output")
                    }
                    return node
                }
                outputOfLayer[layer.name] = try add(layer, inputs: inputs)
            }
            guard config.inputs.allSatisfy({ outputOfLayer[$0.layer] == input }),
                  let output = outputOfLayer[config.outputs[0].layer] else {
                throw CheckpointError(file: source, problem: "\(config.name): the model config's inputs or outputs name no layer")
            }
            return output
        }
    }

    /// Fuses each BatchNormalization whose only consumer is a ReLU into one node (the pair is most
    /// of MobileNet's elementwise traffic), then drops the nodes that became unused. Returns the
    /// new indices of `keep`.
    mutating func fuseBatchNormReLU(keep: [Int]) -> [Int] {
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        var dead = Set<Int>()
        for index in nodes.indices {
            guard let activation = nodes[index].operation as? ActivationOperation, case .relu(let p) = activation.kind,
                  nodes[index].inputs.count == 1 else { continue }
            let source = nodes[index].inputs[0]
            guard let batchNorm = nodes[source].operation as? BatchNormOperation, consumers[source] == 1,
                  !keep.contains(source) else { continue }
            nodes[index].operation = BatchNormReLUOperation(batchNorm: batchNorm, relu: p)
            nodes[index].inputs = nodes[source].inputs
            nodes[index].name = "\(nodes[source].name)+\(nodes[index].name)"
            dead.insert(source)
        }
        var newIndex = [Int](repeating: -1, count: nodes.count)
        var kept: [Node] = []
        for (index, node) in nodes.enumerated() where !dead.contains(index) {
            newIndex[index] = kept.count
            kept.append(node)
        }
        for index in kept.indices { kept[index].inputs = kept[index].inputs.map { newIndex[$0] } }
        nodes = kept
        return keep.map { newIndex[$0] }
    }

    mutating func append(_ node: Node) -> Int {
        nodes.append(node)
        return nodes.count - 1
    }

    private func checkAllWeightsUsed() throws {
        for weight in checkpoint.weights where !usedWeights.contains(weight.datasetPath) {
            throw CheckpointError(file: source, object: weight.datasetPath, problem: "is not used by any layer of the model config")
        }
    }

    /// The model's parameter for one weight of `layer`, its shape checked.
    mutating func parameter(_ layer: LayerConfig, _ role: WeightRole, shape: [Int], required: Bool = true) throws -> Parameter? {
        let weights = weightsByLayer[layer.name] ?? []
        guard let weight = weights.first(where: { $0.role == role }) else {
            if required { throw error(layer, "has no \(role) weight in the file") }
            return nil
        }
        guard weight.shape == shape else {
            throw CheckpointError(file: source, object: weight.datasetPath,
                                  problem: "shape \(weight.shape) does not fit layer \(layer.name): expected \(shape)")
        }
        usedWeights.insert(weight.datasetPath)
        return model.parameter(for: weight)!
    }

    private func attachSparse(_ operation: ConvolutionOperation) throws {
        guard kernels != .dense, let matrix = try checkpoint.sparseKernel(operation.kernel.weight) else { return }
        operation.sparse = SparseKernel(matrix)
        operation.kernels = kernels
    }

    /// Keras' activation names (`activation=` and the Activation layer), as Keras 2 and 3 define
    /// them; `hard_sigmoid` differs between the two, so the file's Keras version decides.
    private func activationKind(_ name: String, layer: LayerConfig) throws -> ActivationOperation.Kind {
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

    private func activationName(_ layer: LayerConfig) throws -> String {
        let value = layer.config["activation"]
        if value == nil || value == .null { return "linear" }
        if let name = value?.string { return name }
        if let name = value?["config"]?["name"]?.string ?? value?["class_name"]?.string { return name.lowercased() }
        throw error(layer, "has an activation gmtool cannot read")
    }

    /// Appends `node`, then the layer's fused activation if it has one; returns the last node.
    private mutating func withActivation(_ layer: LayerConfig, _ node: Node) throws -> Int {
        let index = append(node)
        let kind = try activationKind(try activationName(layer), layer: layer)
        if kind == .linear { return index }
        return append(Node(name: "\(layer.name)/activation", layerName: layer.name, className: "Activation",
                           operation: ActivationOperation(kind: kind, count: node.count, lastAxis: node.shape.last ?? 1),
                           inputs: [index], shape: node.shape))
    }

    private func ints(_ layer: LayerConfig, _ key: String, default value: [Int]? = nil, count: Int = 2) throws -> [Int] {
        guard let raw = layer.config[key], raw != .null else {
            if let value { return value }
            throw error(layer, "config has no \(key)")
        }
        guard let list = raw.ints else { throw error(layer, "config \(key) is not a list of integers") }
        return list.count == 1 ? Array(repeating: list[0], count: count) : list
    }

    /// ZeroPadding2D's `padding` and Cropping2D's `cropping`: n, (h, w) or ((top, bottom),
    /// (left, right)); returns [top, bottom, left, right], all >= 0.
    private func sides(_ layer: LayerConfig, _ key: String, default value: Int) throws -> [Int] {
        let raw = layer.config[key]
        var result = [value, value, value, value]
        if let single = raw?.int { result = [single, single, single, single] }
        else if let pairs = raw?.array, pairs.count == 2 {
            if let a = pairs[0].int, let b = pairs[1].int { result = [a, a, b, b] }
            else if let top = pairs[0].ints, let side = pairs[1].ints, top.count == 2, side.count == 2 {
                result = [top[0], top[1], side[0], side[1]]
            } else { throw error(layer, "\(key) has an unexpected form") }
        } else if raw != nil && raw != .null { throw error(layer, "\(key) has an unexpected form") }
        guard result.allSatisfy({ $0 >= 0 }) else { throw error(layer, "\(key) \(result) is negative") }
        return result
    }

    private func padding(_ layer: LayerConfig) throws -> WindowGeometry.Padding {
        let text = layer.config["padding"]?.string ?? "valid"
        guard let padding = WindowGeometry.Padding(rawValue: text.lowercased()) else {
            throw error(layer, "padding '\(text)' is not supported (same, valid)")
        }
        return padding
    }

    private func image(_ layer: LayerConfig, _ shape: [Int]) throws -> (h: Int, w: Int, c: Int) {
        guard shape.count == 3 else { throw error(layer, "needs an image input (height, width, channels), got shape \(shape)") }
        if let format = layer.config["data_format"]?.string, format != "channels_last" {
            throw error(layer, "data_format \(format) is not supported (channels_last)")
        }
        return (shape[0], shape[1], shape[2])
    }

    private func window(_ layer: LayerConfig, _ input: (h: Int, w: Int, c: Int), kernel: [Int], strides: [Int]) throws -> WindowGeometry {
        if let dilation = layer.config["dilation_rate"]?.ints, dilation.contains(where: { $0 != 1 }) {
            throw error(layer, "dilation_rate \(dilation) is not supported")
        }
        let g = WindowGeometry(inputHeight: input.h, inputWidth: input.w, kernelHeight: kernel[0], kernelWidth: kernel[1],
                               strideHeight: strides[0], strideWidth: strides[1], padding: try padding(layer))
        guard g.outputHeight > 0, g.outputWidth > 0 else {
            throw error(layer, "a \(kernel[0])x\(kernel[1]) window does not fit its \(input.h)x\(input.w) input")
        }
        return g
    }

    // MARK: Layers

    private mutating func add(_ layer: LayerConfig, inputs: [Int]) throws -> Int {
        if layer.isOperation { return try addOperation(layer, inputs: inputs) }
        if let reason = Self.cannotRun[layer.className] { throw error(layer, reason) }
        guard !inputs.isEmpty else { throw error(layer, "has no input tensor gmtool can read from its inbound node") }
        let shapes = inputs.map { nodes[$0].shape }
        let shape = shapes[0]
        func node(_ operation: Operation, _ outShape: [Int], name: String? = nil, inputs nodeInputs: [Int]? = nil) -> Node {
            Node(name: name ?? layer.name, layerName: layer.name, className: layer.className, operation: operation,
                 inputs: nodeInputs ?? inputs, shape: outShape)
        }
        if let nested = layer.nestedModel {
            guard inputs.count == 1 else { throw error(layer, "takes \(inputs.count) inputs; one expected") }
            return try addModel(nested, input: inputs[0])
        }
        if Self.mergeKinds[layer.className] == nil && layer.className != "Concatenate" && inputs.count != 1 {
            throw error(layer, "takes \(inputs.count) inputs; one expected")
        }
        if let built = try addPreprocessing(layer, input: inputs[0]) { return built }
        switch layer.className {
        case "Conv2D":
            let input = try image(layer, shape)
            if let groups = layer.config["groups"]?.int, groups != 1 { throw error(layer, "groups=\(groups) is not supported") }
            guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
            let kernelSize = try ints(layer, "kernel_size")
            let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]))
            let kernel = try parameter(layer, .kernel, shape: [kernelSize[0], kernelSize[1], input.c, filters])!
            let bias = (layer.config["use_bias"]?.bool ?? true) ? try parameter(layer, .bias, shape: [filters]) : nil
            let op = ConvolutionOperation(kernel: kernel, bias: bias, geometry: g, inputChannels: input.c, outputChannels: filters)
            try attachSparse(op)
            return try withActivation(layer, node(op, [g.outputHeight, g.outputWidth, filters]))
        case "DepthwiseConv2D":
            let input = try image(layer, shape)
            let multiplier = layer.config["depth_multiplier"]?.int ?? 1
            let kernelSize = try ints(layer, "kernel_size")
            let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]))
            let kernel = try parameter(layer, .depthwiseKernel, shape: [kernelSize[0], kernelSize[1], input.c, multiplier])!
            let bias = (layer.config["use_bias"]?.bool ?? true) ? try parameter(layer, .bias, shape: [input.c * multiplier]) : nil
            let op = DepthwiseOperation(kernel: kernel, bias: bias, geometry: g, channels: input.c, multiplier: multiplier)
            return try withActivation(layer, node(op, [g.outputHeight, g.outputWidth, input.c * multiplier]))
        case "SeparableConv2D":
            let input = try image(layer, shape)
            let multiplier = layer.config["depth_multiplier"]?.int ?? 1
            guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
            let kernelSize = try ints(layer, "kernel_size")
            let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]))
            let depthwiseKernel = try parameter(layer, .depthwiseKernel, shape: [kernelSize[0], kernelSize[1], input.c, multiplier])!
            let pointwiseKernel = try parameter(layer, .pointwiseKernel, shape: [1, 1, input.c * multiplier, filters])!
            let bias = (layer.config["use_bias"]?.bool ?? true) ? try parameter(layer, .bias, shape: [filters]) : nil
            let depthwise = append(node(DepthwiseOperation(kernel: depthwiseKernel, bias: nil, geometry: g, channels: input.c,
                                                           multiplier: multiplier),
                                        [g.outputHeight, g.outputWidth, input.c * multiplier], name: "\(layer.name)/depthwise"))
            let pointwise = ConvolutionOperation(
                kernel: pointwiseKernel, bias: bias,
                geometry: WindowGeometry(inputHeight: g.outputHeight, inputWidth: g.outputWidth, kernelHeight: 1, kernelWidth: 1,
                                         strideHeight: 1, strideWidth: 1, padding: .valid),
                inputChannels: input.c * multiplier, outputChannels: filters)
            try attachSparse(pointwise)
            return try withActivation(layer, node(pointwise, [g.outputHeight, g.outputWidth, filters], inputs: [depthwise]))
        case "Dense":
            guard let units = layer.config["units"]?.int else { throw error(layer, "config has no units") }
            guard let inputWidth = shape.last else { throw error(layer, "needs an input with at least one axis") }
            let kernel = try parameter(layer, .kernel, shape: [inputWidth, units])!
            let bias = (layer.config["use_bias"]?.bool ?? true) ? try parameter(layer, .bias, shape: [units]) : nil
            let rows = shape.dropLast().reduce(1, *)
            let op = ConvolutionOperation(
                kernel: kernel, bias: bias,
                geometry: WindowGeometry(inputHeight: 1, inputWidth: 1, kernelHeight: 1, kernelWidth: 1,
                                         strideHeight: 1, strideWidth: 1, padding: .valid),
                inputChannels: inputWidth, outputChannels: units, rowsPerSample: rows)
            try attachSparse(op)
            return try withActivation(layer, node(op, Array(shape.dropLast()) + [units]))
        case "BatchNormalization":
            let axis = layer.config["axis"]?.ints ?? [-1]
            guard axis.count == 1, axis[0] == -1 || axis[0] == shape.count else {
                throw error(layer, "normalises axis \(axis); only the channel (last) axis is supported")
            }
            let channels = shape.last ?? 1
            let epsilon = Float(layer.config["epsilon"]?.double ?? 1e-3)
            let gamma = (layer.config["scale"]?.bool ?? true) ? try parameter(layer, .gamma, shape: [channels]) : nil
            let beta = (layer.config["center"]?.bool ?? true) ? try parameter(layer, .beta, shape: [channels]) : nil
            let mean = try parameter(layer, .movingMean, shape: [channels])!
            let variance = try parameter(layer, .movingVariance, shape: [channels])!
            let op = BatchNormOperation(gamma: gamma, beta: beta, movingMean: mean, movingVariance: variance, epsilon: epsilon,
                                        momentum: Float(layer.config["momentum"]?.double ?? 0.99),
                                        channels: channels, positions: shape.dropLast().reduce(1, *))
            return append(node(op, shape))
        case "ReLU":
            let maxValue = layer.config["max_value"]?.double.map(Float.init)
            let slope = Float(layer.config["negative_slope"]?.double ?? 0)
            let threshold = Float(layer.config["threshold"]?.double ?? 0)
            let count = shape.reduce(1, *)
            return append(node(ActivationOperation(kind: .relu(ReLUParameters(maxValue: maxValue, negativeSlope: slope, threshold: threshold)),
                                                   count: count, lastAxis: shape.last ?? 1), shape))
        case "LeakyReLU":
            let slope = Float(layer.config["negative_slope"]?.double ?? layer.config["alpha"]?.double ?? 0.3)
            return append(node(ActivationOperation(kind: .relu(ReLUParameters(negativeSlope: slope)),
                                                   count: shape.reduce(1, *), lastAxis: shape.last ?? 1), shape))
        case "ELU":
            let alpha = Float(layer.config["alpha"]?.double ?? 1)
            return append(node(ActivationOperation(kind: .pointwise(.elu(alpha: alpha)), count: shape.reduce(1, *),
                                                   lastAxis: shape.last ?? 1), shape))
        case "ThresholdedReLU":
            let theta = Float(layer.config["theta"]?.double ?? 1)
            return append(node(ActivationOperation(kind: .pointwise(.thresholdedReLU(theta: theta)), count: shape.reduce(1, *),
                                                   lastAxis: shape.last ?? 1), shape))
        case "Activation":
            let kind = try activationKind(try activationName(layer), layer: layer)
            return append(node(ActivationOperation(kind: kind, count: shape.reduce(1, *), lastAxis: shape.last ?? 1), shape))
        case "Softmax":
            if let axis = layer.config["axis"]?.ints, axis != [-1], axis != [shape.count] {
                throw error(layer, "softmax over axis \(axis) is not supported (last axis only)")
            }
            return append(node(ActivationOperation(kind: .softmax, count: shape.reduce(1, *), lastAxis: shape.last ?? 1), shape))
        case "ZeroPadding2D":
            let input = try image(layer, shape)
            let pads = try sides(layer, "padding", default: 1)
            let op = ZeroPadOperation(height: input.h, width: input.w, channels: input.c,
                                      top: pads[0], bottom: pads[1], left: pads[2], right: pads[3])
            return append(node(op, [input.h + pads[0] + pads[1], input.w + pads[2] + pads[3], input.c]))
        case "Cropping2D":
            let input = try image(layer, shape)
            let crops = try sides(layer, "cropping", default: 0)
            let height = input.h - crops[0] - crops[1], width = input.w - crops[2] - crops[3]
            guard height > 0, width > 0 else { throw error(layer, "crops \(crops) from a \(input.h)x\(input.w) input, leaving nothing") }
            let op = CropOperation(height: input.h, width: input.w, channels: input.c,
                                   top: crops[0], left: crops[2], outputHeight: height, outputWidth: width)
            return append(node(op, [height, width, input.c]))
        case "MaxPooling2D", "AveragePooling2D":
            let input = try image(layer, shape)
            let pool = try ints(layer, "pool_size", default: [2, 2])
            let strides = try ints(layer, "strides", default: pool)
            let g = try window(layer, input, kernel: pool, strides: strides)
            return append(node(PoolOperation(isMax: layer.className == "MaxPooling2D", geometry: g, channels: input.c),
                               [g.outputHeight, g.outputWidth, input.c]))
        case "GlobalAveragePooling2D", "GlobalMaxPooling2D":
            let input = try image(layer, shape)
            let keep = layer.config["keepdims"]?.bool ?? false
            let op = GlobalPoolOperation(isMax: layer.className == "GlobalMaxPooling2D", positions: input.h * input.w, channels: input.c)
            return append(node(op, keep ? [1, 1, input.c] : [input.c]))
        case "Flatten":
            return append(node(CopyOperation(count: shape.reduce(1, *)), [shape.reduce(1, *)]))
        case "Reshape":
            guard var target = layer.config["target_shape"]?.ints else { throw error(layer, "config has no target_shape") }
            let total = shape.reduce(1, *)
            if let unknown = target.firstIndex(of: -1) {
                let known = target.filter { $0 != -1 }.reduce(1, *)
                guard known > 0, total % known == 0 else { throw error(layer, "cannot reshape \(shape) to \(target)") }
                target[unknown] = total / known
            }
            guard target.reduce(1, *) == total else { throw error(layer, "cannot reshape \(shape) to \(target)") }
            return append(node(CopyOperation(count: total), target))
        case "Dropout":
            let rate = Float(layer.config["rate"]?.double ?? 0)
            return append(node(DropoutOperation(rate: rate, count: shape.reduce(1, *)), shape))
        case "Concatenate":
            return try addConcatenate(layer, inputs: inputs)
        case let name where Self.mergeKinds[name] != nil:
            return try addMerge(layer, kind: Self.mergeKinds[name]!, inputs: inputs)
        default:
            if let registered = layer.registeredName, registered != layer.className {
                throw error(layer, "is a custom class (registered as \(registered)), whose code is not in the file; gmtool runs built-in Keras layers only")
            }
            throw error(layer, "layer class \(layer.className) is not supported")
        }
    }
}
