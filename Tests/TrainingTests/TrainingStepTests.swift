import Engine
import Foundation
import HDF5
import KerasCheckpoint
import ModelState
import Testing
@testable import Engine
@testable import Training

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures")

/// Training steps of rescnn_k2.h5 in gmtool against `model.train_on_batch` in tf.keras
/// (fixtures/make_training_golden.py): every weight, BatchNorm moving statistics included.
///
/// Each step starts from Keras' own state before it (step 2: Keras' weights after step 1, and
/// the optimizer slots Keras' rule makes from TensorFlow's recorded step-1 gradient), so the two
/// sides differ only in how each computes that one step, never in what earlier steps left behind.
/// The tolerance of every entry is derived from that difference rather than tuned:
///  * the gradient: both sides compute dC/dw in float32. GoldenTests bounds gmtool's gradient by
///    2e-4 of its tensor's largest entry against float64 TensorFlow, and TensorFlow's float32 is
///    within the same bound (1.2e-4 measured, fixtures/golden/README.md); so they differ by at
///    most `gradientBound = 4e-4` of the largest gradient entry. It is taken over the whole layer
///    (kernel and bias): one pass of float32 sums produces both, so their rounding noise has the
///    layer's scale. That matters where the true gradient is 0 and only noise is left (the bias
///    of a convolution feeding a training-mode BatchNorm: BatchNorm subtracts it again).
///  * the update: the optimizer's step is evaluated over the interval g ± bound of every entry
///    (`updateInterval`), so Adam's m / (sqrt(v) + eps), which turns a noise gradient into a step
///    of up to lr, gets exactly the room its inputs allow, and SGD the lr x bound it allows.
///  * float32 rounding of the step itself: `roundingULPs` units in the last place of the
///    weight's magnitude, for the handful of rounded operations each side performs.
///  * moving statistics: mean and variance of the BatchNorm input, which each side computes with
///    its own float32 convolution; 0.01 of their difference (momentum 0.99) plus rounding.
@Suite struct KerasTrainingStepTests {
    let golden: HDF5File
    init() throws { golden = try HDF5File.open(fixtures.appendingPathComponent("golden/rescnn_training_golden.h5").path) }

    static let gradientBound: Float = 4e-4
    /// w - step costs one rounding; the step (Adam: m, v, sqrt, the division, alpha) up to five
    /// more, each at most half an ulp, on each side: 2 x 6 x 0.5 = 6 ulps, rounded up to 8.
    static let roundingULPs: Float = 8

    func batch(_ index: Int) throws -> (images: [Float], labels: [Int32]) {
        let group = try golden.root.group("batch\(index)")
        return (try group.dataset("images").read(as: UInt8.self).map { Float($0) / 255 }, try group.dataset("labels").read(as: Int32.self))
    }

    /// The smallest and largest step (the amount subtracted from w) `kind` takes for a gradient
    /// in [low, high], given the slots before the step. Each optimizer's step is monotone in m
    /// and in v, and m and v are monotone in g and g^2, so the ends of the intervals bound it.
    static func updateInterval(_ kind: OptimizerKind, lr: Float, t: Float, low: Float, high: Float,
                               first: Float, second: Float) -> ClosedRange<Float> {
        switch kind {
        case .sgd(let momentum, let nesterov):
            // w += m (or momentum m - lr g) with m = momentum m_old - lr g: linear in g.
            let slope = lr * (nesterov ? 1 + momentum : 1)
            let constant = -(nesterov ? momentum * momentum : momentum) * first
            return (constant + slope * low)...(constant + slope * high)
        case .adam(let beta1, let beta2, let epsilon):
            let alpha = lr * (1 - pow(beta2, t)).squareRoot() / (1 - pow(beta1, t))
            let mLow = first + (low - first) * (1 - beta1), mHigh = first + (high - first) * (1 - beta1)
            let squareLow: Float = low <= 0 && high >= 0 ? 0 : min(low * low, high * high)
            let squareHigh = max(low * low, high * high)
            let dLow = (second + (squareLow - second) * (1 - beta2)).squareRoot() + epsilon
            let dHigh = (second + (squareHigh - second) * (1 - beta2)).squareRoot() + epsilon
            let ends = [mLow / dLow, mLow / dHigh, mHigh / dLow, mHigh / dHigh].map { $0 * alpha }
            return ends.min()!...ends.max()!
        }
    }

