import CIFAR
import Engine
import Foundation
import KerasCheckpoint
import ModelState
import Pruning
import Testing
@testable import Analysis

@Suite struct GridTests {
    @Test func rangesAndLists() throws {
        #expect(try GridValues.parse("0.01:0.3:12", name: "--beta").count == 12)
        let linear = try GridValues.parse("0:1:5", name: "x")
        #expect(linear == [0, 0.25, 0.5, 0.75, 1])
        let log = try GridValues.parse("1e-4:1e-1:4:log", name: "x")
        #expect(log.first == 1e-4 && log.last == 1e-1 && log.count == 4)
        // Interior log values are 10^(a + i(b-a)/(n-1)): exact to a few ulps.
        #expect(abs(log[1] - 1e-3) < 1e-3 * 1e-14 && abs(log[2] - 1e-2) < 1e-2 * 1e-14)
        let steps = try GridValues.parse("0:0.95:0.05", name: "--levels")
        #expect(steps.count == 20 && steps.first == 0 && steps.last == 0.95)
        #expect(try GridValues.parse("0:0.9:0.2", name: "x") == [0, 0.2, 0.4, 0.6000000000000001, 0.8])
        #expect(try GridValues.parse("1e-4, 1e-3,inf", name: "--gamma") == [1e-4, 1e-3, .infinity])
        #expect(try GridValues.parse("0.5:0.5:1,0.7", name: "x") == [0.5, 0.7])
    }

    @Test(arguments: [
        ("", "empty value"), ("0.1,,0.2", "empty value"), ("0.3:0.1:4", "inverted"), ("0:1:0", "empty (0 values)"),
        ("0:1:1", "1 value cannot span"), ("0:1:3:log", "log range needs a > 0"), ("abc", "not a number"), ("0:1", "a range is"),
        ("0:1:x", "not a count"), ("0:1:-0.1", "positive"), ("0.1,0.1", "appears twice"), ("0:inf:3", "finite"),
        ("0.2:0.2:3", "empty range"),
    ])
    func badGridsSayWhy(text: String, fragment: String) {
        #expect {
            _ = try GridValues.parse(text, name: "--beta")
        } throws: { error in
            "\(error)".contains(fragment) && "\(error)".hasPrefix("--beta '\(text)'")
        }
    }
}

