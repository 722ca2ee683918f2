import KerasCheckpoint
import NeuralKernels

/// The layers that move values without arithmetic: InputLayer, Flatten and Reshape (a copy with
/// a new shape; NHWC is row-major, as Keras' reshape), ZeroPadding2D and Cropping2D (one reading
/// of their sides, `sides`), UpSampling2D (nearest only: each cell repeated `size` times), Permute (the per-sample axes
/// reordered; `dims` counts them from 1, as Keras).
enum Reshaping: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        // The graph walk joins a model's InputLayer to its input node itself (`GraphBuilder.build`
        // and `addModel`); applied to a tensor, it is that tensor.
        "InputLayer": LayerDefinition { _, _, inputs in inputs[0] },
        "Flatten": LayerDefinition { builder, layer, inputs in
            let count = builder.nodes[inputs[0]].count
            return builder.append(builder.node(layer, CopyOperation(count: count), [count], inputs: inputs))
        },
        "Reshape": LayerDefinition { builder, layer, inputs in try builder.addReshape(layer, input: inputs[0]) },
        "ZeroPadding2D": LayerDefinition { builder, layer, inputs in try builder.addZeroPadding(layer, input: inputs[0]) },
        "Cropping2D": LayerDefinition { builder, layer, inputs in try builder.addCropping(layer, input: inputs[0]) },
        "UpSampling2D": LayerDefinition { builder, layer, inputs in try builder.addUpSampling(layer, input: inputs[0]) },
        "Permute": LayerDefinition { builder, layer, inputs in try builder.addPermute(layer, input: inputs[0]) },
    ]
}

extension GraphBuilder {
    mutating func addReshape(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        guard var target = layer.config["target_shape"]?.ints else { throw error(layer, "config has no target_shape") }
        let total = shape.reduce(1, *)
        if let unknown = target.firstIndex(of: -1) {
            let known = target.filter { $0 != -1 }.reduce(1, *)
            guard known > 0, total % known == 0 else { throw error(layer, "cannot reshape \(shape) to \(target)") }
            target[unknown] = total / known
        }
        guard target.reduce(1, *) == total else { throw error(layer, "cannot reshape \(shape) to \(target)") }
        return append(node(layer, CopyOperation(count: total), target, inputs: [input]))
    }

    mutating func addZeroPadding(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let pads = try sides(layer, "padding", default: 1)
        let op = ZeroPadOperation(height: input.h, width: input.w, channels: input.c,
                                  top: pads[0], bottom: pads[1], left: pads[2], right: pads[3])
        return append(node(layer, op, [input.h + pads[0] + pads[1], input.w + pads[2] + pads[3], input.c], inputs: [inputNode]))
    }

    mutating func addCropping(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let crops = try sides(layer, "cropping", default: 0)
        let height = input.h - crops[0] - crops[1], width = input.w - crops[2] - crops[3]
        guard height > 0, width > 0 else { throw error(layer, "crops \(crops) from a \(input.h)x\(input.w) input, leaving nothing") }
        let op = CropOperation(height: input.h, width: input.w, channels: input.c,
                               top: crops[0], left: crops[2], outputHeight: height, outputWidth: width)
        return append(node(layer, op, [height, width, input.c], inputs: [inputNode]))
    }

    mutating func addUpSampling(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let interpolation = layer.config["interpolation"]?.string ?? "nearest"
        guard interpolation == "nearest" else {
            throw error(layer, "interpolation \"\(interpolation)\" is not supported (only \"nearest\")")
        }
        let raw = layer.config["size"]
        let size: [Int]
        if let single = raw?.int { size = [single, single] }
        else if let pair = raw?.ints, pair.count == 2 { size = pair }
        else if raw == nil || raw == .null { size = [2, 2] }
        else { throw error(layer, "size has an unexpected form") }
        guard size.allSatisfy({ $0 >= 1 }) else { throw error(layer, "size \(size) is not positive") }
        let op = UpsampleNearestOperation(height: input.h, width: input.w, channels: input.c, sizeHeight: size[0], sizeWidth: size[1])
        return append(node(layer, op, [input.h * size[0], input.w * size[1], input.c], inputs: [inputNode]))
    }

    mutating func addPermute(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let shape = nodes[inputNode].shape
        guard let dims = layer.config["dims"]?.ints else { throw error(layer, "config has no dims") }
        guard dims.sorted() == Array(1...max(1, shape.count)), dims.count == shape.count else {
            throw error(layer, "dims \(dims) is not a permutation of 1...\(shape.count) for input shape \(shape)")
        }
        let order = dims.map { $0 - 1 }
        let op = GatherOperation(sources: permutationSources(shape: shape, order: order), inputCount: shape.reduce(1, *))
        return append(node(layer, op, order.map { shape[$0] }, inputs: [inputNode]))
    }

    /// ZeroPadding2D's `padding` and Cropping2D's `cropping`: n, (h, w) or ((top, bottom),
    /// (left, right)); returns [top, bottom, left, right], all >= 0.
    func sides(_ layer: LayerConfig, _ key: String, default value: Int) throws -> [Int] {
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
}
