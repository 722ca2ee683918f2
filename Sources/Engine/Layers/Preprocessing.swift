import KerasCheckpoint
import ModelState
import NeuralKernels

// The preprocessing and augmentation family: Rescaling (x * scale + offset), Normalization,
// Resizing and CenterCrop (tf.image.resize's bilinear and nearest, and their adjoints), the random
// augmentation layers and the noise/regularization layers, which Keras applies only in
// training and which are the identity at inference (eval, grad, prune), Dropout, and the layers
// that cannot run (Lambda, SlicingOpLambda), refused with the reason (Keras 2's TFOpLambda
// arithmetic runs, `addOperation` in Merging.swift).

enum Preprocessing: LayerFamily {
    /// Layers that are the identity at inference and do something else in training, with what
    /// they do. `train` refuses a model that has one (`Network.trainingOnlyLayers`) rather than
    /// train it without.
    static let inferenceIdentities: [String: String] = [
        "RandomFlip": "a random augmentation", "RandomRotation": "a random augmentation",
        "RandomZoom": "a random augmentation", "RandomTranslation": "a random augmentation",
        "RandomContrast": "a random augmentation", "RandomBrightness": "a random augmentation",
        "RandomHeight": "a random augmentation", "RandomWidth": "a random augmentation",
        "SpatialDropout2D": "dropout", "AlphaDropout": "dropout", "GaussianDropout": "multiplicative noise",
        "GaussianNoise": "additive noise", "ActivityRegularization": "a loss term",
    ]

    static let layers: [String: LayerDefinition] = inferenceIdentities.mapValues { effect in
        LayerDefinition { builder, layer, inputs in
            builder.trainingOnlyLayers.append("\(layer.name) (\(layer.className)) is \(effect) that Keras applies only in training")
            return builder.addIdentity(layer, input: inputs[0])
        }
    }.merging([
        "RandomCrop": LayerDefinition { builder, layer, inputs in try builder.addRandomCrop(layer, input: inputs[0]) },
        "Rescaling": LayerDefinition { builder, layer, inputs in try builder.addRescaling(layer, input: inputs[0]) },
        "Resizing": LayerDefinition { builder, layer, inputs in try builder.addResizing(layer, input: inputs[0]) },
        "CenterCrop": LayerDefinition { builder, layer, inputs in try builder.addCenterCrop(layer, input: inputs[0]) },
        "Normalization": LayerDefinition(
            weights: { layer in
                // Statistics given in the config are constants, not weights.
                if let mean = layer.config["mean"], mean != .null { return [] }
                return [WeightSpec(role: .mean, shape: [nil]), WeightSpec(role: .variance, shape: [nil]),
                        WeightSpec(role: .count, shape: [])]
            },
            build: { builder, layer, inputs in try builder.addNormalization(layer, input: inputs[0]) }),
        // Keras' Dropout: the identity at inference, a mask in training (`DropoutOperation`).
        "Dropout": LayerDefinition { builder, layer, inputs in
            let shape = builder.nodes[inputs[0]].shape
            let rate = Float(layer.config["rate"]?.double ?? 0)
            return builder.append(builder.node(layer, DropoutOperation(rate: rate, count: shape.reduce(1, *)), shape, inputs: inputs))
        },
    ]) { _, _ in preconditionFailure("a preprocessing layer is declared twice") }

    /// Layers that cannot run outside Python, with the reason.
    static let refused: [String: String] = [
        "Lambda": "runs Python code saved with the model, which gmtool cannot run; rebuild the model with built-in Keras layers",
        "SlicingOpLambda": "is tensor slicing recorded from Python code, which gmtool cannot run; rebuild the model with built-in Keras layers",
    ]
}

extension GraphBuilder {
    /// A node that passes its input through (a layer that is the identity at inference).
    mutating func addIdentity(_ layer: LayerConfig, input: Int) -> Int {
        let shape = nodes[input].shape
        return append(node(layer, CopyOperation(count: shape.reduce(1, *)), shape, inputs: [input]))
    }

    mutating func addRandomCrop(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        // At inference Keras resizes (Keras 2) or centre-crops (Keras 3) to the target size;
        // where that is the input's size, both are the identity.
        let target = [layer.config["height"]?.int, layer.config["width"]?.int]
        guard shape.count == 3, target == [shape[0], shape[1]] else {
            throw error(layer, "crops to \(target.map { $0.map(String.init) ?? "?" }.joined(separator: "x")) at inference, which gmtool does not do (only a crop to the input's own size \(shape.prefix(2).map(String.init).joined(separator: "x")))")
        }
        trainingOnlyLayers.append("\(layer.name) (RandomCrop) is a random augmentation that Keras applies only in training")
        return addIdentity(layer, input: input)
    }