    @Test(arguments: [
        ("sgd_momentum", OptimizerKind.sgd(momentum: 0.9, nesterov: false), 0.1, Float(0)),
        ("sgd_nesterov_wd", OptimizerKind.sgd(momentum: 0.9, nesterov: true), 0.05, Float(0.01)),
        ("adam", OptimizerKind.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-7), 0.01, Float(0)),
    ])
    func eachStepMatchesKeras(name: String, kind: OptimizerKind, learningRate: Double, weightDecay: Float) throws {
        // TensorFlow's step-1 gradient, from which Keras' slots after step 1 follow.
        var kerasGradient1: [String: [Float]] = [:]
        for workers in [1, 2] {
            for step in 1...2 {
                let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
                let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3], workers: workers)
                let optimizer = Optimizer(settings: OptimizerSettings(kind: kind, learningRate: learningRate, weightDecay: weightDecay))
                var first: [String: [Float]] = [:], second: [String: [Float]] = [:]
                if step == 2 {
                    for parameter in network.parameters {
                        let path = parameter.weight.datasetPath
                        let values = try golden.root.dataset("\(name)/step1" + path).read(as: Float.self)
                        parameter.set(values)
                        guard parameter.weight.trainable else { continue }
                        if kerasGradient1[path] == nil {
                            kerasGradient1[path] = try golden.root.dataset("gradients_step1" + path).read(as: Float.self)
                        }
                        let g = kerasGradient1[path]!
                        switch kind {
                        case .sgd: first[path] = g.map { -$0 * Float(learningRate) }
                        case .adam(let beta1, let beta2, _):
                            first[path] = g.map { $0 * (1 - beta1) }
                            second[path] = g.map { $0 * $0 * (1 - beta2) }
                        }
                        _ = parameter.slot(0).update(fromContentsOf: first[path]!)
                        if let v = second[path] { _ = parameter.slot(1).update(fromContentsOf: v) }
                    }
                    optimizer.restore(iterations: 1)
                }
                let before = Dictionary(uniqueKeysWithValues: network.parameters.map { ($0.weight.datasetPath, Array($0.values)) })
                let (images, labels) = try batch(step)
                let totals = images.withUnsafeBufferPointer { x in
                    labels.withUnsafeBufferPointer { y in
                        network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: 8, accumulateGradients: true, trainingSeed: 0)
                    }
                }
                let group = try golden.root.group("\(name)/step\(step)")
                // The loss: a mean of 8 float32 cross-entropies, each within a few ulps of ~2.3.
                let kerasLoss = try group.attribute("loss").read(as: Double.self)[0]
                #expect(abs(totals.meanLoss - kerasLoss) < 1e-5, "\(name) step \(step) loss")
                var gradients: [String: [Float]] = [:]
                network.withMeanGradients(imageCount: 8) { pointers in
                    for (parameter, pointer) in zip(network.trainableParameters, pointers) {
                        gradients[parameter.weight.datasetPath] = Array(UnsafeBufferPointer(start: pointer, count: parameter.weight.elementCount))
                    }
                    optimizer.step(network.trainableParameters, gradients: pointers)
                }
                // The gradient bound of each layer: its largest gradient entry.
                var layerScale: [String: Float] = [:]
                for parameter in network.trainableParameters {
                    let layer = parameter.weight.layerName
                    layerScale[layer] = max(layerScale[layer] ?? 0, gradients[parameter.weight.datasetPath]!.map(abs).max() ?? 0)
                }
                var worstRatio: Float = 0
                for parameter in network.parameters {
                    let path = parameter.weight.datasetPath
                    let reference = try group.dataset(String(path.dropFirst())).read(as: Float.self)
                    let old = before[path]!
                    var tolerance = [Float](repeating: 0, count: reference.count)
                    if parameter.weight.trainable {
                        let g = gradients[path]!, bound = Self.gradientBound * layerScale[parameter.weight.layerName]!
                        let lr = Float(learningRate)
                        for i in reference.indices {
                            let decayed = old[i] - old[i] * weightDecay * lr
                            let steps = Self.updateInterval(kind, lr: lr, t: Float(step), low: g[i] - bound, high: g[i] + bound,
                                                            first: step == 2 ? first[path]![i] : 0,
                                                            second: step == 2 ? (second[path]?[i] ?? 0) : 0)
                            // Keras' step lies in the interval; so does ours, and the two differ by at
                            // most its width beyond ours on either side.
                            let ours = decayed - parameter.values[i]
                            let room = max(ours - steps.lowerBound, steps.upperBound - ours, 0)
                            tolerance[i] = room + Self.roundingULPs * max(abs(reference[i]), abs(old[i])).ulp
                        }
                    } else {
                        // moving = 0.99 moving + 0.01 statistic: the statistic (mean or unbiased
                        // variance of the BatchNorm input) differs by the two float32
                        // convolutions' rounding, bounded like the gradients by 4e-4 of the
                        // largest value; 0.01 of that, and rounding.
                        let statistic = zip(reference, old).map { abs($0 - 0.99 * $1) / 0.01 }
                        let scale = statistic.max() ?? 0
                        for i in reference.indices {
                            tolerance[i] = 0.01 * Self.gradientBound * scale + Self.roundingULPs * max(abs(reference[i]), abs(old[i])).ulp
                        }
                    }
                    for i in reference.indices {
                        let error = abs(parameter.values[i] - reference[i])
                        worstRatio = max(worstRatio, error / tolerance[i])
                        if error > tolerance[i] {
                            Issue.record("\(name) step \(step) workers \(workers) \(path)[\(i)]: |\(parameter.values[i]) - \(reference[i])| = \(error) > \(tolerance[i])")
                            break
                        }
                    }
                }
                print("\(name) step \(step) (\(workers) workers): worst error / tolerance = \(worstRatio)")
            }
        }
    }
}

