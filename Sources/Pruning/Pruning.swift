import Foundation
import KerasCheckpoint

/// What to prune and with which thresholds.
public struct PruningSettings: Sendable {
    public var beta: Float
    public var gamma: Float
    /// Glob patterns (fnmatch) on layer names: only matching layers are pruned (all when empty).
    public var include: [String] = []
    /// Glob patterns of layers never pruned.
    public var exclude: [String] = []
    /// Per-layer thresholds, first matching pattern wins.
    public var layerBeta: [(pattern: String, value: Float)] = []
    public var layerGamma: [(pattern: String, value: Float)] = []
    public var skipDepthwise = false

    public init(beta: Float, gamma: Float) {
        self.beta = beta
        self.gamma = gamma
    }
}

/// A prunable weight chosen by the settings, with its thresholds.
public struct PruningTarget: Sendable {
    public var weight: CheckpointWeight
    public var beta: Float
    public var gamma: Float
}

/// One weight's outcome.
public struct WeightPruning: Codable, Sendable {
    public var layer: String
    public var weight: String
    public var role: String
    public var parameters: Int
    public var nonzeroBefore: Int
    public var prunedNow: Int
    public var nonzeroAfter: Int
    public var sparsity: Double
    public var beta: Float
    public var gamma: Float

    enum CodingKeys: String, CodingKey {
        case layer, weight, role, parameters, nonzeroBefore = "nonzero_before", prunedNow = "pruned_now"
        case nonzeroAfter = "nonzero_after", sparsity, beta, gamma
    }
}

/// A problem with the pruning settings.
public struct PruningError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private func matches(_ pattern: String, _ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }

extension PruningSettings {
    /// The prunable kernels these settings select, with their thresholds. Patterns that match no
    /// layer are errors (a typo would otherwise silently prune everything or nothing).
    public func targets(in checkpoint: Checkpoint) throws -> [PruningTarget] {
        guard beta >= 0, beta.isFinite, gamma >= 0, !gamma.isNaN else {
            throw PruningError("beta must be a finite number >= 0 and gamma a number >= 0 (got beta \(beta), gamma \(gamma))")
        }
        let layerNames = checkpoint.layers.map(\.name)
        for (flag, patterns) in [("--include", include), ("--exclude", exclude), ("--layer-beta", layerBeta.map(\.pattern)),
                                 ("--layer-gamma", layerGamma.map(\.pattern))] {
            for pattern in patterns where !layerNames.contains(where: { matches(pattern, $0) }) {
                throw PruningError("\(flag) pattern '\(pattern)' matches no layer of \(checkpoint.path)")
            }
        }
        for (pattern, value) in layerBeta + layerGamma where !(value >= 0) {
            throw PruningError("threshold for '\(pattern)' must be >= 0 (got \(value))")
        }
        var result: [PruningTarget] = []
        for weight in checkpoint.weights where weight.prunable {
            let name = weight.layerName
            if !include.isEmpty && !include.contains(where: { matches($0, name) }) { continue }
            if exclude.contains(where: { matches($0, name) }) { continue }
            if skipDepthwise && weight.role == .depthwiseKernel { continue }
            result.append(PruningTarget(
                weight: weight,
                beta: layerBeta.first { matches($0.pattern, name) }?.value ?? beta,
                gamma: layerGamma.first { matches($0.pattern, name) }?.value ?? gamma))
        }
        if result.isEmpty { throw PruningError("no prunable weight is selected (check --include/--exclude/--skip-depthwise)") }
        return result
    }
}

/// The pruned state of one weight: values and mask after the rule.
public struct PrunedWeight {
    public var target: PruningTarget
    public var values: [Float]
    public var mask: [UInt8]
    public var report: WeightPruning
}