    /// Resizing's or CenterCrop's target size, (height, width), both positive.
    func targetSize(_ layer: LayerConfig) throws -> (height: Int, width: Int) {
        guard let height = layer.config["height"]?.int, let width = layer.config["width"]?.int else {
            throw error(layer, "config has no integer height and width")
        }
        guard height > 0, width > 0 else { throw error(layer, "target size \(height)x\(width) is not positive") }
        return (height, width)
    }

    /// Keras' Resizing: tf.image.resize to (height, width), bilinear or nearest (half-pixel
    /// centres, no antialiasing), after Keras' crop to the target's aspect ratio with
    /// crop_to_aspect_ratio.
    mutating func addResizing(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let target = try targetSize(layer)
        let interpolation = layer.config["interpolation"]?.string ?? "bilinear"
        guard interpolation == "bilinear" || interpolation == "nearest" else {
            throw error(layer, "interpolation \"\(interpolation)\" is not supported (\"bilinear\" and \"nearest\")")
        }
        if layer.config["antialias"]?.bool == true { throw error(layer, "antialias=True is not supported") }
        if layer.config["pad_to_aspect_ratio"]?.bool == true { throw error(layer, "pad_to_aspect_ratio=True is not supported") }
        let geometry = ResizeGeometry(height: input.h, width: input.w, channels: input.c, outHeight: target.height,
                                      outWidth: target.width, cropToAspectRatio: layer.config["crop_to_aspect_ratio"]?.bool ?? false)
        return addResize(layer, geometry, nearest: interpolation == "nearest", input: inputNode)
    }

    /// Keras' CenterCrop: the centred (height, width) window (its corner at half the difference,
    /// rounded down); where the target is larger than the input on either axis, Keras'
    /// `smart_resize` instead (the crop to the target's aspect ratio, then bilinear resizing), as
    /// tf_keras and Keras 3 both do.
    mutating func addCenterCrop(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let target = try targetSize(layer)
        guard target.height <= input.h, target.width <= input.w else {
            let geometry = ResizeGeometry(height: input.h, width: input.w, channels: input.c, outHeight: target.height,
                                          outWidth: target.width, cropToAspectRatio: true)
            return addResize(layer, geometry, nearest: false, input: inputNode)
        }
        let op = CropOperation(height: input.h, width: input.w, channels: input.c, top: (input.h - target.height) / 2,
                               left: (input.w - target.width) / 2, outputHeight: target.height, outputWidth: target.width)
        return append(node(layer, op, [target.height, target.width, input.c], inputs: [inputNode]))
    }

    private mutating func addResize(_ layer: LayerConfig, _ geometry: ResizeGeometry, nearest: Bool, input: Int) -> Int {
        let operation: Operation = nearest
            ? GatherOperation(sources: resizeNearestSources(geometry), inputCount: geometry.height * geometry.width * geometry.channels)
            : ResizeBilinearOperation(geometry: geometry)
        return append(node(layer, operation, [geometry.outHeight, geometry.outWidth, geometry.channels], inputs: [input]))
    }

    mutating func addRescaling(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        let channels = shape.last ?? 1
        func values(_ key: String, default value: Float) throws -> [Float] {
            guard let raw = layer.config[key], raw != .null else { return [value] }
            if let number = raw.double { return [Float(number)] }
            if let list = raw.array?.compactMap(\.double), list.count == raw.array?.count,
               list.count == 1 || list.count == channels {
                return list.map(Float.init)
            }
            throw error(layer, "\(key) must be a number or a list of \(channels) numbers (one per channel)")
        }
        let operation = RescalingOperation(scale: try values("scale", default: 1), offset: try values("offset", default: 0),
                                           count: shape.reduce(1, *), channels: channels)
        return append(node(layer, operation, shape, inputs: [input]))
    }

