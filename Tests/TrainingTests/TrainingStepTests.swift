import Foundation
import HDF5
import KerasCheckpoint
import Testing
@testable import Network
@testable import Training

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures")

/// Two training steps of rescnn_k2.h5 in gmtool against `model.train_on_batch` in tf.keras
/// (fixtures/make_training_golden.py): every weight, BatchNorm moving statistics included.
@Suite struct KerasTrainingStepTests {
    let golden: HDF5File
    init() throws { golden = try HDF5File.open(fixtures.appendingPathComponent("golden/rescnn_training_golden.h5").path) }

    func batch(_ index: Int) throws -> (images: [Float], labels: [Int32]) {
        let group = try golden.root.group("batch\(index)")
        return (try group.dataset("images").read(as: UInt8.self).map { Float($0) / 255 }, try group.dataset("labels").read(as: Int32.self))
    }

    @Test(arguments: [
        ("sgd_momentum", OptimizerKind.sgd(momentum: 0.9, nesterov: false), 0.1, Float(0)),
        ("sgd_nesterov_wd", OptimizerKind.sgd(momentum: 0.9, nesterov: true), 0.05, Float(0.01)),
        ("adam", OptimizerKind.adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-7), 0.01, Float(0)),
    ])
    func twoStepsMatchKeras(name: String, kind: OptimizerKind, learningRate: Double, weightDecay: Float) throws {
        for workers in [1, 2] {
            let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
            let network = try Network(checkpoint: checkpoint, inputShape: [32, 32, 3], workers: workers)
            let optimizer = Optimizer(settings: OptimizerSettings(kind: kind, learningRate: learningRate, weightDecay: weightDecay))
            for step in 1...2 {
                let (images, labels) = try batch(step)
                let totals = images.withUnsafeBufferPointer { x in
                    labels.withUnsafeBufferPointer { y in
                        network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: 8, accumulateGradients: true, trainingSeed: 0)
                    }
                }
                let group = try golden.root.group("\(name)/step\(step)")
                let kerasLoss = try group.attribute("loss").read(as: Double.self)[0]
                #expect(abs(totals.meanLoss - kerasLoss) < 1e-5, "\(name) step \(step) loss")
                network.withMeanGradients(imageCount: 8) { optimizer.step(network.trainableParameters, gradients: $0, masks: [:]) }
                network.parametersChanged()
                for parameter in network.parameters {
                    let path = parameter.weight.datasetPath
                    // In training mode BatchNorm cancels the bias of the convolution before it: its
                    // true gradient is 0 and TensorFlow's is float32 noise (|g| <= 5e-7), which Adam's
                    // normalisation blows up to 1e-3 steps (fixtures/golden/README.md). Skipped there.
                    if case .adam = kind, path.contains("stem_conv/bias") || path.contains("branch_conv/bias") { continue }
                    let reference = try group.dataset(String(path.dropFirst())).read(as: Float.self)
                    let error = zip(parameter.values, reference).map { abs($0 - $1) }.max() ?? 0
                    var tolerance: Float = path.contains("moving_mean") && step == 2 ? 2e-5 : 1e-5
                    // The kernels of those convolutions share the effect on their smallest entries:
                    // Adam's m / sqrt(v) turns float32 differences of 1e-7 into up to 2e-5 (0.2% of
                    // the 0.01 step). SGD matches them to 1e-5 like everything else.
                    if case .adam = kind, path.contains("stem_conv/kernel") || path.contains("branch_conv/kernel") { tolerance = 5e-5 }
                    #expect(error <= tolerance, "\(name) step \(step) workers \(workers) \(path): \(error)")
                }
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
        let network = try Network(checkpoint: checkpoint, inputShape: [32, 32, 3], workers: 2)
        let optimizer = Optimizer(settings: OptimizerSettings(kind: kind, learningRate: 0.1, weightDecay: 0.01))
        let images = (0..<(8 * 3072)).map { Float(($0 * 37) % 255) / 255 }
        let labels: [Int32] = [0, 1, 2, 3, 4, 5, 6, 7]
        func step(_ masks: [String: [UInt8]]) {
            _ = images.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: 8, accumulateGradients: true, trainingSeed: 1)
                }
            }
            network.withMeanGradients(imageCount: 8) { optimizer.step(network.trainableParameters, gradients: $0, masks: masks) }
        }
        // Build up momentum with no mask, then prune half of every kernel.
        for _ in 0..<3 { step([:]) }
        var masks: [String: [UInt8]] = [:]
        for parameter in network.trainableParameters where parameter.weight.prunable {
            let mask = (0..<parameter.weight.elementCount).map { UInt8($0 % 2) }
            masks[parameter.weight.datasetPath] = mask
            for i in mask.indices where mask[i] == 0 { parameter.values[i] = 0 }
        }
        optimizer.applyMasks(masks)
        for _ in 0..<5 { step(masks) }
        for parameter in network.trainableParameters where parameter.weight.prunable {
            let mask = masks[parameter.weight.datasetPath]!
            let (first, second) = optimizer.slots(for: parameter.weight.datasetPath)
            for i in mask.indices where mask[i] == 0 {
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
