import Foundation
import NeuralKernels

/// Sums Double vectors over the chunks of one training pass (BatchNorm needs statistics of the
/// whole batch, not of each chunk). Every worker calls `sum` with the partial sums of the chunks
/// it owns, in the same order of calls; each gets back the total added in chunk order, so every
/// worker sees the same bits, whatever the number of workers.
final class ChunkReducer: @unchecked Sendable {
    let chunks: Int
    let participants: Int
    private let barrier: UnsafeMutablePointer<pthread_barrier_t>
    /// Each chunk's partial sums during a `sum`; a worker writes only the rows of its chunks.
    private let rows: UnsafeMutablePointer<UnsafeMutablePointer<Double>?>

    init(chunks: Int, participants: Int) {
        self.chunks = chunks
        self.participants = participants
        barrier = .allocate(capacity: 1)
        pthread_barrier_init(barrier, nil, UInt32(max(1, participants)))
        rows = .allocate(capacity: chunks)
        rows.initialize(repeating: nil, count: chunks)
    }

    deinit {
        pthread_barrier_destroy(barrier)
        barrier.deallocate()
        rows.deallocate()
    }

    /// `partials[i]` are the sums over chunk `owned[i]`; returns the sum over all chunks.
    func sum(_ partials: [[Double]], owned: [Int], count: Int) -> [Double] {
        precondition(partials.count == owned.count && partials.allSatisfy { $0.count == count })
        for (values, chunk) in zip(partials, owned) {
            let row = UnsafeMutablePointer<Double>.allocate(capacity: count)
            row.initialize(from: values, count: count)
            rows[chunk] = row
        }
        if participants > 1 { pthread_barrier_wait(barrier) }
        var total = [Double](repeating: 0, count: count)
        for chunk in 0..<chunks {
            let source = rows[chunk]!
            for i in 0..<count { total[i] += source[i] }
        }
        // Nobody may free its rows before everyone has read them.
        if participants > 1 { pthread_barrier_wait(barrier) }
        for chunk in owned { rows[chunk]!.deallocate() }
        return total
    }
}

/// What a training pass needs beyond an inference pass.
struct TrainingContext {
    var worker: Int
    /// Images in the whole batch (over all chunks).
    var totalBatch: Int
    var reducer: ChunkReducer
    /// Seed for dropout masks, fixed per batch.
    var seed: UInt64
}

/// Batch statistics a BatchNorm node used in the last training pass (the same in every chunk).
struct BatchStatistics {
    var mean: [Float]
    var inverseStd: [Float]
    var mean64: [Double]
    var variance: [Double]
}

/// An operation whose training pass couples the images of a batch: it sees every chunk a worker
/// owns at once, and sums over all chunks of the batch through the reducer.
protocol BatchCoupledOperation {
    func trainingForward(_ contexts: [PassContext], _ t: TrainingContext)
    func trainingBackward(_ contexts: [PassContext], _ t: TrainingContext)
}

extension BatchNormOperation: BatchCoupledOperation {
    func trainingForward(_ contexts: [PassContext], _ t: TrainingContext) { trainingForward(contexts, t, relu: nil) }
    func trainingBackward(_ contexts: [PassContext], _ t: TrainingContext) { trainingBackward(contexts, t, relu: nil) }
}

extension BatchNormReLUOperation: BatchCoupledOperation {
    func trainingForward(_ contexts: [PassContext], _ t: TrainingContext) { batchNorm.trainingForward(contexts, t, relu: relu) }
    func trainingBackward(_ contexts: [PassContext], _ t: TrainingContext) { batchNorm.trainingBackward(contexts, t, relu: relu) }
}

extension BatchNormOperation {
    /// Training-mode forward: statistics over the whole batch (all chunks), optionally followed
    /// by a ReLU.
    func trainingForward(_ contexts: [PassContext], _ t: TrainingContext, relu: ReLUParameters?) {
        let owned = contexts.map(\.chunk)
        let totalRows = Double(t.totalBatch * positions)
        let sums = t.reducer.sum(contexts.map { c in
            var sums = [Double](repeating: 0, count: channels)
            channelSums(c.inputs[0], rows: c.batch * positions, channels: channels, into: &sums)
            return sums
        }, owned: owned, count: channels)
        let mean64 = sums.map { $0 / totalRows }
        let squares = t.reducer.sum(contexts.map { c in
            var squares = [Double](repeating: 0, count: channels)
            channelCenteredSquares(c.inputs[0], mean: mean64, rows: c.batch * positions, channels: channels, into: &squares)
            return squares
        }, owned: owned, count: channels)
        let variance = squares.map { $0 / totalRows }
        let mean = mean64.map { Float($0) }
        let inverseStd = variance.map { 1 / (Float($0) + epsilon).squareRoot() }
        let statistics = BatchStatistics(mean: mean, inverseStd: inverseStd, mean64: mean64, variance: variance)
        for c in contexts {
            c.workspace.batchStatistics[c.node] = statistics
            batchNormTrainingForward(output: c.output, input: c.inputs[0], mean: mean, inverseStd: inverseStd,
                                     gamma: gamma.map { UnsafePointer($0.pointer) }, beta: beta.map { UnsafePointer($0.pointer) },
                                     rows: c.batch * positions, channels: channels, relu: relu)
        }
    }

