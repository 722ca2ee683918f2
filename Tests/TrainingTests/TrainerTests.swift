import Engine
import CIFAR
import Foundation
import HDF5
import KerasCheckpoint
import ModelState
import Testing
@testable import Engine
@testable import Training

/// A tiny CIFAR-10 folder: data_batch_1..4 (24 images each) and data_batch_5 (16 images).
final class TinyCIFAR {
    let folder: URL
    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-train-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        var state: UInt64 = 42
        func byte() -> UInt8 { state = state &* 6364136223846793005 &+ 1442695040888963407; return UInt8(truncatingIfNeeded: state >> 33) }
        for (name, count) in [("data_batch_1.bin", 24), ("data_batch_2.bin", 24), ("data_batch_3.bin", 24), ("data_batch_4.bin", 24), ("data_batch_5.bin", 16)] {
            var data = Data()
            for _ in 0..<count {
                data.append(byte() % 10)
                data.append(contentsOf: (0..<3072).map { _ in byte() })
            }
            try data.write(to: folder.appendingPathComponent(name))
        }
    }
    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: folder) }
}

struct Interrupted: Error {}

@Suite struct TrainerTests {
    func settings(epochs: Int, delta: Int, batchSize: Int = 16) -> TrainingSettings {
        TrainingSettings(epochs: epochs, batchSize: batchSize, seed: 9, augment: true,
                         optimizer: OptimizerSettings(kind: .sgd(momentum: 0.9, nesterov: true), learningRate: 0.05,
                                                      schedule: .cosine(totalSteps: epochs * 6), weightDecay: 1e-3),
                         beta: 0.05, gamma: 0.5, delta: delta)
    }

    func trainer(_ data: TinyCIFAR, source: Checkpoint, settings: TrainingSettings, resume: Bool, workers: Int = 2) throws -> Trainer {
        let network = try Network(model: try Model(checkpoint: source), inputShape: [32, 32, 3], workers: workers)
        return try Trainer(network: network,
                           training: try CIFARTrainingSet(CIFARDataset(paths: [data.folder.path], split: .train, scaling: .unit)),
                           validation: try CIFARDataset(paths: [data.folder.path], split: .validation, scaling: .unit),
                           settings: settings, resume: resume)
    }

    /// A run stopped after its first epoch and resumed ends with exactly the weights, masks and
    /// log of an uninterrupted run (seqcnn has Dropout: its masks must repeat too), also when
    /// each part runs on another number of workers: batches of 80 are two chunks, which one,
    /// two or three workers share out differently.
    @Test func resumeGivesIdenticalResults() throws {
        let data = try TinyCIFAR()
        let model = try Checkpoint.open(fixtures.appendingPathComponent("seqcnn_k2.h5").path)
        let plan = settings(epochs: 3, delta: 2, batchSize: 80)
        let straight = data.path("straight.h5"), resumed = data.path("resumed.h5")
        try trainer(data, source: model, settings: plan, resume: false, workers: 1).run(output: straight)
        do {
            try trainer(data, source: model, settings: plan, resume: false, workers: 2).run(output: resumed, epochDone: { record in
                if record.epoch == 1 { throw Interrupted() }
            })
            Issue.record("the run was not interrupted")
        } catch is Interrupted {}
        let partial = try Checkpoint.open(resumed)
        let second = try trainer(data, source: partial, settings: plan, resume: true, workers: 3)
        #expect(second.completedEpochs == 1)
        try second.run(output: resumed)
        let a = try Checkpoint.open(straight), b = try Checkpoint.open(resumed)
        for (x, y) in zip(a.weights, b.weights) {
            #expect(try a.read(x).map(\.bitPattern) == b.read(y).map(\.bitPattern), "\(x.datasetPath)")
            #expect(try a.mask(for: x) == b.mask(for: y))
        }
        let history = { (c: Checkpoint) in try c.extraAttribute(group: "/gmtool_training", "history") ?? "" }
        // Everything but the timings must agree.
        let strip = { (text: String) in
            text.replacingOccurrences(of: #""(seconds|train_images_per_second)":[0-9.e+-]+"#, with: "", options: .regularExpression)
        }
        #expect(try strip(history(a)) == strip(history(b)))
        // Resuming with other settings is refused.
        var other = plan
        other.seed = 10
        #expect(throws: TrainingError.self) { try trainer(data, source: b, settings: other, resume: true) }
    }

    /// Pruning happens after epochs 2 and 4 only; the output is a Keras checkpoint with masks,
    /// and pruned weights stay exactly zero through the later epochs.
    @Test func pruningScheduleAndMasks() throws {
        let data = try TinyCIFAR()
        let model = try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path)
        let run = try trainer(data, source: model, settings: settings(epochs: 4, delta: 2), resume: false)
        let output = data.path("pruned.h5")
        try run.run(output: output)
        let pruned = run.history.map(\.prunedThisEpoch)
        #expect(pruned[0] == 0 && pruned[2] == 0)
        #expect(pruned[1] > 0)
        #expect(run.history[3].sparsity >= run.history[1].sparsity)
        let result = try Checkpoint.open(output)
        var masked = 0
        for weight in result.weights where weight.prunable {
            let mask = try #require(try result.mask(for: weight))
            let values = try result.read(weight)
            for i in mask.indices where mask[i] == 0 {
                #expect(values[i] == 0)
                masked += 1
            }
        }
        #expect(masked >= pruned[1] + pruned[3])
    }

