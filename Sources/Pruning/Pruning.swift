import Foundation
import KerasCheckpoint
import ModelState

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
    /// Per-layer sparsity targets (0 <= S < 1), first matching pattern wins: each matching
    /// kernel gets the beta that prunes it alone to S (`targetsForLayerSparsity`).
    public var layerTarget: [(pattern: String, value: Double)] = []
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

/// One kernel's outcome of a pruning step.
public struct WeightPruning: Encodable, Sendable {
    public var layer: String
    public var weight: String
    public var role: String
    public var parameters: Int
    public var nonzeroBefore: Int
    /// Mask bits this step turned from 1 to 0.
    public var prunedNow: Int
    /// Mask bits that are 0 after the step (this step's and every earlier one's).
    public var prunedTotal: Int
    public var nonzeroAfter: Int
    public var sparsity: Double
    /// The thresholds actually used for this kernel (per-layer and target-sparsity choices
    /// included).
    public var beta: Float
    public var gamma: Float

    enum CodingKeys: String, CodingKey {
        case layer, weight, role, parameters, nonzeroBefore = "nonzero_before", prunedNow = "pruned_now"
        case prunedTotal = "pruned_total", nonzeroAfter = "nonzero_after", sparsity, beta, gamma, gammaIsInfinite = "gamma_is_infinite"
    }

    /// JSON has no infinity: gamma = inf (magnitude only) is `"gamma": null, "gamma_is_infinite":
    /// true`, as everywhere in gmtool's JSON (`encodeGamma`).
    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(layer, forKey: .layer)
        try c.encode(weight, forKey: .weight)
        try c.encode(role, forKey: .role)
        try c.encode(parameters, forKey: .parameters)
        try c.encode(nonzeroBefore, forKey: .nonzeroBefore)
        try c.encode(prunedNow, forKey: .prunedNow)
        try c.encode(prunedTotal, forKey: .prunedTotal)
        try c.encode(nonzeroAfter, forKey: .nonzeroAfter)
        try c.encode(sparsity, forKey: .sparsity)
        try c.encode(beta, forKey: .beta)
        try encodeGamma(gamma, in: &c, value: .gamma, flag: .gammaIsInfinite)
    }

    /// What the checkpoint writer stores on this kernel's mask dataset.
    public var maskAttributes: [String: String] {
        ["beta": String(beta), "gamma": gamma.isFinite ? String(gamma) : "inf", "pruned_now": String(prunedNow),
         "pruned_total": String(prunedTotal)]
    }
}

/// What one pruning step did, kernel by kernel.
public struct PruningReport: Sendable {
    public var kernels: [(weight: CheckpointWeight, result: WeightPruning)]
    public var prunedNow: Int { kernels.reduce(0) { $0 + $1.result.prunedNow } }
    /// Non-zero values the step removed (weights pruned now, and masked weights that were not
    /// yet zero).
    public var removed: Int { kernels.reduce(0) { $0 + $1.result.nonzeroBefore - $1.result.nonzeroAfter } }
    /// Per-kernel attributes for `Model.save`.
    public var maskAttributes: [CheckpointWeight: [String: String]] {
        Dictionary(uniqueKeysWithValues: kernels.map { ($0.weight, $0.result.maskAttributes) })
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
                                 ("--layer-gamma", layerGamma.map(\.pattern)),
                                 ("--layer-target", layerTarget.map(\.pattern))] {
            for pattern in patterns where !layerNames.contains(where: { matches(pattern, $0) }) {
                throw PruningError("\(flag) pattern '\(pattern)' matches no layer of \(checkpoint.path)")
            }
        }
        for (pattern, value) in layerBeta + layerGamma where !(value >= 0) {
            throw PruningError("threshold for '\(pattern)' must be >= 0 (got \(value))")
        }
        for (pattern, value) in layerTarget where !(value >= 0 && value < 1) {
            throw PruningError("--layer-target for '\(pattern)' must be a sparsity in [0, 1) (got \(value))")
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

/// One pruning step, the paper's Algorithm 1: for every target, where its mask bit is 1,
/// |w| < beta and |dC/dw| < gamma, w = 0 and the bit = 0; weights whose bit was already 0 are
/// forced to exactly 0. Changes the model in place (values and masks; masks only lose bits) and
/// reports, per kernel, the thresholds used and what was pruned. `gradients` holds dC/dw per
/// target weight; a target whose gamma is infinite needs none (any finite |g| passes).
public func prune(_ model: Model, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]]) throws -> PruningReport {
    var parameters: [Parameter] = []
    for target in targets {
        guard let parameter = model.parameter(for: target.weight) else {
            throw PruningError("\(target.weight.datasetPath) is not a weight of \(model.path)")
        }
        if target.gamma.isFinite {
            guard let gradient = gradients[target.weight] else { throw PruningError("no gradient for \(target.weight.datasetPath)") }
            guard gradient.count == target.weight.elementCount else {
                throw PruningError("the gradient for \(target.weight.datasetPath) has \(gradient.count) values, the weight \(target.weight.elementCount)")
            }
        }
        parameters.append(parameter)
    }
    let nonzeroBefore = parameters.map(\.nonzeroCount)
    // Stable storage for the kernel's threads (an array's buffer must not escape its closure).
    let masks = parameters.map { parameter -> UnsafeMutableBufferPointer<UInt8> in
        let buffer = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(1, parameter.weight.elementCount))
        _ = buffer.initialize(from: parameter.mask?.bits ?? [UInt8](repeating: 1, count: parameter.weight.elementCount))
        return buffer
    }
    let gradientCopies = targets.map { target -> UnsafeMutableBufferPointer<Float> in
        let buffer = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, target.weight.elementCount))
        _ = buffer.initialize(from: gradients[target.weight] ?? [Float](repeating: 0, count: target.weight.elementCount))
        return buffer
    }
    defer { masks.forEach { $0.deallocate() }; gradientCopies.forEach { $0.deallocate() } }
    let pruned = Parameter.update(parameters) { values in
        applyPruningRule(to: targets.indices.map { index in
            PruningJob(weights: values[index].baseAddress!, gradients: gradientCopies[index].baseAddress!, mask: masks[index].baseAddress!,
                       count: values[index].count, beta: targets[index].beta, gamma: targets[index].gamma)
        })
    }
    var kernels: [(CheckpointWeight, WeightPruning)] = []
    for (index, parameter) in parameters.enumerated() {
        let target = targets[index], weight = target.weight
        let mask = Mask(Array(masks[index].prefix(weight.elementCount)))
        parameter.setMask(mask)
        let nonzeroAfter = parameter.nonzeroCount
        kernels.append((weight, WeightPruning(
            layer: weight.layerName, weight: weight.name, role: weight.role.description, parameters: weight.elementCount,
            nonzeroBefore: nonzeroBefore[index], prunedNow: pruned[index], prunedTotal: mask.prunedCount, nonzeroAfter: nonzeroAfter,
            sparsity: weight.elementCount == 0 ? 0 : 1 - Double(nonzeroAfter) / Double(weight.elementCount),
            beta: target.beta, gamma: target.gamma)))
    }
    return PruningReport(kernels: kernels)
}

