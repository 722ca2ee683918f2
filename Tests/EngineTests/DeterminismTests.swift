import Engine
import Foundation
import KerasCheckpoint
import ModelState
import Testing
@testable import Engine

/// Results are the same bytes for any number of workers: the batch is cut into chunks by its
/// size alone, and every sum over images runs per chunk, then over chunks in chunk order.
@Suite struct DeterminismTests {
    @Test func chunksDependOnTheBatchAlone() {
        #expect(Network.chunks(0).isEmpty)
        #expect(Network.chunks(1) == [0..<1])
        #expect(Network.chunks(64) == [0..<64])
        #expect(Network.chunks(65) == [0..<33, 33..<65])
        #expect(Network.chunks(100) == [0..<50, 50..<100])
        #expect(Network.chunks(150) == [0..<50, 50..<100, 100..<150])
        for count in 1...300 {
            let chunks = Network.chunks(count)
            #expect(chunks.first?.lowerBound == 0 && chunks.last?.upperBound == count)
            #expect(zip(chunks, chunks.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound })
            #expect(chunks.allSatisfy { $0.count <= Network.chunkLimit && $0.count >= chunks[0].count - 1 })
        }
    }

    /// Pseudo-random images in [0, 1) and labels: enough of them for several chunks.
    func batch(_ count: Int) -> ([Float], [Int32]) {
        var state: UInt64 = 7
        func next() -> UInt64 { state = state &* 6364136223846793005 &+ 1442695040888963407; return state >> 33 }
        return ((0..<(count * 3072)).map { _ in Float(next() % 256) / 255 }, (0..<count).map { _ in Int32(next() % 10) })
    }

    struct Outcome: Equatable {
        var loss: UInt64
        var top1: Int
        var gradients: [[UInt32]]
        var probabilities: [UInt32]
        var weights: [[UInt32]]
    }

    /// An inference-mode gradient pass and a training-mode pass (batch statistics, Dropout in
    /// seqcnn) over 150 images: three chunks, which 1, 2 and 3 workers share out differently; the
    /// gradient pass runs twice (150 then 70 images), so chunk accumulators carry across batches.
    func outcome(model: String, workers: Int, training: Bool) throws -> Outcome {
        let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("\(model)_k2.h5").path)
        let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3], workers: workers)
        let (images, labels) = batch(150)
        var totals = PassTotals()
        for count in training ? [150] : [150, 70] {
            totals = totals + images.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: count, accumulateGradients: true,
                                 trainingSeed: training ? 3 : nil)
                }
            }
        }
        let gradients = network.takeGradients(imageCount: totals.images).map { $0.gradient.map(\.bitPattern) }
        let probabilities = images.withUnsafeBufferPointer { network.predict(images: $0.baseAddress!, count: 150) }
        return Outcome(loss: totals.lossSum.bitPattern, top1: totals.top1Correct, gradients: gradients,
                       probabilities: probabilities.map(\.bitPattern),
                       weights: network.parameters.map { $0.values.map(\.bitPattern) })
    }

    @Test(arguments: ["seqcnn", "rescnn"])
    func sameBytesForAnyWorkerCount(model: String) throws {
        for training in [false, true] {
            let one = try outcome(model: model, workers: 1, training: training)
            for workers in [2, 3] {
                #expect(try outcome(model: model, workers: workers, training: training) == one,
                        "\(model) training \(training): \(workers) workers differ from 1")
            }
        }
    }

    /// The memory check refuses a batch whose buffers cannot fit, before allocating them.
    @Test func hugeBatchesAreRefusedBeforeAllocating() throws {
        let checkpoint = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
        let network = try Network(model: try Model(checkpoint: checkpoint), inputShape: [32, 32, 3], workers: 2)
        try network.checkMemory(batch: 100, gradients: true)
        let huge = 1 << 34
        #expect(network.passBytes(batch: huge, gradients: false) > Int(ProcessInfo.processInfo.physicalMemory))
        #expect(throws: CheckpointError.self) { try network.checkMemory(batch: huge, gradients: false) }
    }
}