    /// GMP's step is tfmot's prune_low_magnitude step: on MobileNet after epoch 1 (begin = end = 1,
    /// so s = 0.55 at once) no depthwise kernel is masked, and every other kernel's mask is tfmot's
    /// rule written plainly (keep |w| >= the k-th largest, k = max(round(n (1 - s)), 1) in float32)
    /// on the weights a dense run of the same settings holds after its epoch 1 (pruning comes
    /// after the epoch's training, so the weights it sees are those).
    @Test func gradualMagnitudePruningIsTfmotsStep() throws {
        let data = try TinyCIFAR()
        let source = try Checkpoint.open(fixtures.appendingPathComponent("mobilenet_k2.h5").path)
        var dense = settings(epochs: 1, delta: 1)
        dense.beta = nil
        dense.gamma = .infinity
        var gmp = dense
        gmp.gradual = GradualSchedule(finalSparsity: 0.55, beginEpoch: 1, endEpoch: 1)
        try trainer(data, source: source, settings: dense, resume: false).run(output: data.path("dense.h5"))
        try trainer(data, source: source, settings: gmp, resume: false).run(output: data.path("gmp.h5"))
        let before = try Checkpoint.open(data.path("dense.h5")), after = try Checkpoint.open(data.path("gmp.h5"))
        var masked = 0
        for weight in after.weights where weight.prunable {
            let mask = try after.mask(for: weight)
            if weight.role == .depthwiseKernel {
                #expect(mask == nil || mask!.allSatisfy { $0 != 0 }, "\(weight.datasetPath): tfmot does not prune depthwise kernels")
                continue
            }
            let w = try before.read(weight)
            let k = max(Int((Float(w.count) * (1 - Float(0.55))).rounded(.toNearestOrEven)), 1)
            let threshold = w.map { abs($0) }.sorted(by: >)[k - 1]
            #expect(try #require(mask) == w.map { abs($0) >= threshold ? UInt8(1) : 0 }, "\(weight.datasetPath)")
            masked += 1
        }
        #expect(masked == 15, "the 14 Conv2D kernels and conv_preds")

        // A GMP run saved by an earlier gmtool (no rule in its settings) is not continued with
        // another step.
        var interrupted = gmp
        interrupted.epochs = 2
        interrupted.gradual = GradualSchedule(finalSparsity: 0.55, beginEpoch: 1, endEpoch: 2)
        let saved = data.path("old.h5")
        do {
            try trainer(data, source: source, settings: interrupted, resume: false).run(output: saved, epochDone: { _ in throw Interrupted() })
        } catch is Interrupted {}
        var old = interrupted
        old.gradual!.rule = nil
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        try HDF5File.open(saved, mode: .readWrite).root.group("gmtool_training")
            .setAttribute("settings", string: String(decoding: try encoder.encode(old), as: UTF8.self))
        let error = #expect(throws: TrainingError.self) { try trainer(data, source: try Checkpoint.open(saved), settings: interrupted, resume: true) }
        #expect(error?.description == "\(saved): was trained by an earlier gmtool's GMP, which also pruned depthwise kernels; this gmtool prunes as tfmot does and cannot continue it (start the run again)")
    }

