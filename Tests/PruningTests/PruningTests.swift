import Engine
import Foundation
import Testing
import KerasCheckpoint
import ModelState
@testable import Pruning

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures")

/// The rule written plainly, element by element, as the paper states it.
func referenceRule(_ w: inout [Float], _ g: [Float], _ mask: inout [UInt8], beta: Float, gamma: Float) -> Int {
    var pruned = 0
    for i in w.indices {
        if mask[i] != 0 && abs(w[i]) < beta && abs(g[i]) < gamma {
            w[i] = 0
            mask[i] = 0
            pruned += 1
        }
        if mask[i] == 0 { w[i] = 0 }
    }
    return pruned
}

func applyRule(_ w: inout [Float], _ g: [Float], _ mask: inout [UInt8], beta: Float, gamma: Float) -> Int {
    w.withUnsafeMutableBufferPointer { wp in
        mask.withUnsafeMutableBufferPointer { mp in
            applyPruningRule(weights: wp.baseAddress!, gradients: g, mask: mp.baseAddress!, count: wp.count, beta: beta, gamma: gamma)
        }
    }
}

@Suite struct RuleTests {
    @Test func strictThresholdsAndTheMaskCondition() {
        // Exactly at a threshold is not below it; a zero mask bit blocks nothing but forces w = 0.
        var w: [Float] = [0.05, 0.049, -0.049, 0.01, 0.01, 0.2, 0.03, -0.0]
        let g: [Float] = [0, 0, 0, 0.001, 0.0009, 0, -0.0009, 0]
        var mask: [UInt8] = [1, 1, 1, 1, 1, 1, 1, 1]
        let pruned = applyRule(&w, g, &mask, beta: 0.05, gamma: 0.001)
        #expect(pruned == 5)
        #expect(w == [0.05, 0, 0, 0.01, 0, 0.2, 0, 0])
        #expect(mask == [1, 0, 0, 1, 0, 1, 0, 0])
    }

    @Test func prunedWeightsStayPrunedAndZero() {
        var w: [Float] = [0.5, 0.5, 0.001]
        var mask: [UInt8] = [0, 1, 0]
        let pruned = applyRule(&w, [0, 0, 0], &mask, beta: 0.01, gamma: 1)
        #expect(pruned == 0, "bits already 0 are not counted again")
        #expect(w == [0, 0.5, 0])
        #expect(mask == [0, 1, 0])
    }

    @Test func repeatedPruningIsIdempotentAndMonotone() {
        var random = SystemRandomNumberGenerator()
        var w = (0..<1000).map { _ in Float.random(in: -0.1...0.1, using: &random) }
        let g = (0..<1000).map { _ in Float.random(in: -0.01...0.01, using: &random) }
        var mask = [UInt8](repeating: 1, count: 1000)
        let first = applyRule(&w, g, &mask, beta: 0.03, gamma: 0.005)
        let (w1, m1) = (w, mask)
        #expect(applyRule(&w, g, &mask, beta: 0.03, gamma: 0.005) == 0)
        #expect(w == w1 && mask == m1)
        let more = applyRule(&w, g, &mask, beta: 0.06, gamma: 0.005)
        #expect(more > 0)
        #expect(zip(m1, mask).allSatisfy { $0 >= $1 }, "a larger beta only clears more bits")
        #expect(first > 0)
    }

    @Test func nanIsNeverPrunedAndGammaInfinityIsMagnitudeOnly() {
        var w: [Float] = [.nan, 0.001, 0.001]
        var mask: [UInt8] = [1, 1, 1]
        _ = applyRule(&w, [0, .nan, 1e30], &mask, beta: 1, gamma: .infinity)
        #expect(w[0].isNaN && mask[0] == 1)
        #expect(mask[1] == 1, "a NaN gradient is not below gamma")
        #expect(mask[2] == 0, "gamma = inf prunes on magnitude alone")
    }

