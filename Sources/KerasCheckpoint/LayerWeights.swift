/// What a weight tensor is to its layer.
public enum WeightRole: Sendable, Equatable, Hashable, CustomStringConvertible {
    case kernel, bias, depthwiseKernel, pointwiseKernel
    case gamma, beta, movingMean, movingVariance
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
        default: self = .other(String(base))
        }
    }

    /// Moving statistics are updated by training but not by gradients.
    public var isTrainable: Bool { self != .movingMean && self != .movingVariance }
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
        let kernel = c["kernel_size"]?.ints.map { $0.count == 1 ? [$0[0], $0[0]] : $0 }
        switch layer.className {
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
