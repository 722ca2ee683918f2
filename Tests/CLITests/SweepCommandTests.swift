import Foundation
import Testing

@Suite struct SweepCommandTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-sweep-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    var model: String { Paths.fixture("mobilenet_k2.h5") }
    var data: [String] { ["--data", Shared.data, "--limit", "100"] }

    /// Runs a command line printed by gmtool (words without quotes), as gmtool, writing to `output`.
    func runPrinted(_ command: String, output: String, extra: [String] = []) throws -> [String: Any] {
        var words = command.split(separator: " ").map(String.init)
        #expect(words.first == "gmtool" && !command.contains("'"))
        words.removeFirst()
        words = words.map { $0 == "pruned.h5" ? output : $0 }
        let result = try gmtool(words + extra + ["--json"])
        #expect(result.status == 0, "\(result.stderr)")
        return try json(result)
    }

    @Test func sweepWritesItsFolderAndThePrintedCommandReproducesThePoint() throws {
        let folder = path("sweep")
        let result = try gmtool(["sweep", model, "--beta", "0.02:0.1:3", "--gamma", "1e-3,inf"] + data
                                + ["--max-drop", "100", "--progress", "-o", folder, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stderr.contains("sweep 6/6  best: beta "), "the progress line with the best point: \(result.stderr)")
        let summary = try json(result)
        #expect(summary["format"] as? String == "gmtool-sweep")
        let files = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(files == ["frontier.svg", "layers.csv", "layers.svg", "report.html", "sweep.csv", "sweep.json", "top1_heatmap.svg", "top1_vs_beta.svg"])
        let csv = try String(contentsOfFile: folder + "/sweep.csv", encoding: .utf8).split(separator: "\n")
        #expect(csv.count == 7 && csv[0].hasPrefix("beta,gamma,sparsity,"))
        #expect(csv[1].hasPrefix("0.02,0.001,") && csv[6].hasPrefix("0.1,inf,"))
        let html = try String(contentsOfFile: folder + "/report.html", encoding: .utf8)
        #expect(html.components(separatedBy: "<svg ").count == 5, "the four charts inline")
        #expect(!html.replacingOccurrences(of: "xmlns=\"http://www.w3.org/2000/svg\"", with: "").contains("http"), "nothing fetched")
        #expect(!html.contains("<script") && !html.contains("src=") && !html.contains("href="), "self-contained")
        let points = try #require(summary["points"] as? [[String: Any]])
        #expect(points.count == 6)
        // Within 100 points every point qualifies: the selection is the sparsest one.
        let selected = try #require(summary["selected"] as? Int)
        let sparsities = points.map { $0["sparsity"] as? Double ?? -1 }
        #expect(sparsities[selected] == sparsities.max())
        let command = try #require(summary["command"] as? String)
        let pruned = try runPrinted(command, output: path("pruned.h5"))
        #expect(pruned["accuracy_after"] as? Double == points[selected]["top1"] as? Double)
        #expect(pruned["nonzero_after"] as? Int == points[selected]["nonzero"] as? Int)
        // A gradient-aware point's command reproduces too (it needs --data for dC/dw).
        #expect(command.contains("--gamma inf") || command.contains("--data"))

        // Again into the same folder: a previous sweep is replaced whole, nothing left beside it,
        // and a temporary folder a killed sweep left (its process gone) is removed.
        let stale = scratch.appendingPathComponent(".sweep.gmtool-999999-\(UUID().uuidString).tmp")
        try FileManager.default.createDirectory(at: stale, withIntermediateDirectories: true)
        try Data("half".utf8).write(to: stale.appendingPathComponent("sweep.csv"))
        let again = try gmtool(["sweep", model, "--beta", "0.05", "--gamma", "inf"] + data + ["-o", folder])
        #expect(again.status == 0, "\(again.stderr)")
        #expect(try String(contentsOfFile: folder + "/sweep.csv", encoding: .utf8).split(separator: "\n").count == 2)
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted() == ["pruned.h5", "sweep"])
    }

    @Test(arguments: [
        (["--beta", "0.3:0.1:4"], "gmtool: error: --beta '0.3:0.1:4': the range is inverted (0.3 > 0.1)"),
        (["--beta", "0.1:0.3:0"], "gmtool: error: --beta '0.1:0.3:0': the range is empty (0 values)"),
        (["--beta", "0:1:101", "--gamma", "0:1:100"], "gmtool: error: the grid has 10100 points (more than 10000); add --yes to run it"),
        (["--beta", "0.1", "--gamma", "-1"], "gmtool: error: --gamma '-1': -1.0 is not a number >= 0"),
        (["--beta", "inf"], "gmtool: error: --beta 'inf': inf is not a finite number >= 0"),
        (["--beta", "0.1", "--eval-data", Shared.data], "gmtool: error: --data is not used: with gamma = inf only there is no gradient pass, and --eval-data gives the evaluation images"),
    ])
    func badGridsAreUsageErrorsAndWriteNothing(arguments: [String], line: String) throws {
        let folder = path("never")
        let result = try gmtool(["sweep", model] + arguments + data + ["-o", folder])
        #expect(result.status == 64)
        #expect(result.stderr.split(separator: "\n").first.map(String.init) == line, "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: folder))
    }

    @Test func aFolderThatIsNotASweepIsLeftAlone() throws {
        let folder = path("mine")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data("keep".utf8).write(to: URL(fileURLWithPath: folder + "/notes.txt"))
        try expectError(["sweep", model, "--beta", "0.1"] + data + ["-o", folder],
                        ["gmtool: error: \(folder): exists and is not a previous sweep (nothing is replaced; choose a new folder)"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder) == ["notes.txt"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["mine"], "no temporary left")
    }

    @Test func sensitivityWritesDistillersColumnsAndASuggestionPruneAccepts() throws {
        let folder = path("sensitivity")
        let result = try gmtool(["sensitivity", model, "--levels", "0,0.5,0.9", "--include", "conv_preds", "--include", "conv1"] + data
                                + ["--max-drop", "100", "-o", folder, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let csv = try String(contentsOfFile: folder + "/sensitivity.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(csv.first == "parameter,sparsity,top1,top5,loss")
        #expect(csv.count == 7 && csv[1].hasPrefix("conv1/kernel,0.0,") && csv[6].hasPrefix("conv_preds/kernel,0.9,"))
        let summary = try json(result)
        #expect(summary["suggested_layer_targets"] as? [String] == ["conv1=0.9", "conv_preds=0.9"])
        let command = try #require(summary["command"] as? String)
        let pruned = try runPrinted(command, output: path("pruned.h5"))
        let layers = try #require(pruned["layers"] as? [[String: Any]])
        for layer in layers where ["conv1", "conv_preds"].contains(layer["layer"] as? String) {
            #expect((layer["sparsity"] as? Double ?? 0) >= 0.9)
        }
        #expect(layers.filter { ($0["sparsity"] as? Double ?? 1) == 0 }.count == layers.count - 2, "the other kernels are not pruned")
        let bad = try gmtool(["sensitivity", model, "--levels", "0:1:0.25"] + data + ["-o", path("never")])
        #expect(bad.status == 64)
        #expect(bad.stderr.hasPrefix("gmtool: error: --levels '0:1:0.25': 1.0 is outside [0, 1) (a sparsity)\n"), "\(bad.stderr)")
        let badTarget = try gmtool(["prune", model, "--layer-target", "conv1=1.5", "--dry-run"])
        #expect(badTarget.status == 64)
        #expect(badTarget.stderr.hasPrefix("gmtool: error: --layer-target takes PATTERN=SPARSITY with 0 <= SPARSITY < 1, got 'conv1=1.5'\n"))
    }
}

/// `sweep --gradients`: dC/dw from a `gmtool grad` file gives the sweep of its own gradient pass
/// over the same images, and the file is checked as `prune --gradients` checks it.
@Suite struct SweepGradientsFileTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-sweep-grads-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    var model: String { Paths.fixture("rescnn_k3.h5") }
    var grid: [String] { ["--beta", "0.02:0.1:3", "--gamma", "1e-3,1e-2", "--max-drop", "100", "--quiet"] }
    var evaluation: [String] { ["--eval-data", Shared.data, "--eval-split", "test", "--limit", "60"] }

    @Test func aGradientFileGivesTheSweepOfItsOwnPass() throws {
        let own = try gmtool(["sweep", model, "--data", Shared.data, "--split", "validation"] + grid + evaluation + ["-o", path("own")])
        #expect(own.status == 0, "\(own.stderr)")
        let grad = try gmtool(["grad", model, "--data", Shared.data, "--split", "validation", "--limit", "60", "--quiet", "-o", path("g.h5")])
        #expect(grad.status == 0, "\(grad.stderr)")
        let read = try gmtool(["sweep", model, "--gradients", path("g.h5")] + grid + evaluation + ["-o", path("read")])
        #expect(read.status == 0, "\(read.stderr)")
        // Every point's outcome and every chart the same bytes; sweep.json differs in where the
        // gradients came from and the timings.
        for name in ["sweep.csv", "layers.csv", "top1_vs_beta.svg", "top1_heatmap.svg", "frontier.svg", "layers.svg"] {
            #expect(FileManager.default.contents(atPath: path("own/\(name)")) == FileManager.default.contents(atPath: path("read/\(name)")), "\(name)")
        }
        #expect(read.stdout.contains("--gradients \(path("g.h5")) --eval-data"), "the reproducing prune command reads the file: \(read.stdout)")
        // Gradients of other weights are refused with prune's line.
        let other = try gmtool(["grad", Paths.fixture("seqcnn_k2.h5"), "--data", Shared.data, "--split", "validation", "--limit", "60", "--quiet", "-o", path("other.h5")])
        #expect(other.status == 0, "\(other.stderr)")
        let refused = try gmtool(["sweep", model, "--gradients", path("other.h5")] + grid + evaluation + ["-o", path("no")])
        #expect(refused.status == 1)
        #expect(refused.stderr.hasPrefix("gmtool: error: \(path("other.h5")): was taken on other weights (weights digest "), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("no")))
    }

    @Test(arguments: [
        (["--gamma", "inf", "--eval-data", "X"], "is used only with a finite --gamma"),
        (["--gamma", "1e-3", "--eval-data", "X", "--data", "X"], "--data is not used with --gradients"),
        (["--gamma", "1e-3"], "needs --eval-data"),
    ])
    func meaninglessCombinationsAreRefused(extra: [String], fragment: String) throws {
        let result = try gmtool(["sweep", model, "--beta", "0.1", "--gradients", path("g.h5"), "-o", path("x")] + extra)
        #expect(result.status == 64)
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
    }
}