@Suite struct MaskTests {
    /// Momentum, weight decay and Adam's moments cannot bring a pruned weight back.
    @Test(arguments: [
        OptimizerKind.sgd(momentum: 0.9, nesterov: false), OptimizerKind.sgd(momentum: 0.9, nesterov: true),
        OptimizerKind.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-7),
    ])
    func prunedWeightsStayZero(kind: OptimizerKind) throws {
        let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
        let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3], workers: 2)
        let optimizer = Optimizer(settings: OptimizerSettings(kind: kind, learningRate: 0.1, weightDecay: 0.01))
        let images = (0..<(8 * 3072)).map { Float(($0 * 37) % 255) / 255 }
        let labels: [Int32] = [0, 1, 2, 3, 4, 5, 6, 7]
        func step() {
            _ = images.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: 8, accumulateGradients: true, trainingSeed: 1)
                }
            }
            network.withMeanGradients(imageCount: 8) { optimizer.step(network.trainableParameters, gradients: $0) }
        }
        // Build up momentum with no mask, then prune half of every kernel.
        for _ in 0..<3 { step() }
        for parameter in network.trainableParameters where parameter.weight.prunable {
            parameter.setMask(Mask((0..<parameter.weight.elementCount).map { UInt8($0 % 2) }))
        }
        for _ in 0..<5 { step() }
        for parameter in network.trainableParameters where parameter.weight.prunable {
            let mask = try #require(parameter.mask)
            let (first, second) = (parameter.slotValues(0), parameter.slotValues(1))
            for i in 0..<mask.count where !mask[i] {
                #expect(parameter.values[i] == 0)
                #expect(first?[i] ?? 0 == 0)
                #expect(second?[i] ?? 0 == 0)
            }
            #expect(parameter.values.contains { $0 != 0 }, "unmasked weights still train")
        }
    }
}

@Suite struct ScheduleTests {
    @Test func prunesAtMultiplesOfDelta() {
        let settings = TrainingSettings(epochs: 10, batchSize: 8, seed: 1, augment: false,
                                        optimizer: OptimizerSettings(kind: .sgd(momentum: 0, nesterov: false), learningRate: 0.1),
                                        beta: 0.1, gamma: .infinity, delta: 3)
        #expect((1...10).filter(settings.prunes(afterEpoch:)) == [3, 6, 9])
        var dense = settings
        dense.beta = nil
        #expect((1...10).filter(dense.prunes(afterEpoch:)).isEmpty)
    }

    @Test func learningRateSchedulesFollowKeras() {
        #expect(LearningRateSchedule.constant.rate(0.1, step: 99) == 0.1)
        #expect(abs(LearningRateSchedule.step(everySteps: 10, factor: 0.5).rate(0.1, step: 25) - 0.025) < 1e-15)
        #expect(abs(LearningRateSchedule.cosine(totalSteps: 100).rate(0.1, step: 50) - 0.05) < 1e-12)
        #expect(LearningRateSchedule.cosine(totalSteps: 100).rate(0.1, step: 200) == 0)
    }
}