    /// Training-mode backward through the batch statistics.
    func trainingBackward(_ contexts: [PassContext], _ t: TrainingContext, relu: ReLUParameters?) {
        var partials: [[Double]] = []
        for c in contexts {
            guard let statistics = c.workspace.batchStatistics[c.node] else { preconditionFailure("backward before forward") }
            var sumGradient = [Double](repeating: 0, count: channels)
            var sumNormalized = [Double](repeating: 0, count: channels)
            // dz overwrites dy in place: dy is not needed afterwards.
            batchNormTrainingBackwardSums(
                preActivationGradient: c.outputGradient, outputGradient: c.outputGradient, input: c.inputs[0],
                mean: statistics.mean, inverseStd: statistics.inverseStd, gamma: gamma.map { UnsafePointer($0.pointer) },
                beta: beta.map { UnsafePointer($0.pointer) }, rows: c.batch * positions, channels: channels, relu: relu,
                sumGradient: &sumGradient, sumGradientTimesNormalized: &sumNormalized)
            // This chunk's share of dgamma and dbeta (summed over chunks with the other gradients).
            if let gamma { let g = c.workspace.gradient(gamma); for i in 0..<channels { g[i] += Float(sumNormalized[i]) } }
            if let beta { let g = c.workspace.gradient(beta); for i in 0..<channels { g[i] += Float(sumGradient[i]) } }
            partials.append(sumGradient + sumNormalized)
        }
        // Every chunk of a batch has the same graph, so all workers skip or all take this branch.
        guard contexts.first?.inputGradients[0] != nil else { return }
        let sums = t.reducer.sum(partials, owned: contexts.map(\.chunk), count: 2 * channels)
        let totalRows = Double(t.totalBatch * positions)
        let meanGradient = sums[0..<channels].map { Float($0 / totalRows) }
        let meanNormalized = sums[channels...].map { Float($0 / totalRows) }
        for c in contexts {
            let statistics = c.workspace.batchStatistics[c.node]!
            batchNormTrainingBackwardInput(
                inputGradient: c.inputGradients[0]!, preActivationGradient: c.outputGradient, input: c.inputs[0],
                mean: statistics.mean, inverseStd: statistics.inverseStd, gamma: gamma.map { UnsafePointer($0.pointer) },
                meanGradient: meanGradient, meanGradientTimesNormalized: meanNormalized, rows: c.batch * positions,
                channels: channels)
        }
    }

    /// Keras' moving-average update after a training step: moving = moving * momentum +
    /// batch * (1 - momentum), the variance Bessel-corrected (N / (N - 1)) as TensorFlow's fused
    /// batch norm does.
    func updateMovingStatistics(_ statistics: BatchStatistics, totalRows: Int, momentum: Float) {
        let correction = totalRows > 1 ? Double(totalRows) / Double(totalRows - 1) : 1
        movingMean.update { mean in
            for c in 0..<channels { mean[c] = mean[c] * momentum + Float(statistics.mean64[c]) * (1 - momentum) }
        }
        movingVariance.update { variance in
            for c in 0..<channels { variance[c] = variance[c] * momentum + Float(statistics.variance[c] * correction) * (1 - momentum) }
        }
    }
}

/// Inverted dropout: in training, each element is kept with probability 1 - rate and scaled by
/// 1 / (1 - rate); at inference it is the identity. Each image's mask comes from the batch's
/// seed, the node and the image's place in the batch, so neither the chunking nor the workers
/// change it, and a resumed run draws the same masks.
final class DropoutOperation: Operation {
    let rate: Float
    let count: Int

    init(rate: Float, count: Int) {
        self.rate = rate
        self.count = count
    }

    private func keepMask(_ c: PassContext, _ t: TrainingContext) -> [Float] {
        let scale = 1 / (1 - rate)
        var mask = [Float](repeating: 0, count: c.batch * count)
        for image in 0..<c.batch {
            var state = t.seed ^ (UInt64(c.firstImage + image + 1) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(c.node) << 32)
            for i in 0..<count {
                state &+= 0x9E37_79B9_7F4A_7C15
                var z = state
                z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
                z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
                z ^= z >> 31
                mask[image * count + i] = Float(z >> 40) / Float(1 << 24) >= rate ? scale : 0
            }
        }
        return mask
    }

    func forward(_ c: PassContext) {
        let n = c.batch * count
        guard let t = c.training, rate > 0 else { c.output.update(from: c.inputs[0], count: n); return }
        let mask = keepMask(c, t)
        for i in 0..<n { c.output[i] = c.inputs[0][i] * mask[i] }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        let n = c.batch * count
        guard let t = c.training, rate > 0 else { for i in 0..<n { dx[i] += c.outputGradient[i] }; return }
        let mask = keepMask(c, t)
        for i in 0..<n { dx[i] += c.outputGradient[i] * mask[i] }
    }
}
