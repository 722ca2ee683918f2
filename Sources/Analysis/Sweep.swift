import CIFAR
import Engine
import Foundation
import KerasCheckpoint
import ModelState
import Pruning

/// One (beta, gamma) of a sweep.
public struct SweepPoint: Sendable, Hashable {
    public var beta: Float
    public var gamma: Float
    public init(beta: Float, gamma: Float) {
        self.beta = beta
        self.gamma = gamma
    }

    /// Every beta with every gamma, gamma-major (one gamma's betas together, as Figure 1a
    /// draws them).
    public static func grid(betas: [Float], gammas: [Float]) -> [SweepPoint] {
        gammas.flatMap { gamma in betas.map { SweepPoint(beta: $0, gamma: gamma) } }
    }
}

/// One kernel at one point.
public struct LayerOutcome: Sendable, Encodable {
    public var layer: String
    public var role: String
    public var parameters: Int
    public var nonzero: Int
    /// Mask bits that are 0 (weights pruned, by this point and any mask the model had).
    public var pruned: Int
    public var sparsity: Double
}

/// What one point measured: the model after the pruning step, as a file would hold it, and its
/// accuracy.
public struct PointOutcome: Sendable, Encodable {
    public var beta: Float
    public var gamma: Float
    /// Zero parameters over all parameters (biases and BatchNorm included), as `prune` reports.
    public var sparsity: Double
    /// Zero weights over the prunable kernels' weights.
    public var kernelSparsity: Double
    public var nonzero: Int
    public var parameters: Int
    public var prunedNow: Int
    /// Payload bytes of every prunable kernel in a sparse export (before compression), computed
    /// with the export's own size formulas (`KernelMatrixShape`), nothing written.
    public var csrBytes: Int
    public var bitmaskBytes: Int
    /// The export's default: the smaller of the two per kernel.
    public var smallerBytes: Int
    public var denseKernelBytes: Int
    public var top1: Double
    public var top5: Double
    public var loss: Double
    public var layers: [LayerOutcome]

    enum CodingKeys: String, CodingKey {
        case beta, gamma, gammaIsInfinite = "gamma_is_infinite", sparsity, kernelSparsity = "kernel_sparsity", nonzero, parameters
        case prunedNow = "pruned_now", csrBytes = "csr_bytes", bitmaskBytes = "bitmask_bytes", smallerBytes = "smaller_bytes"
        case denseKernelBytes = "dense_kernel_bytes", top1, top5, loss, layers
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(beta, forKey: .beta)
        try encodeGamma(gamma, in: &c, value: .gamma, flag: .gammaIsInfinite)
        try c.encode(sparsity, forKey: .sparsity)
        try c.encode(kernelSparsity, forKey: .kernelSparsity)
        try c.encode(nonzero, forKey: .nonzero)
        try c.encode(parameters, forKey: .parameters)
        try c.encode(prunedNow, forKey: .prunedNow)
        try c.encode(csrBytes, forKey: .csrBytes)
        try c.encode(bitmaskBytes, forKey: .bitmaskBytes)
        try c.encode(smallerBytes, forKey: .smallerBytes)
        try c.encode(denseKernelBytes, forKey: .denseKernelBytes)
        try c.encode(top1, forKey: .top1)
        try c.encode(top5, forKey: .top5)
        try c.encode(loss, forKey: .loss)
        try c.encode(layers, forKey: .layers)
    }
}

/// The pruning step applied many times to one model in memory: the file is read once, the
/// gradients taken once; each try prunes a working copy (`Model.copy`) that is restored from the
/// original before the next, and is evaluated by one `Network` that refolds only what changed.
public final class PruningExplorer {
    public let original: Model
    public let working: Model
    public let network: Network
    /// The kernels the settings select, their thresholds replaced by each try's.
    public let targets: [PruningTarget]
    public let gradients: [CheckpointWeight: [Float]]
    public let evaluation: ImageBatchSource
    public let batchSize: Int

