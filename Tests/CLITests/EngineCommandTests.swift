import Engine
import Foundation
import KerasCheckpoint
import ModelState
import Testing

/// ../shared beside the repository: the reference model and CIFAR-10.
enum Shared {
    static let folder = Paths.repository.deletingLastPathComponent().appendingPathComponent("shared")
    static let model = folder.appendingPathComponent("models/mobilenet_0.50_cifar10.h5").path
    static let data = folder.appendingPathComponent("data/cifar10-jpeg").path
    static var reference: [String: Any] {
        let url = folder.appendingPathComponent("models/mobilenet_0.50_cifar10.json")
        return (try? JSONSerialization.jsonObject(with: Data(contentsOf: url))) as? [String: Any] ?? [:]
    }
}

func json(_ result: CommandResult) throws -> [String: Any] {
    try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
}

/// Writes `count` CIFAR-10 records with the given labels (pixels from a fixed pattern).
func writeRecords(_ path: String, labels: [UInt8], extraBytes: Int = 0) throws {
    var data = Data()
    for (index, label) in labels.enumerated() {
        data.append(label)
        data.append(contentsOf: (0..<3072).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ index &* 7) })
    }
    data.append(contentsOf: [UInt8](repeating: 1, count: extraBytes))
    try data.write(to: URL(fileURLWithPath: path))
}