    /// How a saved run can be damaged, and what resuming from it must say (`FILE`, `SLOT` and
    /// `COUNT` stand for the file, the first kernel's momentum dataset and the kernel's size).
    enum Damage: String, CaseIterable {
        case stateGroupRemoved, stateGroupEmpty, slotRemoved, slotTruncated, historyCorrupted, historyShortened, iterationsGarbled

        var message: String {
            switch self {
            case .stateGroupRemoved: "FILE: holds no gmtool training state to resume from (no /gmtool_training group)"
            case .stateGroupEmpty: "FILE: /gmtool_training attribute settings is missing; resume needs the complete training state"
            case .slotRemoved: "FILE: SLOT is missing; resume needs the optimizer state of every trainable weight"
            case .slotTruncated: "FILE: SLOT holds 3 values, the weight has COUNT; the training state is damaged"
            case .historyCorrupted: "FILE: /gmtool_training attribute history cannot be decoded; the training state is damaged"
            case .historyShortened: "FILE: /gmtool_training attribute history lists 0 epoch(s) but completed_epochs is 1; the training state is damaged"
            case .iterationsGarbled: "FILE: /gmtool_training attribute iterations cannot be decoded; the training state is damaged"
            }
        }

        func apply(to file: HDF5File, slot: String) throws {
            let root = file.root
            switch self {
            case .stateGroupRemoved: try root.removeLink("gmtool_training")
            case .stateGroupEmpty:
                try root.removeLink("gmtool_training")
                _ = try root.openOrCreateGroup("gmtool_training")
            case .slotRemoved: try root.removeLink(String(slot.dropFirst()))
            case .slotTruncated:
                try root.removeLink(String(slot.dropFirst()))
                _ = try root.createDataset(String(slot.dropFirst()), shape: [3], values: [Float](repeating: 0, count: 3))
            case .historyCorrupted: try root.group("gmtool_training").setAttribute("history", string: "[{\"epoch\": 1, \"loss\"")
            case .historyShortened: try root.group("gmtool_training").setAttribute("history", string: "[]")
            case .iterationsGarbled: try root.group("gmtool_training").setAttribute("iterations", string: "six")
            }
        }
    }

    /// `--resume` never guesses: a missing or broken piece of the state is an error naming it.
    @Test(arguments: Damage.allCases)
    func resumeRefusesADamagedState(damage: Damage) throws {
        let data = try TinyCIFAR()
        let plan = settings(epochs: 2, delta: 2)
        let saved = data.path("saved.h5"), damaged = data.path("\(damage.rawValue).h5")
        do {
            try trainer(data, source: try Checkpoint.open(fixtures.appendingPathComponent("rescnn_k2.h5").path), settings: plan, resume: false)
                .run(output: saved, epochDone: { _ in throw Interrupted() })
        } catch is Interrupted {}
        try FileManager.default.copyItem(atPath: saved, toPath: damaged)
        let kernel = try #require(try Checkpoint.open(saved).weights.first { $0.trainable && $0.prunable })
        let slot = "/gmtool_training/slot1\(kernel.datasetPath)"
        try damage.apply(to: try HDF5File.open(damaged, mode: .readWrite), slot: slot)
        let expected = damage.message.replacingOccurrences(of: "FILE", with: damaged).replacingOccurrences(of: "SLOT", with: slot)
            .replacingOccurrences(of: "COUNT", with: String(kernel.elementCount))
        let error = #expect(throws: TrainingError.self) { try trainer(data, source: try Checkpoint.open(damaged), settings: plan, resume: true) }
        #expect(error?.description == expected)
    }
}