/// The one beta that brings the model's overall sparsity (zero parameters over all
/// parameters) to at least `target` when every target keeps its own gamma: the smallest float
/// above the k-th smallest |w| among the weights the rule may still prune (mask bit 1, w != 0,
/// |g| below that target's gamma), k being how many more zeros are needed. Weights tied at that
/// magnitude are pruned together, so the result overshoots by at most that tie group. A partial
/// selection finds the k-th value in linear time. Throws when even beta = infinity cannot reach
/// the target.
public func betaForTargetSparsity(_ model: Model, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]],
                                  target: Double, totalParameters: Int, zerosNow: Int) throws -> Float {
    let needed = Int((target * Double(totalParameters)).rounded(.up)) - zerosNow
    if needed <= 0 { return 0 }
    var candidates: [Float] = []
    for t in targets {
        guard let parameter = model.parameter(for: t.weight) else { continue }
        let values = parameter.values, mask = parameter.mask
        let gradient = gradients[t.weight]
        guard gradient != nil || !t.gamma.isFinite else { continue }
        for i in values.indices where values[i] != 0 && (mask?[i] ?? true) && !values[i].isNaN {
            if let gradient, !(abs(gradient[i]) < t.gamma) { continue }
            candidates.append(abs(values[i]))
        }
    }
    guard needed <= candidates.count else {
        let best = Double(zerosNow + candidates.count) / Double(max(1, totalParameters))
        let gammas = Set(targets.map(\.gamma)).sorted().map { $0.isFinite ? String(format: "%g", Double($0)) : "inf" }
        // Enough digits that the bound printed is below the target printed (0.9999994 is not "1.000000").
        var digits = 6
        while digits < 17, Double(String(format: "%.\(digits)f", best))! >= target { digits += 1 }
        throw PruningError("sparsity \(target) is out of reach with gamma \(gammas.joined(separator: ", ")): at most \(String(format: "%.\(digits)f", best)) of all parameters can be zero")
    }
    return kthSmallest(&candidates, needed - 1).nextUp
}

/// The value that would be at `k` if `values` were sorted (quickselect with a median-of-three
/// pivot and a fixed order, so the result and the work are the same every run). Reorders `values`.
func kthSmallest(_ values: inout [Float], _ k: Int) -> Float {
    precondition(k >= 0 && k < values.count)
    var low = 0, high = values.count - 1
    return values.withUnsafeMutableBufferPointer { v in
        while low < high {
            let middle = low + (high - low) / 2
            // Median of three as the pivot.
            if v[middle] < v[low] { v.swapAt(middle, low) }
            if v[high] < v[low] { v.swapAt(high, low) }
            if v[high] < v[middle] { v.swapAt(high, middle) }
            let pivot = v[middle]
            // Hoare partition.
            var i = low, j = high
            while i <= j {
                while v[i] < pivot { i += 1 }
                while v[j] > pivot { j -= 1 }
                if i <= j { v.swapAt(i, j); i += 1; j -= 1 }
            }
            if k <= j { high = j } else if k >= i { low = i } else { return v[k] }
        }
        return v[k]
    }
}