@Suite struct EvalCommandTests {
    /// gmtool's accuracy on the reference model equals what Keras measured (the JSON beside it).
    @Test(arguments: [("test", "test_top1", "test_loss"), ("validation", "validation_top1", "validation_loss")])
    func accuracyEqualsKerasOnTheReferenceModel(split: String, accuracyKey: String, lossKey: String) throws {
        let result = try gmtool(["eval", Shared.model, "--data", Shared.data, "--split", split, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try json(result)
        let keras = try #require(Shared.reference[accuracyKey] as? Double)
        let kerasLoss = try #require(Shared.reference[lossKey] as? Double)
        #expect(report["images"] as? Int == 10_000)
        #expect(abs((report["top1_accuracy"] as? Double ?? 0) - keras) <= 0.0005)
        #expect(abs((report["mean_loss"] as? Double ?? 0) - kerasLoss) <= 1e-4)
        for key in ["top5_accuracy", "images_per_second", "total_parameters"] { #expect(report[key] != nil) }
    }

    @Test func textOutputNamesScalingAndCounts() throws {
        let result = try gmtool(["eval", Shared.model, "--data", Shared.data, "--limit", "200", "--scale", "symmetric"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("symmetric (x/127.5 - 1)"))
        #expect(result.stdout.contains("images:      200"))
        #expect(result.stdout.contains("834,666 total"))
        #expect(result.stderr.isEmpty, "no progress bar when stderr is not a terminal")
    }

    @Test func gradWritesOneDatasetPerTrainableWeight() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("grads.h5").path
        let result = try gmtool(["grad", Paths.fixture("rescnn_k3.keras"), "--data", Shared.data, "--split", "validation",
                                 "--limit", "50", "-o", output, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let checkpoint = try Checkpoint.open(Paths.fixture("rescnn_k3.keras"))
        let trainable = checkpoint.weights.filter(\.trainable)
        let gradients = try GradientFile.read(output, for: trainable, weightsDigest: try Model(checkpoint: checkpoint).weightsDigest)
        #expect(gradients.count == trainable.count)
        #expect(GradientFile.attribute(output, "images") == "50.0")
        #expect(try json(result)["gradients"] as? Int == trainable.count)
        #expect(gradients.values.contains { $0.contains { $0 != 0 } })
    }
}

@Suite struct BadDataTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    @Test func wrongSizeFile() throws {
        let path = scratch.appendingPathComponent("short.bin").path
        try writeRecords(path, labels: [1, 2], extraBytes: 100)
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", path], ["short.bin", "not a whole number"])
    }

    @Test func labelOutOfRange() throws {
        let path = scratch.appendingPathComponent("labels.bin").path
        try writeRecords(path, labels: [1, 2, 12])
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", path], ["labels.bin", "record 2", "label 12"])
    }

    @Test func modelThatDoesNotTakeCIFARImages() throws {
        let path = scratch.appendingPathComponent("ok.bin").path
        try writeRecords(path, labels: [1])
        try expectError(["eval", Paths.fixture("split_k2_weights.h5"), "--config", Paths.fixture("split_k2.json"), "--data", path],
                        ["split_k2_weights.h5"])
    }

    @Test func classCountThatDoesNotMatchTheData() throws {
        let path = scratch.appendingPathComponent("ok.bin").path
        try writeRecords(path, labels: [1, 2])
        try expectError(["eval", Paths.fixture("bad/five_classes.h5"), "--data", path], ["five_classes.h5", "5 classes", "10"])
        try expectError(["grad", Paths.fixture("bad/five_classes.h5"), "--data", path, "-o", scratch.appendingPathComponent("g.h5").path],
                        ["5 classes"])
    }

    @Test func missingDataAndSplit() throws {
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", scratch.path, "--split", "train"],
                        ["data_batch_1.bin", "train"])
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", "/no/such.bin"], ["/no/such.bin"])
    }

    @Test func nonFiniteWeights() throws {
        let checkpoint = try Checkpoint.open(Paths.fixture("seqcnn_k2.h5"))
        let kernel = try #require(checkpoint.weights.first { $0.prunable })
        var edits = CheckpointEdits()
        var values = try checkpoint.read(kernel)
        values[3] = .nan
        edits.weights[kernel] = values
        let bad = scratch.appendingPathComponent("nan.h5").path
        try checkpoint.write(to: bad, edits: edits)
        let data = scratch.appendingPathComponent("ok.bin").path
        try writeRecords(data, labels: [1])
        try expectError(["eval", bad, "--data", data], ["nan.h5", kernel.datasetPath, "non-finite"])
    }

    @Test func badFlags() throws {
        let data = scratch.appendingPathComponent("ok.bin").path
        try writeRecords(data, labels: [1])
        let result = try gmtool(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", data, "--scale", "meanstd"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("--mean"))
        // An entry that is not a number is refused by name, not dropped (4 entries with one bad
        // would otherwise pass as 3 means).
        let typo = try gmtool(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", data, "--scale", "meanstd",
                               "--mean", "0.5,O.4,0.4,0.3", "--std", "0.2"])
        #expect(typo.status == 64)
        #expect(typo.stderr.contains("--mean: 'O.4' is not a finite number"))
        let infinite = try gmtool(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", data, "--scale", "meanstd",
                                   "--mean", "0.5", "--std", "inf"])
        #expect(infinite.status == 64)
        #expect(infinite.stderr.contains("--std: 'inf' is not a finite number"))
        let output = try gmtool(["grad", Paths.fixture("seqcnn_k2.h5"), "--data", data, "-o", Paths.fixture("seqcnn_k2.h5")])
        #expect(output.status != 0)
        #expect(output.stderr.contains("overwrite"))
    }
}

/// `grad`, `prune` and `eval` give the same bytes for any --threads, run after run: 170 images in
/// batches of 150 are chunks of 50, 50, 50 and then 20, which one, two or three workers share
/// differently.
@Suite struct ThreadCountTests {
    @Test func sameBytesForOneTwoAndThreeThreads() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-threads-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let data = ["--data", Shared.data, "--limit", "170", "--batch-size", "150"]
        var outputs: [String: Data] = [:]
        for run in ["1", "2", "3", "2"].enumerated() {
            let threads = ["--threads", run.element]
            let grads = scratch.appendingPathComponent("grads-\(run.offset).h5").path
            let pruned = scratch.appendingPathComponent("pruned-\(run.offset).h5").path
            let grad = try gmtool(["grad", Shared.model, "-o", grads] + data + threads)
            #expect(grad.status == 0, "\(grad.stderr)")
            let prune = try gmtool(["prune", Shared.model, "--beta", "0.05", "--gamma", "0.001", "-o", pruned, "--json"] + data + threads)
            #expect(prune.status == 0, "\(prune.stderr)")
            let eval = try gmtool(["eval", Shared.model, "--json"] + data + threads)
            #expect(eval.status == 0, "\(eval.stderr)")
            // Everything but the timings and the output's own name.
            var report = try json(eval)
            report["seconds"] = nil
            report["images_per_second"] = nil
            var summary = try json(prune)
            summary["output"] = nil
            summary["seconds"] = nil
            let current: [String: Data] = [
                "grad": try Data(contentsOf: URL(fileURLWithPath: grads)),
                "prune": try Data(contentsOf: URL(fileURLWithPath: pruned)),
                "prune summary": try JSONSerialization.data(withJSONObject: summary, options: .sortedKeys),
                "eval": try JSONSerialization.data(withJSONObject: report, options: .sortedKeys),
            ]
            for (name, bytes) in current {
                if let first = outputs[name] {
                    #expect(bytes == first, "\(name) with --threads \(run.element) differs from --threads 1")
                } else {
                    outputs[name] = bytes
                }
            }
        }
    }
}