    /// The vector path and the scalar tail agree with the plain rule on every length.
    @Test(arguments: [0, 1, 15, 16, 17, 33, 1000, 4099])
    func matchesThePlainRule(count: Int) {
        var generator = SystemRandomNumberGenerator()
        let w0 = (0..<count).map { _ in Float.random(in: -0.1...0.1, using: &generator) }
        let g = (0..<count).map { _ in Float.random(in: -0.01...0.01, using: &generator) }
        let m0 = (0..<count).map { _ in UInt8.random(in: 0...1, using: &generator) == 0 ? UInt8(0) : UInt8(1) }
        var (w1, m1, w2, m2) = (w0, m0, w0, m0)
        let a = applyRule(&w1, g, &m1, beta: 0.04, gamma: 0.004)
        let b = referenceRule(&w2, g, &m2, beta: 0.04, gamma: 0.004)
        #expect(a == b)
        #expect(w1.map(\.bitPattern) == w2.map(\.bitPattern))
        #expect(m1 == m2)
    }
}

@Suite struct SelectionTests {
    let mobilenet: Checkpoint
    init() throws { mobilenet = try Checkpoint.open(fixtures.appendingPathComponent("mobilenet_k2.h5").path) }

    @Test func everyPrunableKernelByDefault() throws {
        let targets = try PruningSettings(beta: 0.05, gamma: 0.001).targets(in: mobilenet)
        #expect(targets.count == 28)
        #expect(targets.allSatisfy { $0.weight.prunable && $0.beta == 0.05 && $0.gamma == 0.001 })
    }

