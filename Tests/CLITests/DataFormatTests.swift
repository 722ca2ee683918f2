import Foundation
import KerasCheckpoint
import Testing

/// Writes a version-1 .npy file of `bytes` with NumPy's header layout (dict padded with spaces
/// to a multiple of 64 bytes, ending in a newline).
func writeNumPy(_ path: String, descr: String, shape: [Int], bytes: [UInt8]) throws {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(\(shape.map(String.init).joined(separator: ", ")))"
    var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shapeText), }"
    while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
    header += "\n"
    var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.utf8.count & 0xFF), UInt8(header.utf8.count >> 8)])
    data.append(contentsOf: Array(header.utf8))
    data.append(contentsOf: bytes)
    try data.write(to: URL(fileURLWithPath: path))
}

@Suite struct DataFormatTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    /// The first `n` CIFAR-10 test images as NHWC uint8 images and int64 labels .npy files.
    func numPyCopy(of n: Int) throws -> (images: String, labels: String) {
        let batch = try Data(contentsOf: URL(fileURLWithPath: Shared.data + "/test_batch.bin"))
        var pixels = [UInt8](repeating: 0, count: n * 3072), labels: [UInt8] = []
        for i in 0..<n {
            let record = batch[(i * 3073)..<((i + 1) * 3073)].map { $0 }
            for c in 0..<3 { for p in 0..<1024 { pixels[i * 3072 + p * 3 + c] = record[1 + c * 1024 + p] } }
            labels += withUnsafeBytes(of: Int64(record[0]).littleEndian) { Array($0) }
        }
        let images = scratch.appendingPathComponent("x_test.npy").path, labelFile = scratch.appendingPathComponent("y_test.npy").path
        try writeNumPy(images, descr: "|u1", shape: [n, 32, 32, 3], bytes: pixels)
        try writeNumPy(labelFile, descr: "<i8", shape: [n], bytes: labels)
        return (images, labelFile)
    }

    /// Same images, same network, same batches: the outputs must be identical, not just close.
    @Test(arguments: ["unit", "tf", "torch", "caffe"])
    func evalOnNumPyEqualsEvalOnCIFARBinary(scale: String) throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        let (images, labels) = try numPyCopy(of: 1000)
        let binary = try gmtool(["eval", Shared.model, "--data", Shared.data, "--limit", "1000", "--scale", scale, "--json"])
        let numpy = try gmtool(["eval", Shared.model, "--data", images, labels, "--scale", scale, "--json"])
        #expect(binary.status == 0, "\(binary.stderr)")
        #expect(numpy.status == 0, "\(numpy.stderr)")
        let (a, b) = (try json(binary), try json(numpy))
        #expect(b["images"] as? Int == 1000)
        for key in ["top1_accuracy", "top5_accuracy", "mean_loss"] {
            #expect((a[key] as? Double) != nil && a[key] as? Double == b[key] as? Double, "\(key): \(a[key] ?? "-") vs \(b[key] ?? "-")")
        }
    }

    /// A binary file's record size decides CIFAR-10 from CIFAR-100, whatever its name: CIFAR-10
    /// records in a file named test.bin (CIFAR-100's name) are CIFAR-10's; CIFAR-100 records
    /// (2 label bytes) are read with --label and refused by a 10-class model.
    @Test func binaryFormatFollowsTheRecordSize() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        let ten = scratch.appendingPathComponent("test.bin").path
        try writeRecords(ten, labels: [1, 2, 3])
        let result = try gmtool(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", ten, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try json(result)["images"] as? Int == 3)
        let hundred = scratch.appendingPathComponent("c100.bin").path
        var records = Data()
        for label in [UInt8(3), 17] { records.append(contentsOf: [label / 5, label]); records.append(Data(repeating: 7, count: 3072)) }
        try records.write(to: URL(fileURLWithPath: hundred))
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", hundred, "--label", "coarse"], ["predicts 10 classes", "has 20"])
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", hundred], ["predicts 10 classes", "has 100"])
    }

    /// Python batches, .npz and --data-format through the command line: detected or named, the
    /// same images give the same eval; wrong names and flags are one line.
    @Test func pythonBatchesAndNpzFromTheCommandLine() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        let python = Paths.fixture("data/cifar-python")
        let model = Paths.fixture("seqcnn_k2.h5")
        let folder = try json(try gmtool(["eval", model, "--data", python + "/cifar-10-batches-py", "--json"]))
        let file = try json(try gmtool(["eval", model, "--data", python + "/cifar-10-batches-py/test_batch", "--data-format", "cifar10-python", "--json"]))
        let protocol4 = try json(try gmtool(["eval", model, "--data", python + "/test_batch_protocol4", "--json"]))
        #expect(folder["images"] as? Int == 4)
        for other in [file, protocol4] {
            #expect(other["mean_loss"] as? Double == folder["mean_loss"] as? Double)
        }
        try expectError(["eval", model, "--data", python + "/unsafe"], ["unsafe: is a pickle that refers to os.system"])
        try expectError(["eval", model, "--data", python + "/cifar-100-python", "--label", "coarse"], ["predicts 10 classes", "has 20"])
        try expectError(["eval", model, "--data", python + "/cifar-10-batches-py/test_batch", "--data-format", "cifar100-python"],
                        ["test_batch: is a CIFAR-10 batch, not CIFAR-100"])
        let numpy = Paths.fixture("data/numpy")
        try expectError(["eval", model, "--data", numpy + "/xy_stored.npz"], ["xy_stored.npz: holds 5x6x3 images"])
        try expectError(["eval", model, "--data", numpy + "/bad_names.npz"], ["bad_names.npz: has no arrays x/y or x_test/y_test"])
        try expectError(["eval", model, "--data", numpy + "/test_deflated.npz", "--arrays", "x_test,nope"], ["has no arrays x_test/nope"])
    }

    @Test func mismatchesWithTheModelAreOneLineNamingTheFile() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        let fixtures = Paths.fixture("data/numpy")
        // 5x6 images for a 32x32 model.
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", fixtures + "/x_u8.npy", fixtures + "/y_i8.npy"],
                        ["x_u8.npy", "5x6x3"])
        // Label 12 for a 10-class model.
        let x = scratch.appendingPathComponent("x.npy").path, y = scratch.appendingPathComponent("y.npy").path
        try writeNumPy(x, descr: "|u1", shape: [2, 32, 32, 3], bytes: [UInt8](repeating: 9, count: 2 * 3072))
        try writeNumPy(y, descr: "|u1", shape: [2], bytes: [3, 12])
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", x, y], ["y.npy", "label 12", "10 classes"])
        let gradients = scratch.appendingPathComponent("g.h5").path
        try expectError(["grad", Paths.fixture("seqcnn_k2.h5"), "--data", x, y, "-o", gradients], ["y.npy", "label 12"])
        #expect(!FileManager.default.fileExists(atPath: gradients))
        // A bad file, and a third path.
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", fixtures + "/bad_truncated.npy", y], ["bad_truncated.npy", "holds 353 bytes"])
        try expectError(["eval", Paths.fixture("seqcnn_k2.h5"), "--data", x, y, y], ["two .npy files"])
    }
}