/// The targets with their betas chosen to reach `sparsity` (zeros over parameters) when each
/// keeps its own gamma: one beta for the whole model, or with `perKernel` one per kernel, each
/// kernel reaching the sparsity on its own.
public func targetsForSparsity(_ model: Model, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]],
                               sparsity: Double, perKernel: Bool) throws -> [PruningTarget] {
    var chosen = targets
    if perKernel {
        return try targetsForLayerSparsity(model, targets: targets, gradients: gradients, layerTargets: [("*", sparsity)])
    } else {
        let beta = try betaForTargetSparsity(model, targets: targets, gradients: gradients, target: sparsity,
                                             totalParameters: model.totalParameters,
                                             zerosNow: model.totalParameters - model.nonzeroParameters)
        for index in chosen.indices { chosen[index].beta = beta }
    }
    return chosen
}

/// The targets with the betas that bring each kernel matched by `layerTargets` (first matching
/// pattern on its layer name) to that sparsity on its own, with its own gamma; the others keep
/// their beta. What `gmtool sensitivity` suggests and `gmtool prune --layer-target` applies.
public func targetsForLayerSparsity(_ model: Model, targets: [PruningTarget], gradients: [CheckpointWeight: [Float]],
                                    layerTargets: [(pattern: String, value: Double)]) throws -> [PruningTarget] {
    var chosen = targets
    for index in chosen.indices {
        let weight = chosen[index].weight
        guard let sparsity = layerTargets.first(where: { matches($0.pattern, weight.layerName) })?.value,
              let parameter = model.parameter(for: weight) else { continue }
        do {
            chosen[index].beta = try betaForTargetSparsity(model, targets: [chosen[index]], gradients: gradients, target: sparsity,
                                                           totalParameters: weight.elementCount,
                                                           zerosNow: weight.elementCount - parameter.nonzeroCount)
        } catch let error as PruningError {
            throw PruningError("\(weight.layerName)/\(weight.role): \(error.description)")
        }
    }
    return chosen
}

/// The targets with the betas of tfmot's magnitude step (`pruning_impl._update_mask`,
/// tensorflow-model-optimization 0.7.5) at `sparsity`, gamma infinity: each kernel of n entries
/// keeps its k = max(round(n (1 - s)), 1) largest |w|, computed as tfmot does in float32 with
/// round half to even, and the entries tied with the k-th largest; the others are pruned. So beta
/// is the k-th largest |w| itself (the rule prunes |w| < beta), zeros and masked (zero) entries
/// counted among the n as tfmot counts them. The one difference: where a kernel already holds
/// more zeros than n - k, tfmot's new mask would set those entries' bits back to 1 (their weights
/// stay 0); gmtool's masks only lose bits. `gmtool train --method gmp` prunes with this;
/// `benchmarks/tfmot_gmp_check.py` compares the masks with tfmot's on a real model.
public func targetsForTfmotSparsity(_ model: Model, targets: [PruningTarget], sparsity: Double) throws -> [PruningTarget] {
    guard sparsity >= 0 && sparsity < 1 else { throw PruningError("sparsity must be in [0, 1) (got \(sparsity))") }
    var chosen = targets
    for index in chosen.indices {
        guard let parameter = model.parameter(for: chosen[index].weight) else {
            throw PruningError("\(chosen[index].weight.datasetPath) is not a weight of \(model.path)")
        }
        chosen[index].beta = tfmotThreshold(Array(parameter.values), sparsity: sparsity)
        chosen[index].gamma = .infinity
    }
    return chosen
}

/// How many of `count` entries tfmot keeps at `sparsity`: max(round(n (1 - s)), 1) in float32,
/// `tf.math.round` rounding half to even.
func tfmotKeptCount(_ count: Int, sparsity: Double) -> Int {
    max(Int((Float(count) * (1 - Float(sparsity))).rounded(.toNearestOrEven)), 1)
}

/// The k-th largest |w| (k from `tfmotKeptCount`): pruning |w| < it keeps what tfmot keeps. A
/// NaN never compares below a threshold, so it is never pruned; it is counted as the largest.
func tfmotThreshold(_ values: [Float], sparsity: Double) -> Float {
    if values.isEmpty { return 0 }
    let kept = min(tfmotKeptCount(values.count, sparsity: sparsity), values.count)
    var magnitudes = values.map { $0.isNaN ? Float.infinity : abs($0) }
    return kthSmallest(&magnitudes, values.count - kept)
}

/// Writes a gamma to JSON: the number, or `null` with `flag` true when it is infinite (the rule
/// is magnitude-only), so every JSON gmtool prints says infinity the same way.
public func encodeGamma<Key: CodingKey>(_ gamma: Float, in container: inout KeyedEncodingContainer<Key>, value: Key, flag: Key) throws {
    if gamma.isFinite { try container.encode(Double(gamma), forKey: value) } else { try container.encodeNil(forKey: value) }
    try container.encode(!gamma.isFinite, forKey: flag)
}
