import Engine
import Foundation
import HDF5
import KerasCheckpoint
import Testing

/// Issue 16: every refusal, message and number of the command line, checked exactly.
@Suite struct CommandLineTrustTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-trust-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    let model = Paths.fixture("seqcnn_k2.h5")

    /// A command-line problem: the one error line, then the command's usage; exit status 64.
    func expectUsageError(_ arguments: [String], _ message: String, usage: String, nothingAt output: String? = nil) throws {
        let result = try gmtool(arguments)
        let command = usage.split(separator: " ").dropFirst().first.flatMap { $0.hasPrefix("<") ? nil : " \($0)" } ?? ""
        #expect(result.status == 64, "\(arguments)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr == "gmtool: error: \(message)\nUsage: \(usage)\n  See 'gmtool\(command) --help' for more information.\n",
                "\(arguments)")
        if let output { #expect(!FileManager.default.fileExists(atPath: output)) }
    }

    /// A problem with a file: exactly one line, exit status 1, nothing written.
    func expectFileError(_ arguments: [String], _ line: String, nothingAt output: String? = nil) throws {
        let result = try gmtool(arguments)
        #expect(result.status == 1, "\(arguments)")
        #expect(result.stdout.isEmpty)
        #expect(result.stderr == "gmtool: error: \(line)\n", "\(arguments)")
        if let output { #expect(!FileManager.default.fileExists(atPath: output)) }
    }

    let pruneUsage = "gmtool prune [<options>] <model>"

    // MARK: gradient files

    @Test func gradientFilesMustBeGmtoolsForTheseWeightsAndFinite() throws {
        let out = path("never.h5")
        // The model itself as the gradients.
        try expectFileError(["prune", model, "--beta", "0.05", "--gamma", "0.001", "--gradients", model, "-o", out],
                            "\(model): is a model checkpoint, not a gradient file written by `gmtool grad`", nothingAt: out)
        // A real gradient file of this model: accepted, and its digest is the FNV-1a of the weights
        // in model order (computed here independently of gmtool's code).
        let grads = path("grads.h5")
        let made = try gmtool(["grad", model, "--data", Shared.data, "--limit", "20", "-o", grads])
        #expect(made.status == 0, "\(made.stderr)")
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        let checkpoint = try Checkpoint.open(model)
        for weight in checkpoint.weights {
            for value in try checkpoint.read(weight) {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { for byte in $0 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 } }
            }
        }
        let expected = String(hash, radix: 16)
        #expect(GradientFile.attribute(grads, "weights_digest") == String(repeating: "0", count: 16 - expected.count) + expected)
        let ok = try gmtool(["prune", model, "--beta", "0.05", "--gamma", "0.001", "--gradients", grads, "--dry-run"])
        #expect(ok.status == 0, "\(ok.stderr)")
        // The same model pruned once is other weights: its gradients differ.
        let pruned = path("pruned.h5")
        #expect(try gmtool(["prune", model, "--beta", "0.05", "-o", pruned]).status == 0)
        let result = try gmtool(["prune", pruned, "--beta", "0.05", "--gamma", "0.001", "--gradients", grads, "-o", out])
        #expect(result.status == 1)
        #expect(result.stderr.hasPrefix("gmtool: error: \(grads): was taken on other weights (weights digest "))
        #expect(!FileManager.default.fileExists(atPath: out))
        // NaN gradients.
        do {
            let file = try HDF5File.open(grads, mode: .readWrite)
            let kernel = "model_weights/c2/c2/kernel:0"
            let count = try file.root.dataset(kernel).read(as: Float.self).count
            try file.root.removeLink(kernel)
            _ = try file.root.createDataset(kernel, shape: checkpoint.weights.first { $0.datasetPath == "/" + kernel }!.shape,
                                            values: [Float](repeating: .nan, count: count))
            try file.flush()
        }
        try expectFileError(["prune", model, "--beta", "0.05", "--gamma", "0.001", "--gradients", grads, "-o", out],
                            "\(grads): /model_weights/c2/c2/kernel:0: holds 1152 of 1152 values that are NaN or infinite", nothingAt: out)
    }

    // MARK: options that would do nothing

    @Test func optionsThatDoNothingAreRefused() throws {
        let out = path("never.h5")
        let cases: [([String], String)] = [
            (["--beta", "0.1", "--gradients", "g.h5"], "--gradients g.h5 is used only with --gamma (or --layer-gamma); without it the rule is magnitude-only"),
            (["--beta", "0.1", "--gamma", "0.01", "--gradients", "g.h5", "--data", Shared.data],
             "--data is not used with --gradients (the gradients come from g.h5); for accuracy give --eval-data"),
            (["--beta", "0.1", "--eval-split", "test"], "--eval-split is used only with --eval-data"),
            (["--beta", "0.1", "--split", "test"], "--split selects the --data images; it is used only with --gamma and --data"),
            (["--beta", "0.1", "--data", Shared.data], "--data is used only with --gamma (the images for dC/dw) or --eval-same; for accuracy give --eval-data"),
            (["--beta", "0.1", "--gamma", "0.01"], "--gamma needs --data (the images for dC/dw) or --gradients (a `gmtool grad` file)"),
            (["--beta", "0.1", "--limit", "10"], "--limit is used only with --data or --eval-data"),
            (["--beta", "0.1", "--in-place"], "--in-place is used only when -o is the input file"),
        ]
        for (extra, message) in cases {
            try expectUsageError(["prune", model, "-o", out] + extra, message, usage: pruneUsage, nothingAt: out)
        }
        try expectUsageError(["prune", model, "--beta", "0.1", "--dry-run", "-o", out], "--dry-run writes nothing; drop -o (or drop --dry-run)",
                             usage: pruneUsage, nothingAt: out)
        try expectUsageError(["train", model, "--data", Shared.data, "--epochs", "1", "--gamma", "0.1", "-o", out],
                             "--gamma is used only with --beta (without it the run is dense)", usage: "gmtool train [<options>] <model> --output <output> --epochs <epochs>", nothingAt: out)
    }

    // MARK: messages

    @Test func parseErrorsComeFirstAndInTheCommandsUsage() throws {
        let out = path("x.h5")
        try expectUsageError(["prune", model, "--bta", "0.05", "-o", out], "Unknown option '--bta'. Did you mean '--beta'?", usage: pruneUsage, nothingAt: out)
        try expectUsageError(["prune", model, "--beta", "-1", "-o", out], "--beta must be a finite number >= 0", usage: pruneUsage, nothingAt: out)
        try expectUsageError(["eval", model], "--data is required", usage: "gmtool eval [<options>] <model>")
        try expectUsageError(["eval", model, "--data", Shared.data, "--limit", "-5"], "--limit must be positive", usage: "gmtool eval [<options>] <model>")
        try expectUsageError(["prune", model, "--beta", "0.1", "--eval-same", "--dry-run"], "--eval-same needs --data", usage: pruneUsage)
        try expectUsageError(["stat", model], "'stat' is not a gmtool command. Did you mean 'stats'?", usage: "gmtool <subcommand>")
        try expectUsageError(["help", "bogus"], "'bogus' is not a gmtool command.", usage: "gmtool <subcommand>")
        #expect(try gmtool(["help", "stats"]).status == 0)
        try expectFileError(["eval", model, "--data", Shared.data, "--limit", "10", "--kernels", "dense"],
                            "\(model): --kernels dense applies only to a sparse export (this is a h5_full_model checkpoint, run dense anyway)")
    }

    @Test func deeplyNestedConfigNamesTheLimit() throws {
        let copy = path("nested.h5")
        try FileManager.default.copyItem(atPath: model, toPath: copy)
        do {
            let file = try HDF5File.open(copy, mode: .readWrite)
            let depth = 100_000
            try file.root.setAttribute("model_config", string: String(repeating: "[", count: depth) + String(repeating: "]", count: depth))
            try file.flush()
        }
        try expectFileError(["stats", copy], "\(copy): model_config: is nested deeper than 500 levels, gmtool's limit")
    }

    // MARK: output paths

    @Test func outputPathsAreCheckedBeforeAnyWork() throws {
        let folder = path("adir")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let grad = ["grad", model, "--data", Shared.data, "--limit", "10", "-o"]
        try expectFileError(grad + [""], "'': the output path is empty")
        try expectFileError(grad + [folder], "\(folder): is a folder, not a file")
        try expectFileError(grad + [scratch.path + "/bdir/"], "\(scratch.path)/bdir/: ends in '/': give a file name, not a folder")
        try expectFileError(grad + [path("missing/g.h5")], "\(path("missing/g.h5")): output folder \(path("missing")) does not exist")
        try expectFileError(["export", model, "-o", path("missing/e.h5")], "\(path("missing/e.h5")): output folder \(path("missing")) does not exist")
        try expectFileError(["prune", model, "--beta", "0.1", "-o", folder + "/"], "\(folder)/: is a folder, not a file")
        let readOnly = path("readonly")
        try FileManager.default.createDirectory(atPath: readOnly, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: readOnly)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: readOnly) }
        if access(readOnly, W_OK) != 0 {  // root may write anywhere
            try expectFileError(grad + [readOnly + "/g.h5"], "\(readOnly)/g.h5: output folder \(readOnly) is not writable", nothingAt: readOnly + "/g.h5")
        }
    }

    // MARK: numbers

    @Test func sizesThroughLinksRatiosAndInfinity() throws {
        let link = path("link.h5")
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: model)
        let bytes = try #require(try FileManager.default.attributesOfItem(atPath: model)[.size] as? Int)
        let stats = try json(try gmtool(["stats", link, "--json"]))
        #expect(stats["file_bytes"] as? Int == bytes)
        // The tiny fixture's export is larger than its input without compression: "larger".
        let export = try gmtool(["export", link, "--no-compression", "-o", path("e.h5")])
        #expect(export.status == 0, "\(export.stderr)")
        let exported = try #require(try FileManager.default.attributesOfItem(atPath: path("e.h5"))[.size] as? Int)
        let line = try #require(export.stdout.split(separator: "\n").first { $0.hasPrefix("files:") })
        let ratio = exported > bytes ? String(format: "%.2fx larger", Double(exported) / Double(bytes)) : String(format: "%.2fx smaller", Double(bytes) / Double(exported))
        #expect(line.contains("(\(ratio))"), "\(line)")
        #expect(export.stderr.isEmpty, "no CSR warnings when gmtool chooses the encoding")
        // Every parameter zero after pruning (a copy whose biases and BatchNorm entries are 0): no
        // ratio against zero.
        let zeros = path("zeros.h5")
        try FileManager.default.copyItem(atPath: model, toPath: zeros)
        do {
            let file = try HDF5File.open(zeros, mode: .readWrite)
            for weight in try Checkpoint.open(model).weights where !weight.prunable {
                let name = String(weight.datasetPath.dropFirst())
                try file.root.removeLink(name)
                _ = try file.root.createDataset(name, shape: weight.shape, values: [Float](repeating: 0, count: weight.elementCount))
            }
            try file.flush()
        }
        let empty = try gmtool(["prune", zeros, "--beta", "100", "--dry-run"])
        #expect(empty.stdout.contains("\nsparsity:          "), "\(empty.stdout)")
        #expect(empty.stdout.contains("% -> 100.00% (no non-zeros left)\n"), "\(empty.stdout)")
        // gamma = inf in JSON: null with gamma_is_infinite, at the top and per layer.
        let summary = try json(try gmtool(["prune", model, "--beta", "0.1", "--dry-run", "--json"]))
        #expect(summary["gamma"] is NSNull)
        #expect(summary["gamma_is_infinite"] as? Bool == true)
        let layers = try #require(summary["layers"] as? [[String: Any]])
        #expect(layers.allSatisfy { $0["gamma"] is NSNull && $0["gamma_is_infinite"] as? Bool == true })
        let finite = try json(try gmtool(["prune", model, "--beta", "0.1", "--gamma", "0.5", "--data", Shared.data, "--limit", "10", "--dry-run", "--json"]))
        #expect(finite["gamma"] as? Double == 0.5)
        #expect(finite["gamma_is_infinite"] as? Bool == false)
        // A target sparsity near 1: the message has the digits to tell it from 1.
        try expectFileError(["prune", model, "--target-sparsity", "0.999999", "--dry-run"],
                            "sparsity 0.999999 is out of reach with gamma inf: at most 0.992672 of all parameters can be zero")
    }

    /// An object path joined from "/" and "/weights/..." is printed with single slashes.
    @Test func errorPathsHaveNoDoubleSlashes() {
        #expect(CheckpointError(file: "m.h5", object: "//weights//model_weights/c1", problem: "missing").description
            == "m.h5: /weights/model_weights/c1: missing")
    }

    /// The per-kernel smaller encoding reads back: import gives back the same weights.
    @Test func smallerEncodingPerKernelRoundTrips() throws {
        let pruned = path("p.h5"), sparse = path("s.h5"), dense = path("d.h5")
        #expect(try gmtool(["prune", Paths.fixture("mobilenet_k2.h5"), "--beta", "0.08", "--layer-beta", "conv_pw_1*=100", "-o", pruned]).status == 0)
        let export = try json(try gmtool(["export", pruned, "-o", sparse, "--json"]))
        let encodings = Set((export["kernels"] as? [[String: Any]] ?? []).compactMap { $0["encoding"] as? String })
        #expect(encodings == ["csr_matrix", "gmtool_bitmask"], "this model has kernels of both kinds")
        for kernel in export["kernels"] as? [[String: Any]] ?? [] {
            let csr = kernel["csr_bytes"] as? Int ?? 0, bitmask = kernel["bitmask_bytes"] as? Int ?? 0
            #expect(kernel["encoding"] as? String == (bitmask < csr ? "gmtool_bitmask" : "csr_matrix"))
        }
        #expect(try gmtool(["import", sparse, "-o", dense]).status == 0)
        let a = try Checkpoint.open(pruned), b = try Checkpoint.open(dense)
        for weight in a.weights {
            let other = try #require(b.weights.first { $0.datasetPath == weight.datasetPath })
            #expect(try a.read(weight) == b.read(other))
        }
    }
}