/// A model that is not CIFAR-shaped (48x48x3, 2 classes) from a NumPy pair: evaluated, its
/// gradients taken, pruned with gradients, the pruned file evaluated again.
@Suite struct NonCIFARShapeTests {
    let folder = Paths.fixture("data/small48")
    var model: String { folder + "/model_48x48_2class.h5" }
    var data: [String] { [folder + "/x.npy", folder + "/y.npy"] }

    @Test func evalGradAndPruneWithGradients() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-small48-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let keras = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/keras.json"))) as? [String: Double])
        let eval = try gmtool(["eval", model, "--data"] + data + ["--json"])
        #expect(eval.status == 0, "\(eval.stderr)")
        let report = try json(eval)
        #expect(report["images"] as? Int == 8)
        // Top-1 exactly: the closest two-class margin Keras saw (keras.json, ~0.009) is far above
        // float32 round-off in a 270-parameter net. Loss: 8 float32 cross-entropies of ~0.69
        // from sums of at most 4x3x3x4 = 144 products per output; their round-off (~1e-6
        // relative each) stays under 1e-5.
        #expect(report["top1_accuracy"] as? Double == keras["accuracy"])
        #expect(abs((report["mean_loss"] as? Double ?? 0) - (keras["loss"] ?? 0)) < 1e-5)

        let gradients = scratch.appendingPathComponent("g.h5").path
        let grad = try gmtool(["grad", model, "--data"] + data + ["-o", gradients])
        #expect(grad.status == 0, "\(grad.stderr)")
        #expect(FileManager.default.fileExists(atPath: gradients))

