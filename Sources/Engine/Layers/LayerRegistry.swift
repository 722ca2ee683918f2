import KerasCheckpoint

// The layer registry: every Keras layer class gmtool runs is declared once, in the file of its
// family in this folder, with the weights Keras stores for it and how it joins the graph. The
// checkpoint reader (through `LayerCatalog`), `stats`, the pruner's prunable set, the sparse
// export and `GraphBuilder` all read these declarations; a class that is not here is unknown to
// all of them.

/// One Keras layer class: its weights and how it joins the graph.
struct LayerDefinition: Sendable {
    /// The weights Keras stores for a layer of this class with this config, in Keras' order, with
    /// the dimensions the config fixes (nil where the input decides). The checkpoint reader takes
    /// each stored weight's role from its position here and checks its shape against it.
    var weights: @Sendable (LayerConfig) -> [WeightSpec]
    /// The roles pruning applies to.
    var prunable: Set<WeightRole> = []
    /// Whether the layer reads several tensors (the merging layers); every other layer reads one.
    var readsSeveralInputs = false
    /// Appends the layer's nodes, reading node indices `inputs`, and returns its output node.
    /// Each weight is taken with `GraphBuilder.parameter`, which checks its exact shape.
    var build: @Sendable (inout GraphBuilder, LayerConfig, _ inputs: [Int]) throws -> Int

    /// A layer without weights.
    init(readsSeveralInputs: Bool = false, build: @escaping @Sendable (inout GraphBuilder, LayerConfig, _ inputs: [Int]) throws -> Int) {
        self.init(weights: { _ in [] }, readsSeveralInputs: readsSeveralInputs, build: build)
    }

    init(weights: @escaping @Sendable (LayerConfig) -> [WeightSpec], prunable: Set<WeightRole> = [], readsSeveralInputs: Bool = false,
         build: @escaping @Sendable (inout GraphBuilder, LayerConfig, _ inputs: [Int]) throws -> Int) {
        (self.weights, self.prunable, self.readsSeveralInputs, self.build) = (weights, prunable, readsSeveralInputs, build)
    }
}

/// A family of layers, declared in one file of `Sources/Engine/Layers`.
protocol LayerFamily {
    /// The family's layer classes, by Keras class name.
    static var layers: [String: LayerDefinition] { get }
    /// Classes the family cannot run, with the reason `GraphBuilder` gives when it refuses one.
    static var refused: [String: String] { get }
}

extension LayerFamily {
    static var refused: [String: String] { [:] }
}

/// Every layer family, merged by class name: the catalog the checkpoint reader is given and the
/// table `GraphBuilder` dispatches on.
public struct LayerRegistry: LayerCatalog {
    let definitions: [String: LayerDefinition]
    let refusals: [String: String]

    /// The families gmtool runs.
    public static let standard = LayerRegistry(families: [
        Convolutions.self, Depthwise.self, Normalization.self, Activations.self, Pooling.self,
        Reshaping.self, Merging.self, Preprocessing.self,
    ])

    init(families: [any LayerFamily.Type]) {
        var definitions: [String: LayerDefinition] = [:], refusals: [String: String] = [:]
        for family in families {
            definitions.merge(family.layers) { _, _ in preconditionFailure("a layer class is declared by two families") }
            refusals.merge(family.refused) { _, _ in preconditionFailure("a layer class is refused by two families") }
        }
        precondition(Set(definitions.keys).isDisjoint(with: refusals.keys), "a layer class is both declared and refused")
        (self.definitions, self.refusals) = (definitions, refusals)
    }

    public func weightSpecs(for layer: LayerConfig) -> [WeightSpec]? { definitions[layer.className]?.weights(layer) }

    public func prunableRoles(className: String) -> Set<WeightRole> { definitions[className]?.prunable ?? [] }
}

extension Checkpoint {
    /// Opens and checks a checkpoint with the layers gmtool runs (`LayerRegistry.standard`).
    /// `config` supplies the architecture for weights-only files.
    public static func open(_ path: String, config: ModelConfig? = nil) throws -> Checkpoint {
        try open(path, config: config, layers: LayerRegistry.standard)
    }
}

/// Config readings several families share.
enum LayerSpecs {
    /// `use_bias`, true unless the config says otherwise.
    static func usesBias(_ layer: LayerConfig) -> Bool { layer.config["use_bias"]?.bool ?? true }

    /// A 2-D window's `kernel_size` as the spec's leading dimensions (one entry means both axes;
    /// nil where the config does not say).
    static func kernelSize(_ layer: LayerConfig) -> [Int?] {
        guard let size = layer.config["kernel_size"]?.ints else { return [nil, nil] }
        return (size.count == 1 ? [size[0], size[0]] : size).map { Optional($0) }
    }

    /// A 1-D window's `kernel_size` as the spec's leading dimension (Conv1D's kernel is
    /// (k, in, out)).
    static func kernelSize1D(_ layer: LayerConfig) -> [Int?] {
        guard let size = layer.config["kernel_size"]?.ints, size.count == 1 else { return [nil] }
        return [size[0]]
    }
}