@Suite struct ExplorerTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = repository.appendingPathComponent("fixtures/mobilenet_k2.h5").path
    static let data = repository.deletingLastPathComponent().appendingPathComponent("shared/data/cifar10-jpeg").path

    /// A copy pruned and restored is the original again, bit for bit, masks included.
    @Test func copyRestoresExactly() throws {
        let original = try Model(checkpoint: try Checkpoint.open(Self.model))
        let working = original.copy()
        let targets = try PruningSettings(beta: 0.1, gamma: .infinity).targets(in: original.checkpoint)
        _ = try prune(working, targets: targets, gradients: [:])
        #expect(working.nonzeroParameters < original.nonzeroParameters)
        #expect(original.parameters.allSatisfy { $0.mask == nil && $0.version == 0 }, "the original is never touched")
        working.restore(from: original)
        #expect(working.weightsDigest == original.weightsDigest)
        #expect(zip(working.parameters, original.parameters).allSatisfy { $0.mask == $1.mask })
    }

    /// Each sweep point equals a fresh load of the file pruned once and evaluated: the same
    /// top-1, top-5, loss bits and non-zeros, in any order of points.
    @Test func sweepPointsEqualFreshPrunes() throws {
        let images = try CIFARDataset(paths: [Self.data], split: .validation, limit: 100, scaling: .unit)
        let original = try Model(checkpoint: try Checkpoint.open(Self.model))
        let working = original.copy()
        let network = try Network(model: working)
        let gradients = Dictionary(uniqueKeysWithValues: try network.gradients(images).gradients.map { ($0.weight, $0.values) })
        let targets = try PruningSettings(beta: 0, gamma: .infinity).targets(in: original.checkpoint)
        let explorer = PruningExplorer(original: original, working: working, network: network, targets: targets, gradients: gradients,
                                       evaluation: images, batchSize: 100)
        let points = [SweepPoint(beta: 0.2, gamma: .infinity), SweepPoint(beta: 0.05, gamma: 1e-3), SweepPoint(beta: 0.2, gamma: 1e-3)]
        let outcomes = try explorer.sweep(points)
        for (point, outcome) in zip(points, outcomes) {
            let fresh = try Model(checkpoint: try Checkpoint.open(Self.model))
            var chosen = try PruningSettings(beta: point.beta, gamma: point.gamma).targets(in: fresh.checkpoint)
            chosen = chosen.map { var t = $0; t.beta = point.beta; return t }
            _ = try prune(fresh, targets: chosen, gradients: gradients)
            let report = try Network(model: fresh).evaluate(images)
            #expect(outcome.top1 == report.top1Accuracy && outcome.top5 == report.top5Accuracy)
            #expect(outcome.loss.bitPattern == report.meanLoss.bitPattern)
            #expect(outcome.nonzero == fresh.nonzeroParameters && outcome.sparsity == fresh.sparsity)
            #expect(outcome.layers.reduce(0) { $0 + $1.nonzero } == fresh.parameters.filter(\.weight.prunable).reduce(0) { $0 + $1.nonzeroCount })
        }
        // The grid's ends: more beta prunes more; gamma inf prunes at least what gamma 1e-3 does.
        #expect(outcomes[0].sparsity >= outcomes[2].sparsity && outcomes[2].sparsity >= outcomes[1].sparsity)
        // The sizes are the export's formulas summed over the prunable kernels.
        let first = outcomes[0]
        #expect(first.smallerBytes <= min(first.csrBytes, first.bitmaskBytes))
        #expect(first.denseKernelBytes == 4 * first.layers.reduce(0) { $0 + $1.parameters })
    }

    @Test func selectionAndFrontier() {
        func point(_ s: Double, _ top1: Double) -> PointOutcome {
            PointOutcome(beta: 0, gamma: 0, sparsity: s, kernelSparsity: s, nonzero: 0, parameters: 0, prunedNow: 0, csrBytes: 0, bitmaskBytes: 0,
                         smallerBytes: 0, denseKernelBytes: 0, top1: top1, top5: 0, loss: 0, layers: [])
        }
        let points = [point(0.1, 0.90), point(0.5, 0.895), point(0.6, 0.88), point(0.4, 0.80), point(0.9, 0.2)]
        #expect(sparsestWithin(points, baseline: 0.90, maxDrop: 0.01) == 1)
        #expect(sparsestWithin(points, baseline: 0.90, maxDrop: 0.02) == 2)
        #expect(sparsestWithin(points, baseline: 0.99, maxDrop: 0.01) == nil)
        #expect(frontier(points).map(\.sparsity) == [0.1, 0.5, 0.6, 0.9])
        let rows = [0.0, 0.3, 0.6, 0.9].map { SensitivityRow(parameter: "a/kernel", layer: "a", level: $0, sparsity: $0, beta: 0, top1: $0 < 0.7 ? 0.9 : 0.5, top5: 1, loss: 0) }
            + [0.0, 0.3, 0.6].map { SensitivityRow(parameter: "b/kernel", layer: "b", level: $0, sparsity: $0, beta: 0, top1: $0 == 0.3 ? 0.5 : 0.9, top5: 1, loss: 0) }
        let suggested = suggestedLayerTargets(rows, baseline: 0.9, maxDrop: 0.01)
        // b drops at 0.3: nothing suggested for it even though 0.6 looks fine (not monotone).
        #expect(suggested.map(\.layer) == ["a"] && suggested.map(\.sparsity) == [0.6])
        #expect(literalPattern("conv[1]*") == "conv\\[1\\]\\*")
    }
}
