import Foundation
import NeuralKernels

/// Sums Double vectors across the workers of one training pass (BatchNorm needs statistics of
/// the whole batch, not of each worker's share). Every participant calls `sum` with its partial
/// sums, in the same order of calls; afterwards each holds the total, added in worker order, so
/// all workers see bit-identical results.
final class AllReduce: @unchecked Sendable {
    let participants: Int
    private let barrier: UnsafeMutablePointer<pthread_barrier_t>
    private var slots: [UnsafeMutablePointer<Double>?]

    init(participants: Int) {
        self.participants = participants
        barrier = .allocate(capacity: 1)
        pthread_barrier_init(barrier, nil, UInt32(participants))
        slots = Array(repeating: nil, count: participants)
    }

    deinit {
        pthread_barrier_destroy(barrier)
        barrier.deallocate()
    }

    func sum(_ values: UnsafeMutablePointer<Double>, count: Int, worker: Int) {
        guard participants > 1 else { return }
        slots[worker] = values
        pthread_barrier_wait(barrier)
        var total = [Double](repeating: 0, count: count)
        for w in 0..<participants {
            let source = slots[w]!
            for i in 0..<count { total[i] += source[i] }
        }
        // Nobody may overwrite its partial sums before everyone has read them.
        pthread_barrier_wait(barrier)
        values.update(from: total, count: count)
    }
}

/// What a training pass needs beyond an inference pass.
struct TrainingContext {
    var worker: Int
    /// Images in the whole batch (over all workers).
    var totalBatch: Int
    var reducer: AllReduce
    /// Seed for dropout masks, fixed per batch.
    var seed: UInt64
}

/// Batch statistics a BatchNorm node used in the last training pass (per worker; all equal).
struct BatchStatistics {
    var mean: [Float]
    var inverseStd: [Float]
    var mean64: [Double]
    var variance: [Double]
}

extension BatchNormOperation {
    /// Training-mode forward: statistics over the whole batch (all workers), optionally followed
    /// by a ReLU.
    func trainingForward(_ c: PassContext, _ t: TrainingContext, node: Int, relu: ReLUParameters?) {
        let rows = c.batch * positions
        let totalRows = Double(t.totalBatch * positions)
        var sums = [Double](repeating: 0, count: channels)
        channelSums(c.inputs[0], rows: rows, channels: channels, into: &sums)
        t.reducer.sum(&sums, count: channels, worker: t.worker)
        let mean64 = sums.map { $0 / totalRows }
        var squares = [Double](repeating: 0, count: channels)
        channelCenteredSquares(c.inputs[0], mean: mean64, rows: rows, channels: channels, into: &squares)
        t.reducer.sum(&squares, count: channels, worker: t.worker)
        let variance = squares.map { $0 / totalRows }
        let mean = mean64.map { Float($0) }
        let inverseStd = variance.map { 1 / (Float($0) + epsilon).squareRoot() }
        c.workspace.batchStatistics[node] = BatchStatistics(mean: mean, inverseStd: inverseStd, mean64: mean64, variance: variance)
        batchNormTrainingForward(output: c.output, input: c.inputs[0], mean: mean, inverseStd: inverseStd,
                                 gamma: gamma.map { UnsafePointer($0.pointer) }, beta: beta.map { UnsafePointer($0.pointer) },
                                 rows: rows, channels: channels, relu: relu)
    }

    /// Training-mode backward through the batch statistics.
    func trainingBackward(_ c: PassContext, _ t: TrainingContext, node: Int, relu: ReLUParameters?) {
        guard let statistics = c.workspace.batchStatistics[node] else { preconditionFailure("backward before forward") }
        let rows = c.batch * positions
        var sumGradient = [Double](repeating: 0, count: channels)
        var sumNormalized = [Double](repeating: 0, count: channels)
        // dz overwrites dy in place: dy is not needed afterwards.
        batchNormTrainingBackwardSums(
            preActivationGradient: c.outputGradient, outputGradient: c.outputGradient, input: c.inputs[0],
            mean: statistics.mean, inverseStd: statistics.inverseStd, gamma: gamma.map { UnsafePointer($0.pointer) },
            beta: beta.map { UnsafePointer($0.pointer) }, rows: rows, channels: channels, relu: relu,
            sumGradient: &sumGradient, sumGradientTimesNormalized: &sumNormalized)
        // This worker's share of dgamma and dbeta (summed over workers with the other gradients).
        if let gamma { let g = c.workspace.gradient(gamma); for i in 0..<channels { g[i] += Float(sumNormalized[i]) } }
        if let beta { let g = c.workspace.gradient(beta); for i in 0..<channels { g[i] += Float(sumGradient[i]) } }
        guard let dx = c.inputGradients[0] else { return }
        t.reducer.sum(&sumGradient, count: channels, worker: t.worker)
        t.reducer.sum(&sumNormalized, count: channels, worker: t.worker)
        let totalRows = Double(t.totalBatch * positions)
        let meanGradient = sumGradient.map { Float($0 / totalRows) }
        let meanNormalized = sumNormalized.map { Float($0 / totalRows) }
        batchNormTrainingBackwardInput(
            inputGradient: dx, preActivationGradient: c.outputGradient, input: c.inputs[0], mean: statistics.mean,
            inverseStd: statistics.inverseStd, gamma: gamma.map { UnsafePointer($0.pointer) }, meanGradient: meanGradient,
            meanGradientTimesNormalized: meanNormalized, rows: rows, channels: channels)
    }

    /// Keras' moving-average update after a training step: moving = moving * momentum +
    /// batch * (1 - momentum), the variance Bessel-corrected (N / (N - 1)) as TensorFlow's fused
    /// batch norm does.
    func updateMovingStatistics(_ statistics: BatchStatistics, totalRows: Int, momentum: Float) {
        let correction = totalRows > 1 ? Double(totalRows) / Double(totalRows - 1) : 1
        for c in 0..<channels {
            movingMean.values[c] = movingMean.values[c] * momentum + Float(statistics.mean64[c]) * (1 - momentum)
            movingVariance.values[c] = movingVariance.values[c] * momentum + Float(statistics.variance[c] * correction) * (1 - momentum)
        }
    }
}

/// Inverted dropout: in training, each element is kept with probability 1 - rate and scaled by
/// 1 / (1 - rate); at inference it is the identity. Masks come from a per-batch, per-worker,
/// per-node seed, so a resumed run draws the same masks.
final class DropoutOperation: Operation {
    let rate: Float
    let count: Int

    init(rate: Float, count: Int) {
        self.rate = rate
        self.count = count
    }

    private func keepMask(_ context: TrainingContext, node: Int, elements: Int) -> [Float] {
        var state = context.seed ^ (UInt64(context.worker + 1) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(node) << 32)
        let scale = 1 / (1 - rate)
        return (0..<elements).map { _ in
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(z >> 40) / Float(1 << 24) >= rate ? scale : 0
        }
    }

    func forward(_ c: PassContext) {
        let n = c.batch * count
        guard let t = c.training, rate > 0 else { c.output.update(from: c.inputs[0], count: n); return }
        let mask = keepMask(t, node: c.node, elements: n)
        for i in 0..<n { c.output[i] = c.inputs[0][i] * mask[i] }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        let n = c.batch * count
        guard let t = c.training, rate > 0 else { for i in 0..<n { dx[i] += c.outputGradient[i] }; return }
        let mask = keepMask(t, node: c.node, elements: n)
        for i in 0..<n { dx[i] += c.outputGradient[i] * mask[i] }
    }
}
