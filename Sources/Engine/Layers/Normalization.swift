import KerasCheckpoint
import ModelState
import NeuralKernels

/// BatchNormalization over the channel (last) axis (`BatchNormOperation`: inference from the
/// moving statistics; in training, the batch's statistics, see docs/ARCHITECTURE.md "Training")
/// and LayerNormalization over the last axis (`LayerNormOperation`, the same in training).
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
        // gamma then beta, as Keras builds them; scale=False / center=False drop them.
        "LayerNormalization": LayerDefinition(
            weights: { layer in
                ((layer.config["scale"]?.bool ?? true) ? [WeightSpec(role: .gamma, shape: [nil])] : [])
                    + ((layer.config["center"]?.bool ?? true) ? [WeightSpec(role: .beta, shape: [nil])] : [])
            },
            build: { builder, layer, inputs in try builder.addLayerNormalization(layer, input: inputs[0]) }),
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

extension GraphBuilder {
    /// LayerNormalization over the last axis: `axis` -1 or the last axis' index (an int or a list
    /// of one, as Keras 3 and tf_keras write it).
    mutating func addLayerNormalization(_ layer: LayerConfig, input: Int) throws -> Int {
        let shape = nodes[input].shape
        let raw = layer.config["axis"]
        let axes = raw?.int.map { [$0] } ?? raw?.ints ?? [-1]
        guard axes == [-1] || axes == [shape.count] else {
            throw error(layer, "normalizes over axis \(axes); only the last axis (-1) is supported")
        }
        if layer.config["rms_scaling"]?.bool == true { throw error(layer, "rms_scaling=True is not supported") }
        let channels = shape.last ?? 1
        let gamma = (layer.config["scale"]?.bool ?? true) ? try parameter(layer, .gamma, shape: [channels]) : nil
        let beta = (layer.config["center"]?.bool ?? true) ? try parameter(layer, .beta, shape: [channels]) : nil
        let op = LayerNormOperation(gamma: gamma, beta: beta, epsilon: Float(layer.config["epsilon"]?.double ?? 1e-3),
                                    channels: channels, rows: shape.dropLast().reduce(1, *))
        return append(node(layer, op, shape, inputs: [input]))
    }
}

/// Keras' LayerNormalization over the last axis (`layerNormForward`): each row of `channels`
/// values normalized by its own mean and variance, so training and inference are the same pass.
final class LayerNormOperation: Operation {
    let gamma: Parameter?, beta: Parameter?
    let epsilon: Float
    let channels: Int
    /// Rows per sample.
    let rows: Int

    init(gamma: Parameter?, beta: Parameter?, epsilon: Float, channels: Int, rows: Int) {
        (self.gamma, self.beta, self.epsilon, self.channels, self.rows) = (gamma, beta, epsilon, channels, rows)
    }

    var parameters: [Parameter] { [gamma, beta].compactMap { $0 } }

    func forward(_ c: PassContext) {
        layerNormForward(output: c.output, input: c.inputs[0], gamma: gamma.map { UnsafePointer($0.pointer) },
                         beta: beta.map { UnsafePointer($0.pointer) }, rows: c.batch * rows, channels: channels, epsilon: epsilon)
    }

    func backward(_ c: PassContext) {
        layerNormBackward(inputGradient: c.inputGradients[0], gammaGradient: gamma.map { c.workspace.gradient($0) },
                          betaGradient: beta.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient,
                          input: c.inputs[0], gamma: gamma.map { UnsafePointer($0.pointer) }, rows: c.batch * rows,
                          channels: channels, epsilon: epsilon)
    }
}
