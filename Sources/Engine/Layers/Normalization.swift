import KerasCheckpoint

/// BatchNormalization over the channel (last) axis (`BatchNormOperation`: inference from the
/// moving statistics; in training, the batch's statistics, see docs/ARCHITECTURE.md "Training").
/// Keras' preprocessing `Normalization` layer is in `Preprocessing.swift`.
enum Normalization: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        "BatchNormalization": LayerDefinition(
            weights: { layer in
                ((layer.config["scale"]?.bool ?? true) ? [WeightSpec(role: .gamma, shape: [nil])] : [])
                    + ((layer.config["center"]?.bool ?? true) ? [WeightSpec(role: .beta, shape: [nil])] : [])
                    + [WeightSpec(role: .movingMean, shape: [nil]), WeightSpec(role: .movingVariance, shape: [nil])]
            },
            build: { builder, layer, inputs in try builder.addBatchNormalization(layer, input: inputs[0]) }),
    ]
}

extension GraphBuilder {
    mutating func addBatchNormalization(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
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
        return append(node(layer, op, shape, inputs: [input]))
    }
}