    @Test func includeExcludeSkipDepthwiseAndOverrides() throws {
        var settings = PruningSettings(beta: 0.05, gamma: 0.001)
        settings.exclude = ["conv1", "conv_preds"]
        settings.skipDepthwise = true
        settings.layerBeta = [("conv_pw_1?", 0.1)]
        settings.layerGamma = [("conv_pw_13", 0.5)]
        let targets = try settings.targets(in: mobilenet)
        #expect(targets.count == 13)
        #expect(!targets.contains { $0.weight.layerName == "conv1" || $0.weight.layerName == "conv_preds" })
        #expect(!targets.contains { $0.weight.role == .depthwiseKernel })
        #expect(targets.first { $0.weight.layerName == "conv_pw_12" }?.beta == 0.1)
        #expect(targets.first { $0.weight.layerName == "conv_pw_2" }?.beta == 0.05)
        #expect(targets.first { $0.weight.layerName == "conv_pw_13" }?.gamma == 0.5)
        settings.include = ["conv_pw_1*"]
        #expect(try settings.targets(in: mobilenet).map(\.weight.layerName).sorted()
                == ["conv_pw_1", "conv_pw_10", "conv_pw_11", "conv_pw_12", "conv_pw_13"])
    }

    @Test func patternsThatMatchNothingAreErrors() {
        var settings = PruningSettings(beta: 0.05, gamma: 0.001)
        settings.exclude = ["conv_typo"]
        #expect(throws: PruningError.self) { try settings.targets(in: mobilenet) }
        settings = PruningSettings(beta: -1, gamma: 0.001)
        #expect(throws: PruningError.self) { try settings.targets(in: mobilenet) }
        settings = PruningSettings(beta: 0.05, gamma: .nan)
        #expect(throws: PruningError.self) { try settings.targets(in: mobilenet) }
    }

    func model() throws -> Model { try Model(checkpoint: mobilenet) }

    /// Pseudo-random gradients with a fixed seed, the scale of the fixture's |dC/dw|.
    func gradients(_ targets: [PruningTarget], seed: UInt64 = 5) -> [CheckpointWeight: [Float]] {
        var state = seed
        return Dictionary(uniqueKeysWithValues: targets.map { target in
            (target.weight, (0..<target.weight.elementCount).map { _ -> Float in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float(Int64(bitPattern: state) >> 40) / Float(1 << 23) * 0.002
            })
        })
    }

    @Test func targetSparsityIsReachedAndNotOvershot() throws {
        let settings = PruningSettings(beta: 0, gamma: .infinity)
        let targets = try settings.targets(in: mobilenet)
        let none: [CheckpointWeight: [Float]] = [:]
        for goal in [0.3, 0.5, 0.9] {
            let model = try model()
            let chosen = try targetsForSparsity(model, targets: targets, gradients: none, sparsity: goal, perKernel: false)
            let report = try prune(model, targets: chosen, gradients: none)
            #expect(report.kernels.allSatisfy { $0.result.beta == chosen[0].beta })
            #expect(model.sparsity >= goal)
            #expect(model.sparsity < goal + 1e-4, "ties aside, beta stops at the target (\(model.sparsity))")
        }
        #expect(throws: PruningError.self) {
            try targetsForSparsity(try model(), targets: targets, gradients: none, sparsity: 0.99, perKernel: false)
        }
    }

    /// With per-layer gammas the one beta must count each kernel's own gamma: the sparsity lands
    /// on the target, beyond it by at most the weights tied at the chosen magnitude.
    @Test func targetSparsityHonoursPerLayerGammas() throws {
        var settings = PruningSettings(beta: 0, gamma: 0.001)
        settings.layerGamma = [("conv_pw_1*", 0.0002), ("conv_preds", .infinity)]
        let targets = try settings.targets(in: mobilenet)
        let gradients = gradients(targets)
        let model = try model()
        let chosen = try targetsForSparsity(model, targets: targets, gradients: gradients, sparsity: 0.2, perKernel: false)
        let beta = chosen[0].beta
        // The weights at exactly the chosen magnitude's predecessor: the tie group.
        var ties = 0
        for target in chosen {
            let values = model.parameter(for: target.weight)!.values, g = gradients[target.weight]!
            for i in values.indices where abs(values[i]) == beta.nextDown && abs(g[i]) < target.gamma { ties += 1 }
        }
        _ = try prune(model, targets: chosen, gradients: gradients)
        let zeros = model.totalParameters - model.nonzeroParameters
        let needed = Int((0.2 * Double(model.totalParameters)).rounded(.up))
        #expect(zeros >= needed)
        #expect(zeros - needed < max(1, ties), "overshoot \(zeros - needed) beyond the tie group of \(ties)")
        #expect(chosen.first { $0.weight.layerName == "conv_pw_12" }?.gamma == 0.0002)
    }

    /// --target-sparsity --per-layer: every kernel reaches the sparsity on its own, with its
    /// own beta, and the report (and so the file) records each one.
    @Test func perKernelTargetSparsityIsRecordedPerKernel() throws {
        let targets = try PruningSettings(beta: 0, gamma: .infinity).targets(in: mobilenet)
        let model = try model()
        let chosen = try targetsForSparsity(model, targets: targets, gradients: [:], sparsity: 0.5, perKernel: true)
        let report = try prune(model, targets: chosen, gradients: [:])
        #expect(Set(report.kernels.map(\.result.beta)).count > 10, "one beta per kernel")
        for (weight, result) in report.kernels {
            #expect(result.beta == chosen.first { $0.weight == weight }!.beta)
            #expect(result.sparsity >= 0.5 && result.sparsity < 0.5 + 2 / Double(result.parameters), "\(weight.datasetPath): \(result.sparsity)")
            #expect(report.maskAttributes[weight]?["beta"] == String(result.beta))
            #expect(report.maskAttributes[weight]?["pruned_total"] == String(result.prunedTotal))
        }
    }

    /// Per-layer thresholds are the ones applied, and a second step only ever clears more bits:
    /// what the first pruned stays pruned (and exactly zero) with a smaller beta.
    @Test func perLayerThresholdsAndMasksOnlyLoseBits() throws {
        var settings = PruningSettings(beta: 0.05, gamma: 0.001)
        settings.layerBeta = [("conv_pw_13", 0.2)]
        settings.layerGamma = [("conv_pw_13", .infinity)]
        let targets = try settings.targets(in: mobilenet)
        let gradients = gradients(targets)
        let model = try model()
        let first = try prune(model, targets: targets, gradients: gradients)
        let pw13 = try #require(first.kernels.first { $0.weight.layerName == "conv_pw_13" }?.result)
        #expect(pw13.beta == 0.2 && pw13.gamma == .infinity)
        // Exactly what the plain rule prunes with those thresholds.
        let source = try Model(checkpoint: mobilenet)
        for (weight, result) in first.kernels {
            let target = targets.first { $0.weight == weight }!
            var w = Array(source.parameter(for: weight)!.values), m = [UInt8](repeating: 1, count: w.count)
            let expected = referenceRule(&w, gradients[weight]!, &m, beta: target.beta, gamma: target.gamma)
            #expect(result.prunedNow == expected)
            #expect(model.parameter(for: weight)!.mask?.bits == m)
            #expect(Array(model.parameter(for: weight)!.values).map(\.bitPattern) == w.map(\.bitPattern))
        }
        let masks = Dictionary(uniqueKeysWithValues: model.parameters.compactMap { p in p.mask.map { (p.weight, $0) } })
        var smaller = settings
        smaller.beta = 0.01
        smaller.layerBeta = []
        let second = try prune(model, targets: try smaller.targets(in: mobilenet), gradients: gradients)
        for (weight, result) in second.kernels {
            let before = masks[weight]!, after = model.parameter(for: weight)!.mask!
            #expect((0..<before.count).allSatisfy { before[$0] || !after[$0] }, "\(weight.datasetPath): a bit came back")
            #expect((0..<after.count).allSatisfy { after[$0] || model.parameter(for: weight)!.values[$0] == 0 })
            #expect(result.prunedTotal == before.prunedCount + result.prunedNow)
        }
    }

    /// tfmot's count (pruning_impl._update_mask, tfmot 0.7.5): k = max(round(n (1 - s)), 1) kept,
    /// float32, round half to even. 144 entries at 0.55: 64.8 -> 65 kept, 79 pruned, what tfmot
    /// pruned in conv_dw_1 of the reference model (benchmarks/tfmot_gmp_check.py), where
    /// "at least S" (`--per-layer`) prunes ceil(79.2) = 80.
    @Test func tfmotKeptCountRoundsAsTfmot() {
        #expect(tfmotKeptCount(144, sparsity: 0.55) == 65)
        #expect(tfmotKeptCount(5, sparsity: 0.5) == 2, "2.5 rounds to even")
        #expect(tfmotKeptCount(7, sparsity: 0.5) == 4, "3.5 rounds to even")
        #expect(tfmotKeptCount(10, sparsity: 0.99) == 1, "at least one kept")
        #expect(tfmotKeptCount(432, sparsity: 0) == 432)
    }

    /// Entries tied with the k-th largest |w| are kept, as tfmot's mask |w| >= threshold keeps
    /// them: 5 entries at 0.5 keep k = 2, the k-th largest is 0.2, which three entries share, so
    /// only 0.1 is pruned (a "prune ties together" rule would prune four).
    @Test func tfmotThresholdKeepsTies() throws {
        let values: [Float] = [0.3, -0.2, 0.2, 0.1, 0.2]
        #expect(tfmotThreshold(values, sparsity: 0.5) == 0.2)
        var w = values, m = [UInt8](repeating: 1, count: 5)
        #expect(referenceRule(&w, [Float](repeating: 0, count: 5), &m, beta: 0.2, gamma: .infinity) == 1)
        #expect(m == [1, 1, 1, 0, 1])
        #expect(tfmotThreshold([Float.nan, 1, 2, 3], sparsity: 0.5) == 3, "NaN counts as the largest: NaN and 3 are kept")
    }

    /// On the MobileNet fixture every kernel's mask after one step is tfmot's, written plainly:
    /// sort |w| descending, keep |w| >= the k-th (tfmot's `top_k` and `greater_equal`).
    @Test func tfmotStepKeepsTfmotsMask() throws {
        var settings = PruningSettings(beta: 0, gamma: .infinity)
        settings.skipDepthwise = true
        let targets = try settings.targets(in: mobilenet)
        for goal in [0.5, 0.55, 0.8] {
            let pruned = try model(), source = try model()
            let chosen = try targetsForTfmotSparsity(pruned, targets: targets, sparsity: goal)
            _ = try prune(pruned, targets: chosen, gradients: [:])
            for target in targets {
                let w = Array(source.parameter(for: target.weight)!.values)
                let k = max(Int((Float(w.count) * (1 - Float(goal))).rounded(.toNearestOrEven)), 1)
                let threshold = w.map { abs($0) }.sorted(by: >)[k - 1]
                let expected = w.map { abs($0) >= threshold ? UInt8(1) : 0 }
                let mask = try #require(pruned.parameter(for: target.weight)!.mask)
                #expect(mask.bits == expected, "\(target.weight.datasetPath) at \(goal)")
                #expect(mask.prunedCount == w.count - k, "\(target.weight.datasetPath): the fixture's weights are distinct")
            }
        }
    }

    @Test func partialSelectionEqualsSorting() {
        var state: UInt64 = 3
        for count in [1, 2, 3, 17, 1000, 4097] {
            let values = (0..<count).map { _ -> Float in
                state = state &* 6364136223846793005 &+ 1442695040888963407
                return Float((state >> 33) % 50)  // many ties
            }
            let sorted = values.sorted()
            for k in [0, count / 3, count / 2, count - 1] {
                var copy = values
                #expect(kthSmallest(&copy, k) == sorted[k], "count \(count), k \(k)")
            }
        }
    }
}

