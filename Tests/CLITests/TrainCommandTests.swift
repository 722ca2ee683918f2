import Engine
import Foundation
import KerasCheckpoint
import Testing

@Suite struct TrainCommandTests {
    let folder: URL
    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-train-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try writeTinyCIFAR(in: folder)
    }
    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// GMP: after epoch 3 of begin 1, end 3 every kernel tfmot prunes keeps tfmot's
    /// max(round(0.2 n), 1) weights (float32, half to even; the weights are distinct floats, so no
    /// tie keeps more), and, as in tfmot's prune_registry, the DepthwiseConv2D kernel (Keras 3
    /// calls it `kernel`) and the SeparableConv2D's depthwise kernel have no mask, its pointwise
    /// kernel has; the log's report.html charts the epochs; --skip-depthwise is refused.
    @Test func gradualMagnitudePruningFollowsThePolynomialSchedule() throws {
        let output = path("gmp.h5")
        let result = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "3", "--batch-size", "16",
                                 "--method", "gmp", "--final-sparsity", "0.8", "--begin-epoch", "1", "--end-epoch", "3", "-o", output])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("GMP after epoch 2: every kernel but the depthwise ones to sparsity 0.7000"), "\(result.stderr)")
        let checkpoint = try Checkpoint.open(output)
        var masked: [String] = []
        for weight in checkpoint.weights where weight.prunable {
            guard let mask = try checkpoint.mask(for: weight) else { continue }
            masked.append("\(weight.layerName)/\(weight.role)")
            #expect(mask.filter { $0 != 0 }.count == max(Int((Float(mask.count) * (1 - Float(0.8))).rounded(.toNearestOrEven)), 1),
                    "\(weight.datasetPath)")
        }
        #expect(masked == ["stem_conv/kernel", "branch_conv/kernel", "sep/pointwise_kernel", "side_conv/kernel", "logits/kernel"])
        let html = try String(contentsOfFile: path("gmp.h5.log.report.html"), encoding: .utf8)
        #expect(html.components(separatedBy: "<svg ").count == 4 && html.contains("Sparsity per epoch"))
        let refused = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "3", "--method", "gmp",
                                  "--final-sparsity", "0.8", "--begin-epoch", "1", "--end-epoch", "2", "--frequency", "2", "-o", path("no.h5")])
        #expect(refused.status == 64)
        #expect(refused.stderr.hasPrefix("gmtool: error: --end-epoch 2 is not --begin-epoch plus a multiple of --frequency 2"))
        let skip = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "3", "--method", "gmp",
                               "--final-sparsity", "0.8", "--begin-epoch", "1", "--end-epoch", "3", "--skip-depthwise", "-o", path("no.h5")])
        #expect(skip.status == 64)
        #expect(skip.stderr.hasPrefix("gmtool: error: --skip-depthwise is used only with --method paper (--method gmp never prunes depthwise kernels, as tfmot)\n"),
                "\(skip.stderr)")
    }

    @Test func trainsPrunesLogsAndResumes() throws {
        let output = path("out.h5")
        let arguments = ["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "2", "--batch-size", "16",
                         "--lr", "0.05", "--beta", "0.05", "--gamma", "1", "--delta", "1", "-o", output]
        let result = try gmtool(arguments)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.first?.hasPrefix("epoch  loss") == true)
        #expect(lines.count == 3)
        let csv = try String(contentsOfFile: output + ".log.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.first?.hasPrefix("epoch,loss,train_accuracy,validation_loss,validation_accuracy") == true)
        #expect(csv.count == 3)
        let log = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path("out.h5.log.json")))) as? [[String: Any]])
        #expect((log.last?["sparsity"] as? Double ?? 0) > 0)
        #expect(try Checkpoint.open(output).statistics().hasMasks)
        // Resuming a finished run has nothing to do and keeps the file as it is.
        let before = FileManager.default.contents(atPath: output)
        let again = try gmtool(arguments + ["--resume"])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(again.stderr.contains("nothing to do"))
        #expect(FileManager.default.contents(atPath: output) == before)
        // Other settings cannot resume this run.
        var changed = arguments + ["--resume"]
        changed[changed.firstIndex(of: "0.05")!] = "0.07"
        let refused = try gmtool(changed)
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("other settings"))
    }

    /// A log that cannot be written is an error, found before any training: a read-only folder
    /// (root writes anyway, so only where the permission holds) and a folder in the log's place.
    @Test func aLogThatCannotBeWrittenIsAnError() throws {
        let readOnly = folder.appendingPathComponent("readonly")
        try FileManager.default.createDirectory(at: readOnly, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: readOnly.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: readOnly.path) }  // lets the folder be cleaned up
        try FileManager.default.createDirectory(atPath: path("taken.csv"), withIntermediateDirectories: true)
        var cases = [(path("taken.csv"), "\(path("taken.csv")): is a folder, not a file")]
        if access(readOnly.path, W_OK) != 0 {
            let log = readOnly.appendingPathComponent("run.csv").path
            cases.append((log, "\(log): output folder \(readOnly.path) is not writable"))
        }
        for (log, message) in cases {
            let result = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "1", "--batch-size", "16",
                                     "--log", log, "-o", path("logged.h5")])
            #expect(result.status == 1)
            #expect(result.stderr == "gmtool: error: \(message)\n")
            #expect(!FileManager.default.fileExists(atPath: path("logged.h5")), "no epoch was trained")
        }
    }

    @Test(arguments: [(["--epochs", "0"], "--epochs"), (["--epochs", "1", "--delta", "0"], "--delta"),
                      (["--epochs", "1", "--beta", "-2"], "--beta"), (["--epochs", "1", "--lr", "0"], "--lr")])
    func badFlags(extra: [String], fragment: String) throws {
        let result = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "-o", path("x.h5")] + extra)
        #expect(result.status != 0)
        #expect(result.stderr.contains(fragment))
        #expect(!FileManager.default.fileExists(atPath: path("x.h5")))
    }

    /// A model with augmentation layers evaluates (they are the identity at inference, as in
    /// Keras), but train refuses it rather than train without them; nothing is written.
    @Test func augmentationLayersAreRefusedInTraining() throws {
        let evaluated = try gmtool(["eval", Paths.fixture("merging_k2.h5"), "--data", folder.path, "--split", "validation", "--limit", "20"])
        #expect(evaluated.status == 0, "\(evaluated.stderr)")
        try expectError(["train", Paths.fixture("merging_k2.h5"), "--data", folder.path, "--epochs", "1", "-o", path("aug.h5")],
                        ["random_flip (RandomFlip)", "only in training", "does not apply it"])
        #expect(!FileManager.default.fileExists(atPath: path("aug.h5")))
    }
}