    /// `network` must run `working`, a copy of `original` (`original.copy()`), not yet changed.
    public init(original: Model, working: Model, network: Network, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]],
                evaluation: ImageBatchSource, batchSize: Int) {
        precondition(network.model === working, "the network must run the working copy")
        self.original = original
        self.working = working
        self.network = network
        self.targets = targets
        self.gradients = gradients
        self.evaluation = evaluation
        self.batchSize = batchSize
    }

    /// The original model's accuracy (the working copy restored, nothing pruned).
    public func baseline() throws -> EvaluationReport {
        working.restore(from: original)
        return try network.evaluate(evaluation, batchSize: batchSize)
    }

    /// Restores the copy, applies `targets` with `prune`, measures.
    public func measure(_ chosen: [PruningTarget]) throws -> (report: PruningReport, outcome: PointOutcome) {
        working.restore(from: original)
        let report = try prune(working, targets: chosen, gradients: gradients)
        let evaluation = try network.evaluate(self.evaluation, batchSize: batchSize)
        var layers: [LayerOutcome] = []
        var csr = 0, bitmask = 0, smaller = 0, dense = 0, kernelWeights = 0, kernelNonzero = 0
        for parameter in working.parameters where parameter.weight.prunable {
            let weight = parameter.weight
            // The export stores a masked kernel's 1 bits (explicit zeros included), an unmasked
            // one's non-zeros.
            let nonzero = parameter.nonzeroCount
            let stored = parameter.mask.map { $0.count - $0.prunedCount } ?? nonzero
            let shape = KernelMatrixShape(role: weight.role, shape: weight.shape)
            let csrBytes = shape.csrPayloadBytes(stored: stored), bitmaskBytes = shape.bitmaskPayloadBytes(stored: stored)
            csr += csrBytes
            bitmask += bitmaskBytes
            smaller += min(csrBytes, bitmaskBytes)
            dense += 4 * weight.elementCount
            kernelWeights += weight.elementCount
            kernelNonzero += nonzero
            layers.append(LayerOutcome(layer: weight.layerName, role: weight.role.description, parameters: weight.elementCount, nonzero: nonzero,
                                       pruned: parameter.mask?.prunedCount ?? 0,
                                       sparsity: weight.elementCount == 0 ? 0 : 1 - Double(nonzero) / Double(weight.elementCount)))
        }
        let outcome = PointOutcome(
            beta: chosen.first?.beta ?? 0, gamma: chosen.first?.gamma ?? .infinity, sparsity: working.sparsity,
            kernelSparsity: 1 - Double(kernelNonzero) / Double(max(1, kernelWeights)), nonzero: working.nonzeroParameters,
            parameters: working.totalParameters, prunedNow: report.prunedNow, csrBytes: csr, bitmaskBytes: bitmask, smallerBytes: smaller,
            denseKernelBytes: dense, top1: evaluation.top1Accuracy, top5: evaluation.top5Accuracy, loss: evaluation.meanLoss, layers: layers)
        return (report, outcome)
    }

    /// Every point in order, each on the original model (a point never sees another's pruning).
    /// `progress(done, outcome)` after each. Takes any list of points, so a grid can be split
    /// between processes (a shard is a sublist).
    public func sweep(_ points: [SweepPoint], progress: (Int, PointOutcome) -> Void = { _, _ in }) throws -> [PointOutcome] {
        var outcomes: [PointOutcome] = []
        for point in points {
            let chosen = targets.map { target -> PruningTarget in
                var t = target
                t.beta = point.beta
                t.gamma = point.gamma
                return t
            }
            var outcome = try measure(chosen).outcome
            outcome.beta = point.beta
            outcome.gamma = point.gamma
            outcomes.append(outcome)
            progress(outcomes.count, outcome)
        }
        working.restore(from: original)
        return outcomes
    }
}

/// The sparsest point whose top-1 is at most `maxDrop` (a fraction: 0.01 is one percentage
/// point) below `baseline`; ties in sparsity go to the higher top-1, then the earlier point.
public func sparsestWithin(_ outcomes: [PointOutcome], baseline: Double, maxDrop: Double) -> Int? {
    var best: Int?
    for (index, outcome) in outcomes.enumerated() where outcome.top1 >= baseline - maxDrop - 1e-12 {
        // 1e-12: top-1 values are counts over images, so a drop of exactly maxDrop compares
        // equal up to the rounding of the subtraction.
        guard let current = best else { best = index; continue }
        let other = outcomes[current]
        if outcome.sparsity > other.sparsity || (outcome.sparsity == other.sparsity && outcome.top1 > other.top1) { best = index }
    }
    return best
}

/// The points on the accuracy-vs-sparsity frontier: sorted by sparsity, each kept when no
/// sparser-or-equal point has a higher top-1.
public func frontier(_ outcomes: [PointOutcome]) -> [PointOutcome] {
    let sorted = outcomes.sorted { $0.sparsity != $1.sparsity ? $0.sparsity > $1.sparsity : $0.top1 > $1.top1 }
    var kept: [PointOutcome] = []
    var bestTop1 = -Double.infinity
    for outcome in sorted where outcome.top1 > bestTop1 {
        kept.append(outcome)
        bestTop1 = outcome.top1
    }
    return kept.reversed()
}
