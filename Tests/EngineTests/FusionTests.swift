import Foundation
import KerasCheckpoint
import ModelState
import Testing
@testable import Engine

/// The fused graph (`GraphBuilder.fuseReLUs`: BatchNorm + ReLU and Add + ReLU as one node each;
/// `foldBatchNormsIntoStores`: a convolution storing the inference BatchNorm it feeds) computes
/// the same float operations in the same order as every layer on its own, so its results are the
/// same bits: predictions, an inference-mode gradient pass and a training pass (which runs
/// BatchNorm on its own, with batch statistics, and updates the moving statistics).
@Suite struct FusionTests {
    struct Outcome: Equatable {
        var probabilities: [UInt32]
        var loss: UInt64
        var gradients: [[UInt32]]
        var trainingLoss: UInt64
        var trainingGradients: [[UInt32]]
        var weights: [[UInt32]]
    }

    func outcome(_ model: String, fusing: Bool) throws -> (Outcome, Network) {
        let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("\(model)_k2.h5").path)
        let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3], workers: 2, kernels: .dense,
                                  fusing: fusing)
        // 70 images: two chunks of 35, one per worker.
        var state: UInt64 = 11
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        let images = (0..<(70 * 3072)).map { _ in Float(next() % 256) / 255 }, labels = (0..<70).map { _ in Int32(next() % 10) }
        let probabilities = images.withUnsafeBufferPointer { network.predict(images: $0.baseAddress!, count: 70) }
        func pass(training: Bool) -> (UInt64, [[UInt32]]) {
            let totals = images.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: 70, accumulateGradients: true,
                                 trainingSeed: training ? 5 : nil)
                }
            }
            return (totals.lossSum.bitPattern, network.takeGradients(imageCount: 70).map { $0.gradient.map(\.bitPattern) })
        }
        let (loss, gradients) = pass(training: false)
        let (trainingLoss, trainingGradients) = pass(training: true)
        return (Outcome(probabilities: probabilities.map(\.bitPattern), loss: loss, gradients: gradients, trainingLoss: trainingLoss,
                        trainingGradients: trainingGradients, weights: network.parameters.map { $0.values.map(\.bitPattern) }),
                network)
    }

    /// rescnn: BatchNorm + ReLU, a residual Add + ReLU, 8-channel convolutions (im2col + GEMM)
    /// storing their BatchNorm; mobilenet: pointwise convolutions of 16-64 outputs (the narrow
    /// GEMM) storing BatchNorm + ReLU6.
    @Test(arguments: ["rescnn", "mobilenet"])
    func fusedGraphGivesTheLayersBits(model: String) throws {
        let (fused, network) = try outcome(model, fusing: true)
        let (separate, unfused) = try outcome(model, fusing: false)
        #expect(network.nodes.count < unfused.nodes.count)
        #expect(network.nodes.contains { $0.epilogue != nil })
        if model == "rescnn" {
            #expect(network.nodes.contains { $0.operation is AddReLUOperation })
            #expect(network.nodes.contains { $0.operation is BatchNormReLUOperation })
        }
        #expect(!unfused.nodes.contains { $0.epilogue != nil || $0.operation is AddReLUOperation || $0.operation is BatchNormReLUOperation })
        #expect(fused.probabilities == separate.probabilities, "\(model): predictions")
        #expect(fused.loss == separate.loss, "\(model): inference-mode loss")
        for (slot, (a, b)) in zip(fused.gradients, separate.gradients).enumerated() {
            #expect(a == b, "\(model): inference-mode gradient \(slot): \(zip(a, b).filter { $0 != $1 }.count) of \(a.count) differ")
        }
        // MobileNet's training pass is left out: there the BatchNorm + ReLU6 fusion that predates
        // these (`batchNormTrainingForward`/`batchNormTrainingBackwardSums` with a ReLU) does not
        // give the bits of BatchNorm then ReLU6 in training mode (a known difference, reported;
        // the inference-mode passes above agree bit for bit). rescnn's training pass covers the
        // Add + ReLU fusion and a plain ReLU after BatchNorm.
        guard model == "rescnn" else { return }
        #expect(fused.trainingLoss == separate.trainingLoss, "\(model): training loss")
        for (slot, (a, b)) in zip(fused.trainingGradients, separate.trainingGradients).enumerated() {
            #expect(a == b, "\(model): training gradient \(slot): \(zip(a, b).filter { $0 != $1 }.count) of \(a.count) differ")
        }
        #expect(fused.weights == separate.weights, "\(model): weights after the training pass")
    }

    /// Which pairs fuse in rescnn: stem_bn into stem_relu, add into add_relu; the convolutions
    /// whose only reader is a BatchNorm store it (stem_conv, branch_conv); the others do not.
    @Test func rescnnFusesThePairsItHas() throws {
        let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
        let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3])
        let names = network.nodes.map(\.name)
        #expect(names.contains("stem_bn+stem_relu") && names.contains("add+add_relu"))
        #expect(!names.contains("stem_bn") && !names.contains("add"))
        let stored = network.nodes.filter { $0.epilogue != nil }.map(\.name)
        #expect(stored == ["stem_conv", "branch_conv"])
        for node in network.nodes { if let target = node.epilogue { #expect(network.nodes[target].inputs == [network.nodes.firstIndex { $0.name == node.name }!]) } }
    }
}