/// Applies the rule to every target. `gradients` holds dC/dw per target weight; existing masks
/// in the checkpoint are honoured (their zero bits stay zero, their weights exactly zero).
public func prune(_ checkpoint: Checkpoint, targets: [PruningTarget],
                  gradients: [CheckpointWeight: [Float]]) throws -> [PrunedWeight] {
    var values: [UnsafeMutableBufferPointer<Float>] = []
    var masks: [UnsafeMutableBufferPointer<UInt8>] = []
    var gradientCopies: [UnsafeMutableBufferPointer<Float>] = []
    defer { (values + gradientCopies).forEach { $0.deallocate() }; masks.forEach { $0.deallocate() } }
    var jobs: [PruningJob] = []
    var nonzeroBefore: [Int] = []
    for target in targets {
        let weight = target.weight
        let read = try checkpoint.read(weight)
        guard let gradient = gradients[weight], gradient.count == read.count else {
            throw PruningError("no gradient for \(weight.datasetPath)")
        }
        let v = UnsafeMutableBufferPointer<Float>.allocate(capacity: read.count)
        _ = v.initialize(from: read)
        values.append(v)
        let m = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: read.count)
        _ = m.initialize(from: try checkpoint.mask(for: weight) ?? [UInt8](repeating: 1, count: read.count))
        masks.append(m)
        nonzeroBefore.append(read.reduce(0) { $0 + ($1 != 0 ? 1 : 0) })
        // Stable storage for the threads (an array's buffer pointer must not escape its closure).
        let g = UnsafeMutableBufferPointer<Float>.allocate(capacity: gradient.count)
        _ = g.initialize(from: gradient)
        gradientCopies.append(g)
        jobs.append(PruningJob(weights: v.baseAddress!, gradients: g.baseAddress!, mask: m.baseAddress!, count: read.count,
                               beta: target.beta, gamma: target.gamma))
    }
    let pruned = applyPruningRule(to: jobs)
    return targets.indices.map { index in
        let target = targets[index], weight = target.weight
        let after = Array(values[index]), mask = Array(masks[index])
        let nonzeroAfter = after.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
        let report = WeightPruning(
            layer: weight.layerName, weight: weight.name, role: weight.role.description, parameters: after.count,
            nonzeroBefore: nonzeroBefore[index], prunedNow: pruned[index], nonzeroAfter: nonzeroAfter,
            sparsity: after.isEmpty ? 0 : 1 - Double(nonzeroAfter) / Double(after.count),
            beta: target.beta, gamma: target.gamma)
        return PrunedWeight(target: target, values: after, mask: mask, report: report)
    }
}

/// The beta that, with the given gamma, brings the model's overall sparsity (zero parameters over
/// all parameters) to at least `target`: the smallest float above the k-th smallest |w| among
/// the weights the rule may still prune, k being how many more zeros are needed. Ties at that
/// magnitude may prune a few more. Throws when even beta = infinity cannot reach the target.
public func betaForTargetSparsity(
    _ checkpoint: Checkpoint, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]],
    gamma: Float, target: Double, totalParameters: Int, zerosNow: Int
) throws -> Float {
    let needed = Int((target * Double(totalParameters)).rounded(.up)) - zerosNow
    if needed <= 0 { return 0 }
    var candidates: [Float] = []
    for t in targets {
        let values = try checkpoint.read(t.weight)
        let mask = try checkpoint.mask(for: t.weight)
        guard let gradient = gradients[t.weight] else { continue }
        for i in values.indices where values[i] != 0 && (mask?[i] ?? 1) != 0 && abs(gradient[i]) < gamma && !values[i].isNaN {
            candidates.append(abs(values[i]))
        }
    }
    guard needed <= candidates.count else {
        let best = Double(zerosNow + candidates.count) / Double(max(1, totalParameters))
        throw PruningError(String(format: "sparsity %.4f is out of reach with gamma %g: at most %.4f of all parameters can be zero", target, Double(gamma), best))
    }
    candidates.sort()
    return candidates[needed - 1].nextUp
}