@Suite struct ParallelRuleTests {
    /// The multi-threaded rule over many tensors equals the single-tensor rule on each.
    @Test func parallelEqualsSerial() {
        var generator = SystemRandomNumberGenerator()
        let sizes = [70_000, 3, 150_001, 16, 99_999]
        let total = sizes.reduce(0, +)
        let w0 = (0..<total).map { _ in Float.random(in: -0.1...0.1, using: &generator) }
        let g = (0..<total).map { _ in Float.random(in: -0.01...0.01, using: &generator) }
        var (w1, m1) = (w0, [UInt8](repeating: 1, count: total))
        var (w2, m2) = (w0, [UInt8](repeating: 1, count: total))
        var serial: [Int] = []
        var offset = 0
        for size in sizes {
            var w = Array(w1[offset..<(offset + size)]), m = Array(m1[offset..<(offset + size)])
            serial.append(applyRule(&w, Array(g[offset..<(offset + size)]), &m, beta: 0.05, gamma: 0.005))
            w1.replaceSubrange(offset..<(offset + size), with: w)
            m1.replaceSubrange(offset..<(offset + size), with: m)
            offset += size
        }
        let parallel: [Int] = w2.withUnsafeMutableBufferPointer { w in
            m2.withUnsafeMutableBufferPointer { m in
                g.withUnsafeBufferPointer { gp in
                    var jobs: [PruningJob] = []
                    var start = 0
                    for size in sizes {
                        jobs.append(PruningJob(weights: w.baseAddress! + start, gradients: gp.baseAddress! + start,
                                               mask: m.baseAddress! + start, count: size, beta: 0.05, gamma: 0.005))
                        start += size
                    }
                    return applyPruningRule(to: jobs, threads: 3)
                }
            }
        }
        #expect(parallel == serial)
        #expect(w1.map(\.bitPattern) == w2.map(\.bitPattern))
        #expect(m1 == m2)
    }
}