    /// Keras' Normalization over the last axis: adapted statistics from the file (mean, variance
    /// and the int64 count, which only records how many samples `adapt` saw), or constants from
    /// the config.
    mutating func addNormalization(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        let channels = shape.last ?? 1
        let axis = layer.config["axis"]
        let lastAxis = axis == nil || axis?.int == -1 || axis?.ints == [-1] || axis?.ints == [shape.count] || axis?.int == shape.count
        guard lastAxis else { throw error(layer, "normalizes over axis \(axis.map { "\($0)" } ?? "None"); gmtool supports the last axis (-1) only") }
        let invert = layer.config["invert"]?.bool ?? false
        let statistics: NormalizationOperation.Statistics
        if let given = layer.config["mean"], given != .null {
            func constants(_ key: String) throws -> [Float] {
                let raw = layer.config[key]
                if let number = raw?.double { return Array(repeating: Float(number), count: channels) }
                if let list = raw?.array?.compactMap(\.double), list.count == channels, raw?.array?.count == channels {
                    return list.map(Float.init)
                }
                throw error(layer, "\(key) must be a number or a list of \(channels) numbers")
            }
            statistics = .constants(mean: try constants("mean"), variance: try constants("variance"))
        } else {
            let mean = try parameter(layer, .mean, shape: [channels])!
            let variance = try parameter(layer, .variance, shape: [channels])!
            _ = try parameter(layer, .count, shape: [])
            statistics = .adapted(mean: mean, variance: variance)
        }
        let operation = NormalizationOperation(statistics: statistics, invert: invert, count: shape.reduce(1, *), channels: channels)
        return append(Node(name: layer.name, layerName: layer.name, className: layer.className,
                           operation: operation, inputs: [input], shape: shape))
    }
}

/// y = (x - mean) / max(sqrt(variance), 1e-7) per channel, or with `invert`
/// y = mean + x * max(sqrt(variance), 1e-7), in TensorFlow's float32 operation order (Keras 2 and
/// 3 alike; 1e-7 is Keras' backend epsilon).
final class NormalizationOperation: Operation {
    enum Statistics {
        case adapted(mean: Parameter, variance: Parameter)
        case constants(mean: [Float], variance: [Float])
    }
    let statistics: Statistics
    let invert: Bool
    let count: Int, channels: Int
    private(set) var mean: [Float] = []
    private(set) var scale: [Float] = []

    init(statistics: Statistics, invert: Bool, count: Int, channels: Int) {
        (self.statistics, self.invert, self.count, self.channels) = (statistics, invert, count, channels)
        parametersChanged()
    }

    var parameters: [Parameter] {
        if case .adapted(let mean, let variance) = statistics { return [mean, variance] }
        return []
    }

    func parametersChanged() {
        let variance: [Float]
        switch statistics {
        case .adapted(let m, let v): (mean, variance) = (Array(m.values), Array(v.values))
        case .constants(let m, let v): (mean, variance) = (m, v)
        }
        scale = variance.map { max($0.squareRoot(), 1e-7) }
    }

    func forward(_ c: PassContext) {
        let x = c.inputs[0], y = c.output
        for i in 0..<(c.batch * count) {
            let channel = i % channels
            y[i] = invert ? mean[channel] + x[i] * scale[channel] : (x[i] - mean[channel]) / scale[channel]
        }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        for i in 0..<(c.batch * count) {
            let channel = i % channels
            dx[i] += invert ? c.outputGradient[i] * scale[channel] : c.outputGradient[i] / scale[channel]
        }
    }
}

/// Keras' Rescaling: y = x * scale + offset (two float32 roundings, as TensorFlow's multiply then
/// add), scale and offset each one number or one per channel.
final class RescalingOperation: Operation {
    let scale: [Float], offset: [Float]
    let count: Int, channels: Int

    init(scale: [Float], offset: [Float], count: Int, channels: Int) {
        (self.scale, self.offset, self.count, self.channels) = (scale, offset, count, channels)
    }

    func forward(_ c: PassContext) {
        let x = c.inputs[0], y = c.output
        for i in 0..<(c.batch * count) {
            let channel = i % channels
            let product = x[i] * scale[scale.count == 1 ? 0 : channel]
            y[i] = product + offset[offset.count == 1 ? 0 : channel]
        }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        for i in 0..<(c.batch * count) { dx[i] += c.outputGradient[i] * scale[scale.count == 1 ? 0 : i % channels] }
    }
}

/// tf.image.resize(..., "bilinear") of each image's window (`resizeBilinearForward`); the
/// backward is its adjoint (`resizeBilinearBackward`, TensorFlow's ResizeBilinearGrad).
final class ResizeBilinearOperation: Operation {
    let geometry: ResizeGeometry
    init(geometry: ResizeGeometry) { self.geometry = geometry }
    func forward(_ c: PassContext) { resizeBilinearForward(output: c.output, input: c.inputs[0], batch: c.batch, geometry) }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        resizeBilinearBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch, geometry)
    }
}
