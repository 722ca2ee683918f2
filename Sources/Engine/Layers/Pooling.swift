import KerasCheckpoint
import NeuralKernels

/// MaxPooling2D, AveragePooling2D (`PoolOperation`) and their global forms (`GlobalPoolOperation`),
/// channels last; kernels in `NeuralKernels/Elementwise.swift`.
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

    mutating func addGlobalPooling(_ layer: LayerConfig, isMax: Bool, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let keep = layer.config["keepdims"]?.bool ?? false
        let op = GlobalPoolOperation(isMax: isMax, positions: input.h * input.w, channels: input.c)
        return append(node(layer, op, keep ? [1, 1, input.c] : [input.c], inputs: [inputNode]))
    }
}
