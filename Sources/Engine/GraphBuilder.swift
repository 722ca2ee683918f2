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
    /// For a convolution: the inference BatchNorm (or BatchNorm + ReLU) node that reads it alone,
    /// whose forward it runs as it stores its output (`GraphBuilder.foldBatchNormsIntoStores`);
    /// outside training passes that node's own forward is skipped.
    var epilogue: Int? = nil
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
    /// The layer classes, each declared once in its family's file (`Sources/Engine/Layers`): the
    /// registry the checkpoint was read with (`LayerRegistry.standard` unless it was read with
    /// another catalog, which the engine cannot build from).
    let registry: LayerRegistry

    init(model: Model) {
        self.model = model
        checkpoint = model.checkpoint
        source = checkpoint.path
        registry = checkpoint.catalog as? LayerRegistry ?? .standard
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

    /// Fuses each BatchNormalization or same-shape Add whose only consumer is a ReLU into one node
    /// (`BatchNormReLUOperation`, `AddReLUOperation`: the pairs are most of MobileNet's and
    /// ResNet's elementwise traffic), in the ReLU's place, then drops the nodes that became unused.
    /// Returns the new indices of `keep`.
    mutating func fuseReLUs(keep: [Int]) -> [Int] {
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        var dead = Set<Int>()
        for index in nodes.indices {
            guard let activation = nodes[index].operation as? ActivationOperation, case .relu(let p) = activation.kind,
                  nodes[index].inputs.count == 1 else { continue }
            let source = nodes[index].inputs[0]
            guard consumers[source] == 1, !keep.contains(source) else { continue }
            if let batchNorm = nodes[source].operation as? BatchNormOperation {
                nodes[index].operation = BatchNormReLUOperation(batchNorm: batchNorm, relu: p)
            } else if let add = nodes[source].operation as? AddOperation {
                nodes[index].operation = AddReLUOperation(count: add.count, relu: p)
            } else {
                continue
            }
            nodes[index].inputs = nodes[source].inputs
            nodes[index].name = "\(nodes[source].name)+\(nodes[index].name)"
            dead.insert(source)
        }
        return dropping(dead, keep: keep)
    }

    /// In a sparse export run with sparse kernels (`--kernels auto` or `sparse`; such networks only
    /// evaluate), fuses each BatchNormalization + ReLU (after `fuseReLUs`) that is the only
    /// consumer of a convolution with a sparse kernel attached, or of a depthwise convolution, into
    /// it (`epilogue`): the pass over the output is then done while the kernel's outputs are in
    /// registers. Returns the new indices of `keep`.
    mutating func fuseSparseEpilogues(keep: [Int]) -> [Int] {
        guard kernels != .dense, checkpoint.layout == .sparseExport else { return keep }
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        var dead = Set<Int>()
        for index in nodes.indices {
            guard let batchNormReLU = nodes[index].operation as? BatchNormReLUOperation, nodes[index].inputs.count == 1 else { continue }
            let source = nodes[index].inputs[0]
            guard consumers[source] == 1, !keep.contains(source) else { continue }
            let bn = batchNormReLU.batchNorm
            if let depthwise = nodes[source].operation as? DepthwiseOperation, depthwise.epilogue == nil,
               bn.channels == depthwise.channels * depthwise.multiplier,
               bn.positions == depthwise.geometry.outputHeight * depthwise.geometry.outputWidth {
                depthwise.epilogue = batchNormReLU
            } else if let convolution = nodes[source].operation as? ConvolutionOperation, convolution.sparse != nil,
                      convolution.epilogue == nil, bn.channels == convolution.outputChannels,
                      bn.positions == convolution.rowsPerImage {
                convolution.epilogue = batchNormReLU
                convolution.epilogueNode = nodes[index].name
            } else {
                continue
            }
            // The convolution's node (name and class, as reports name it) in the consumer's place.
            nodes[index] = Node(name: nodes[source].name, layerName: nodes[source].layerName, className: nodes[source].className,
                                operation: nodes[source].operation, inputs: nodes[source].inputs, shape: nodes[index].shape)
            dead.insert(source)
        }
        return dropping(dead, keep: keep)
    }

    /// Folds each ZeroPadding2D whose only consumer is a depthwise convolution into that
    /// convolution's geometry (the padding becomes its padTop/padLeft and a smaller input, so the
    /// kernel skips the taps outside, which read zeros before): one copy pass less, the same sums
    /// (a skipped tap added value * 0 = 0). Returns the new indices of `keep`.
    mutating func foldZeroPadding(keep: [Int]) -> [Int] {
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        var dead = Set<Int>()
        for index in nodes.indices {
            guard let depthwise = nodes[index].operation as? DepthwiseOperation, nodes[index].inputs.count == 1 else { continue }
            let source = nodes[index].inputs[0]
            guard let pad = nodes[source].operation as? ZeroPadOperation, consumers[source] == 1, !keep.contains(source),
                  pad.channels == depthwise.channels else { continue }
            var g = depthwise.geometry
            g.inputHeight = pad.height
            g.inputWidth = pad.width
            g.padTop += pad.top
            g.padLeft += pad.left
            nodes[index].operation = DepthwiseOperation(kernel: depthwise.kernel, bias: depthwise.bias, geometry: g,
                                                        channels: depthwise.channels, multiplier: depthwise.multiplier)
            nodes[index].inputs = nodes[source].inputs
            dead.insert(source)
        }
        return dropping(dead, keep: keep)
    }

    /// Removes the nodes `dead` (each folded into its consumer) and renumbers the inputs; returns
    /// the new indices of `keep`.
    private mutating func dropping(_ dead: Set<Int>, keep: [Int]) -> [Int] {
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

    /// Marks each convolution whose only consumer is a BatchNorm (or fused BatchNorm + ReLU) node
    /// reading it alone: outside training passes the convolution applies the BatchNorm to its
    /// output rows as it stores them (`Node.epilogue`, `ChannelAffineEpilogue`), the same float
    /// operations as the two nodes apart. In training passes BatchNorm needs the batch's
    /// statistics first and runs on its own. Call after `fuseReLUs` and `fuseSparseEpilogues`.
    mutating func foldBatchNormsIntoStores(keep: [Int]) {
        var consumers = [Int](repeating: 0, count: nodes.count)
        for node in nodes { for input in node.inputs { consumers[input] += 1 } }
        for index in nodes.indices where nodes[index].inputs.count == 1 {
            let operation = nodes[index].operation
            guard operation is BatchNormOperation || operation is BatchNormReLUOperation else { continue }
            let source = nodes[index].inputs[0]
            // Not one that already applies a sparse export's BatchNorm + ReLU (`fuseSparseEpilogues`).
            guard let convolution = nodes[source].operation as? ConvolutionOperation, convolution.epilogue == nil,
                  consumers[source] == 1, !keep.contains(source) else { continue }
            nodes[source].epilogue = index
        }
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

    /// Lets `operation` run from the sparse export's CSR kernel (eval --kernels). A grouped
    /// convolution stays dense: its CSR columns index one group's channels (see
    /// `ConvolutionOperation.groups`).
    func attachSparse(_ operation: ConvolutionOperation) throws {
        guard kernels != .dense, operation.groups == 1, let matrix = try checkpoint.sparseKernel(operation.kernel.weight) else { return }
        operation.sparse = SparseKernel(matrix)
        operation.kernels = kernels
    }

    /// The config's list `key` with `count` entries (one entry means all of them), each positive
    /// (or at least 0 when `positive` is false).
    func ints(_ layer: LayerConfig, _ key: String, default value: [Int]? = nil, count: Int = 2, positive: Bool = true) throws -> [Int] {
        guard let raw = layer.config[key], raw != .null else {
            if let value { return value }
            throw error(layer, "config has no \(key)")
        }
        guard let list = raw.ints else { throw error(layer, "config \(key) is not a list of integers") }
        let values = list.count == 1 ? Array(repeating: list[0], count: count) : list
        guard values.count == count, values.allSatisfy({ positive ? $0 > 0 : $0 >= 0 }) else {
            throw error(layer, "config \(key) \(list) is not \(count) \(positive ? "positive" : "non-negative") integers")
        }
        return values
    }

    /// The layer's `padding`; `causal` only where `allowsCausal` (Conv1D).
    func padding(_ layer: LayerConfig, allowsCausal: Bool = false) throws -> WindowGeometry.Padding {
        let text = layer.config["padding"]?.string ?? "valid"
        guard let padding = WindowGeometry.Padding(rawValue: text.lowercased()), padding != .causal || allowsCausal else {
            throw error(layer, "padding '\(text)' is not supported (\(allowsCausal ? "same, valid, causal" : "same, valid"))")
        }
        return padding
    }

    func image(_ layer: LayerConfig, _ shape: [Int]) throws -> (h: Int, w: Int, c: Int) {
        guard shape.count == 3 else { throw error(layer, "needs an image input (height, width, channels), got shape \(shape)") }
        try channelsLast(layer)
        return (shape[0], shape[1], shape[2])
    }

    /// A 1-D layer's input (steps, channels), as a height-1 image.
    func sequence(_ layer: LayerConfig, _ shape: [Int]) throws -> (h: Int, w: Int, c: Int) {
        guard shape.count == 2 else { throw error(layer, "needs a sequence input (steps, channels), got shape \(shape)") }
        try channelsLast(layer)
        return (1, shape[0], shape[1])
    }

    func channelsLast(_ layer: LayerConfig) throws {
        if let format = layer.config["data_format"]?.string, format != "channels_last" {
            throw error(layer, "data_format \(format) is not supported (channels_last)")
        }
    }

    /// The layer's window over `input`. `dilation` is the convolution's dilation_rate (height,
    /// width); a layer that passes none refuses a dilation_rate other than 1 in its config
    /// (pooling and Conv2DTranspose have none). `padding` defaults to the config's.
    func window(_ layer: LayerConfig, _ input: (h: Int, w: Int, c: Int), kernel: [Int], strides: [Int],
                dilation: [Int]? = nil, padding: WindowGeometry.Padding? = nil) throws -> WindowGeometry {
        if dilation == nil, let rate = layer.config["dilation_rate"]?.ints, rate.contains(where: { $0 != 1 }) {
            throw error(layer, "dilation_rate \(rate) is not supported for \(layer.className)")
        }
        let d = dilation ?? [1, 1]
        let g = WindowGeometry(inputHeight: input.h, inputWidth: input.w, kernelHeight: kernel[0], kernelWidth: kernel[1],
                               strideHeight: strides[0], strideWidth: strides[1], padding: try padding ?? self.padding(layer),
                               dilationHeight: d[0], dilationWidth: d[1])
        guard g.outputHeight > 0, g.outputWidth > 0 else {
            // A 1-D layer's window is 1 x k over a 1 x steps input.
            let oneDimensional = input.h == 1 && kernel[0] == 1
            let size = oneDimensional ? "\(kernel[1])" : "\(kernel[0])x\(kernel[1])"
            let dilated = d == [1, 1] ? "" : " dilated by \(oneDimensional ? [d[1]] : d)"
            throw error(layer, "a \(size) window\(dilated) does not fit its \(oneDimensional ? "\(input.w)" : "\(input.h)x\(input.w)") input")
        }
        return g
    }

    // MARK: Layers

    /// A node of `layer` (named after it unless `name` says otherwise).
    func node(_ layer: LayerConfig, _ operation: Operation, _ shape: [Int], inputs: [Int], name: String? = nil) -> Node {
        Node(name: name ?? layer.name, layerName: layer.name, className: layer.className, operation: operation,
             inputs: inputs, shape: shape)
    }

    /// Appends `layer` reading nodes `inputs`, through its class's `LayerDefinition` in the
    /// registry; returns its output node.
    private mutating func add(_ layer: LayerConfig, inputs: [Int]) throws -> Int {
        if layer.isOperation { return try addOperation(layer, inputs: inputs) }
        if let reason = registry.refusals[layer.className] { throw error(layer, reason) }
        guard !inputs.isEmpty else { throw error(layer, "has no input tensor gmtool can read from its inbound node") }
        if let nested = layer.nestedModel {
            guard inputs.count == 1 else { throw error(layer, "takes \(inputs.count) inputs; one expected") }
            return try addModel(nested, input: inputs[0])
        }
        let definition = registry.definitions[layer.className]
        if definition?.readsSeveralInputs != true && inputs.count != 1 {
            throw error(layer, "takes \(inputs.count) inputs; one expected")
        }
        guard let definition else {
            if let registered = layer.registeredName, registered != layer.className {
                throw error(layer, "is a custom class (registered as \(registered)), whose code is not in the file; gmtool runs built-in Keras layers only")
            }
            throw error(layer, "layer class \(layer.className) is not supported")
        }
        return try definition.build(&self, layer, inputs)
    }
}