        let pruned = scratch.appendingPathComponent("pruned.h5").path
        let prune = try gmtool(["prune", model, "--beta", "0.05", "--gamma", "0.01", "--data"] + data
                               + ["--eval-data"] + data + ["-o", pruned, "--json"])
        #expect(prune.status == 0, "\(prune.stderr)")
        let pruneReport = try json(prune)
        #expect(pruneReport["gradient_images"] as? Int == 8, "the gradients came from the 8 NumPy images")
        #expect(pruneReport["accuracy_before"] as? Double == keras["accuracy"])
        let again = try json(try gmtool(["eval", pruned, "--data"] + data + ["--json"]))
        #expect((again["nonzero_parameters"] as? Int ?? .max) < (report["nonzero_parameters"] as? Int ?? 0))
    }

    @Test func trainOneEpochFromNumPy() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-small48-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let output = scratch.appendingPathComponent("trained.h5").path
        let result = try gmtool(["train", model, "--train-data"] + data + ["--val-data"] + data
                                + ["--epochs", "1", "--batch-size", "4", "--lr", "0.1", "--beta", "0.05", "--gamma", "0.01", "--delta", "1",
                                   "-o", output, "--quiet"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("train: 8 images"), "\(result.stderr)")
        // The trained file is a model of the same shape whose weights moved.
        let before = try json(try gmtool(["eval", model, "--data"] + data + ["--json"]))
        let after = try json(try gmtool(["eval", output, "--data"] + data + ["--json"]))
        #expect(after["images"] as? Int == 8)
        #expect(after["mean_loss"] as? Double != before["mean_loss"] as? Double)

        let refused = try gmtool(["train", model, "--train-data"] + data + ["--epochs", "1", "-o", output])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--val-data"))
    }

    /// The same 8 images as PNGs in class folders (fixtures/data/make_images.py): eval equals the
    /// NumPy pair's (lossless, no resize: the same inputs, in another order, whose sums here
    /// round the same), then prune with gradients and a 1-epoch fine-tune from the folder.
    @Test func imageFolderEvalPruneAndFineTune() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-small48-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: scratch) }
        let images = Paths.fixture("data/images/small48")
        let numpy = try json(try gmtool(["eval", model, "--data"] + data + ["--json"]))
        let folder = try json(try gmtool(["eval", model, "--data", images, "--json"]))
        #expect(folder["images"] as? Int == 8)
        #expect(folder["top1_accuracy"] as? Double == numpy["top1_accuracy"] as? Double)
        #expect(folder["mean_loss"] as? Double == numpy["mean_loss"] as? Double)

        let pruned = scratch.appendingPathComponent("pruned.h5").path
        let prune = try gmtool(["prune", model, "--beta", "0.05", "--gamma", "0.01", "--data", images, "-o", pruned, "--json"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(try json(prune)["gradient_images"] as? Int == 8)
        let output = scratch.appendingPathComponent("trained.h5").path
        let train = try gmtool(["train", pruned, "--train-data", images, "--val-data", images, "--epochs", "1", "--batch-size", "4",
                                "--lr", "0.1", "-o", output, "--quiet"])
        #expect(train.status == 0, "\(train.stderr)")
        let after = try json(try gmtool(["eval", output, "--data", images, "--json"]))
        #expect(after["images"] as? Int == 8)
        #expect(after["mean_loss"] as? Double != (try json(try gmtool(["eval", pruned, "--data", images, "--json"])))["mean_loss"] as? Double)
        // grad and grad --shard + merge on the folder: the gradient file records the folder's digest
        // (its files' paths and bytes), and the shards agree with the single pass byte for byte.
        let grads = scratch.appendingPathComponent("grads.h5").path
        let grad = try gmtool(["grad", model, "--data", images, "--batch-size", "1", "--quiet", "-o", grads])
        #expect(grad.status == 0, "\(grad.stderr)")
        let digest = try #require(GradientFile.attribute(grads, "data_digest"))
        #expect(digest.hasPrefix("small48:8 images:") && digest.contains("crc32 "), "\(digest)")
        // 8 images at batch 1 are one batch group: one shard, merged.
        let shard = scratch.appendingPathComponent("shard-0.h5").path, merged = scratch.appendingPathComponent("merged.h5").path
        #expect(try gmtool(["grad", model, "--data", images, "--batch-size", "1", "--quiet", "--shard", "0/1", "-o", shard]).status == 0)
        #expect(try gmtool(["merge", shard, "-o", merged]).status == 0)
        #expect(try Data(contentsOf: URL(fileURLWithPath: merged)) == Data(contentsOf: URL(fileURLWithPath: grads)))
        // Three classes for a two-class model; a validation split without its seed.
        try expectError(["eval", model, "--data", Paths.fixture("data/images/folder")], ["folder", "label 2", "2 classes"])
        let usage = try gmtool(["eval", model, "--data", images, "--validation-split", "0.25", "--subset", "validation"])
        #expect(usage.status == 64 && usage.stderr.hasPrefix("gmtool: error: --validation-split needs --subset and --seed"), "\(usage.stderr)")
    }
}
