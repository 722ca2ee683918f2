/// What a weight tensor is to its layer.
public enum WeightRole: Sendable, Equatable, Hashable, CustomStringConvertible {
    case kernel, bias, depthwiseKernel, pointwiseKernel
    case gamma, beta, movingMean, movingVariance
    /// PReLU's slopes for negative inputs (trainable, never pruned).
    case alpha
    /// Normalization's adapted statistics and its int64 sample count (kept for compatibility).
    case mean, variance, count
    /// A weight of a layer class gmtool does not know, by the name it has in the file.
    case other(String)

    public var description: String {
        switch self {
        case .kernel: return "kernel"
        case .bias: return "bias"
        case .depthwiseKernel: return "depthwise_kernel"
        case .pointwiseKernel: return "pointwise_kernel"
        case .gamma: return "gamma"
        case .beta: return "beta"
        case .movingMean: return "moving_mean"
        case .movingVariance: return "moving_variance"
        case .alpha: return "alpha"
        case .mean: return "mean"
        case .variance: return "variance"
        case .count: return "count"
        case .other(let name): return name
        }
    }

    /// From the last component of a weight name in a file, `kernel:0`, `moving_mean`, ...
    init(fileName: String) {
        var base = Substring(fileName.split(separator: "/").last ?? Substring(fileName))
        if let colon = base.lastIndex(of: ":") { base = base[..<colon] }
        switch base {
        case "kernel": self = .kernel
        case "bias": self = .bias
        case "depthwise_kernel": self = .depthwiseKernel
        case "pointwise_kernel": self = .pointwiseKernel
        case "gamma": self = .gamma
        case "beta": self = .beta
        case "moving_mean": self = .movingMean
        case "moving_variance": self = .movingVariance
        case "alpha": self = .alpha
        case "mean": self = .mean
        case "variance": self = .variance
        case "count": self = .count
        default: self = .other(String(base))
        }
    }

    /// Moving statistics are updated by training but not by gradients; Normalization's
    /// statistics are fixed by `adapt`.
    public var isTrainable: Bool { ![.movingMean, .movingVariance, .mean, .variance, .count].contains(self) }

    /// Roles whose stored values may be integers (read as floats).
    public var mayBeInteger: Bool { self == .count }
}

/// One weight a layer class owns, with the dimensions its config fixes (nil where the size comes
/// from the layer's input). A shape of nil is a weight whose rank the config does not fix either
/// (PReLU's alpha has the input's rank, which Keras 2's config does not record): any stored shape
/// is read, and the engine checks it exactly when it builds the graph.
public struct WeightSpec: Sendable, Equatable {
    public var role: WeightRole
    public var shape: [Int?]?
    public init(role: WeightRole, shape: [Int?]?) { (self.role, self.shape) = (role, shape) }
}

/// What the checkpoint reader needs to know about layer classes: the weights Keras stores for
/// each, in Keras' order (which gives a weight its role, since Keras 3 numbers them `vars/0..n`),
/// and which of them pruning applies to. The engine's layer registry (`LayerRegistry.standard` in
/// `Sources/Engine/Layers`) is the one catalog gmtool uses: a class is known here exactly when the
/// engine can build it, so there is one list of layers.
public protocol LayerCatalog: Sendable {
    /// The weights Keras stores for `layer`, in its order, or nil for a class the catalog does
    /// not know (its stored weights are then taken as they are, roles from their names, none
    /// prunable).
    func weightSpecs(for layer: LayerConfig) -> [WeightSpec]?
    /// The roles of `className`'s weights that pruning applies to (empty for an unknown class).
    func prunableRoles(className: String) -> Set<WeightRole>
}
