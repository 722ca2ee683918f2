/// What a weight tensor is to its layer.
public enum WeightRole: Sendable, Equatable, Hashable, CustomStringConvertible {
    case kernel, bias, depthwiseKernel, pointwiseKernel
    case gamma, beta, movingMean, movingVariance
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

/// The weights a layer class owns, in the order Keras stores them, with the dimensions its config
/// fixes (nil where the size comes from the layer's input).
struct WeightSpec {
    var role: WeightRole
    var shape: [Int?]
}

enum LayerWeights {
    /// Layer classes whose kernels gmtool prunes.
    static let prunableRoles: [String: Set<WeightRole>] = [
        "Conv2D": [.kernel], "Conv1D": [.kernel], "Conv3D": [.kernel], "Conv2DTranspose": [.kernel],
        "DepthwiseConv2D": [.depthwiseKernel, .kernel],
        "SeparableConv2D": [.depthwiseKernel, .pointwiseKernel],
        "Dense": [.kernel],
    ]

    /// The weight list Keras stores for `layer`, or nil for a class gmtool does not know.
    static func specs(for layer: LayerConfig) -> [WeightSpec]? {
        let c = layer.config
        let useBias = c["use_bias"]?.bool ?? true
        // Keras writes kernel_size with one entry per spatial axis: 1 for Conv1D, 3 for Conv3D.
        let spatialAxes = ["Conv1D": 1, "Conv3D": 3][layer.className] ?? 2
        let kernel = c["kernel_size"]?.ints.map { $0.count == 1 ? Array(repeating: $0[0], count: spatialAxes) : $0 }
        switch layer.className {
        case "Normalization":
            // Statistics given in the config are constants, not weights.
            if let mean = c["mean"], mean != .null { return [] }
            return [WeightSpec(role: .mean, shape: [nil]), WeightSpec(role: .variance, shape: [nil]),
                    WeightSpec(role: .count, shape: [])]
        case "Conv2D", "Conv1D", "Conv3D":
            let filters = c["filters"]?.int
            let size: [Int?] = kernel.map { $0.map { Optional($0) } } ?? [nil, nil]
            var specs = [WeightSpec(role: .kernel, shape: size + [nil, filters])]
            if useBias { specs.append(WeightSpec(role: .bias, shape: [filters])) }
            return specs
        case "DepthwiseConv2D":
            let size: [Int?] = kernel.map { $0.map { Optional($0) } } ?? [nil, nil]
            var specs = [WeightSpec(role: .depthwiseKernel, shape: size + [nil, c["depth_multiplier"]?.int ?? 1])]
            if useBias { specs.append(WeightSpec(role: .bias, shape: [nil])) }
            return specs
        case "SeparableConv2D":
            let size: [Int?] = kernel.map { $0.map { Optional($0) } } ?? [nil, nil]
            let filters = c["filters"]?.int
            var specs = [
                WeightSpec(role: .depthwiseKernel, shape: size + [nil, c["depth_multiplier"]?.int ?? 1]),
                WeightSpec(role: .pointwiseKernel, shape: [1, 1, nil, filters]),
            ]
            if useBias { specs.append(WeightSpec(role: .bias, shape: [filters])) }
            return specs
        case "Dense":
            let units = c["units"]?.int
            var specs = [WeightSpec(role: .kernel, shape: [nil, units])]
            if useBias { specs.append(WeightSpec(role: .bias, shape: [units])) }
            return specs
        case "BatchNormalization":
            var specs: [WeightSpec] = []
            if c["scale"]?.bool ?? true { specs.append(WeightSpec(role: .gamma, shape: [nil])) }
            if c["center"]?.bool ?? true { specs.append(WeightSpec(role: .beta, shape: [nil])) }
            specs.append(WeightSpec(role: .movingMean, shape: [nil]))
            specs.append(WeightSpec(role: .movingVariance, shape: [nil]))
            return specs
        case "InputLayer", "ReLU", "Activation", "ZeroPadding2D", "MaxPooling2D", "AveragePooling2D",
             "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Reshape", "Dropout", "Add",
             "Concatenate", "Softmax", "LeakyReLU", "Multiply", "Subtract", "Average", "Maximum",
             "Minimum", "SpatialDropout2D", "Cropping2D", "UpSampling2D", "Permute", "Rescaling",
             "ELU", "ThresholdedReLU", "GaussianNoise", "GaussianDropout", "ActivityRegularization":
            return []
        default:
            return nil
        }
    }
}
