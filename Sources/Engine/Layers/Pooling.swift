import KerasCheckpoint
import NeuralKernels

/// MaxPooling2D, AveragePooling2D (`PoolOperation`) and their global forms (`GlobalPoolOperation`),
/// and the 1-D forms over (steps, channels) (a height-1 window), channels last; kernels in
/// `NeuralKernels/Elementwise.swift`.
enum Pooling: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        "MaxPooling2D": LayerDefinition { builder, layer, inputs in try builder.addPooling(layer, isMax: true, input: inputs[0]) },
        "AveragePooling2D": LayerDefinition { builder, layer, inputs in try builder.addPooling(layer, isMax: false, input: inputs[0]) },
        "GlobalMaxPooling2D": LayerDefinition { builder, layer, inputs in
            try builder.addGlobalPooling(layer, isMax: true, input: inputs[0])
        },
        "GlobalAveragePooling2D": LayerDefinition { builder, layer, inputs in
            try builder.addGlobalPooling(layer, isMax: false, input: inputs[0])
        },
        "MaxPooling1D": LayerDefinition { builder, layer, inputs in try builder.addPooling1D(layer, isMax: true, input: inputs[0]) },
        "AveragePooling1D": LayerDefinition { builder, layer, inputs in try builder.addPooling1D(layer, isMax: false, input: inputs[0]) },
        "GlobalMaxPooling1D": LayerDefinition { builder, layer, inputs in
            try builder.addGlobalPooling1D(layer, isMax: true, input: inputs[0])
        },
        "GlobalAveragePooling1D": LayerDefinition { builder, layer, inputs in
            try builder.addGlobalPooling1D(layer, isMax: false, input: inputs[0])
        },
    ]
}

extension GraphBuilder {
    mutating func addPooling(_ layer: LayerConfig, isMax: Bool, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let pool = try ints(layer, "pool_size", default: [2, 2])
        let strides = try ints(layer, "strides", default: pool)
        let g = try window(layer, input, kernel: pool, strides: strides)
        return append(node(layer, PoolOperation(isMax: isMax, geometry: g, channels: input.c),
                           [g.outputHeight, g.outputWidth, input.c], inputs: [inputNode]))
    }

    /// MaxPooling1D and AveragePooling1D: Keras' pool_size 2, strides = pool_size, padding valid
    /// unless the config says otherwise.
    mutating func addPooling1D(_ layer: LayerConfig, isMax: Bool, input inputNode: Int) throws -> Int {
        let input = try sequence(layer, nodes[inputNode].shape)
        let pool = try ints(layer, "pool_size", default: [2], count: 1)[0]
        let stride = try ints(layer, "strides", default: [pool], count: 1)[0]
        let g = try window(layer, input, kernel: [1, pool], strides: [1, stride])
        return append(node(layer, PoolOperation(isMax: isMax, geometry: g, channels: input.c),
                           [g.outputWidth, input.c], inputs: [inputNode]))
    }

    mutating func addGlobalPooling(_ layer: LayerConfig, isMax: Bool, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let keep = layer.config["keepdims"]?.bool ?? false
        let op = GlobalPoolOperation(isMax: isMax, positions: input.h * input.w, channels: input.c)
        return append(node(layer, op, keep ? [1, 1, input.c] : [input.c], inputs: [inputNode]))
    }

    mutating func addGlobalPooling1D(_ layer: LayerConfig, isMax: Bool, input inputNode: Int) throws -> Int {
        let input = try sequence(layer, nodes[inputNode].shape)
        let keep = layer.config["keepdims"]?.bool ?? false
        let op = GlobalPoolOperation(isMax: isMax, positions: input.w, channels: input.c)
        return append(node(layer, op, keep ? [1, input.c] : [input.c], inputs: [inputNode]))
    }
}
