import Engine
import Foundation
import KerasCheckpoint
import Testing

@Suite struct PruneCommandTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-prune-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    @Test func pruneWritesMasksAndZerosThatSurviveAndRepruning() throws {
        let first = path("first.h5"), second = path("second.h5")
        let input = Paths.fixture("mobilenet_k2.h5")
        let before = FileManager.default.contents(atPath: input)
        let result = try gmtool(["prune", input, "--beta", "0.05", "--gamma", "0.01", "--data", Shared.data, "--limit", "100",
                                 "-o", first, "--json", "--eval-same"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.contents(atPath: input) == before, "the input is never modified")
        let summary = try json(result)
        let prunedNow = try #require(summary["pruned_now"] as? Int)
        #expect(prunedNow > 0)
        #expect((summary["messages"] as? [String])?.contains { $0.contains("split validation, the default") } == true)
        // gmtool eval on the written file gives the accuracy prune reported after pruning.
        let evaluation = try json(try gmtool(["eval", first, "--data", Shared.data, "--split", "validation", "--limit", "100", "--json"]))
        #expect(evaluation["top1_accuracy"] as? Double == summary["accuracy_after"] as? Double)

        let checkpoint = try Checkpoint.open(first)
        var maskedZeros = 0
        for weight in checkpoint.weights where weight.prunable {
            let values = try checkpoint.read(weight)
            let mask = try #require(try checkpoint.mask(for: weight))
            for (value, bit) in zip(values, mask) where bit == 0 {
                #expect(value == 0)
                maskedZeros += 1
            }
        }
        #expect(maskedZeros == prunedNow)

        // Pruning again with a smaller beta prunes nothing new and keeps every zero.
        let again = try json(try gmtool(["prune", first, "--beta", "0.01", "-o", second, "--json"]))
        let reread = try Checkpoint.open(second)
        var zerosKept = true
        for weight in reread.weights where weight.prunable {
            let mask = try #require(try reread.mask(for: weight))
            let old = try #require(try checkpoint.mask(for: weight))
            zerosKept = zerosKept && zip(old, mask).allSatisfy { $0 != 0 || $1 == 0 }
        }
        #expect(zerosKept)
        #expect((again["nonzero_after"] as? Int ?? 0) <= (summary["nonzero_after"] as? Int ?? 0))
    }

    @Test func dryRunWritesNothingAndTargetSparsityReportsBeta() throws {
        let output = path("never.h5")
        let result = try gmtool(["prune", Paths.fixture("seqcnn_k2.h5"), "--target-sparsity", "0.5", "--dry-run", "--json",
                                 "--exclude", "fc2"])
        #expect(result.status == 0, "\(result.stderr)")
        let summary = try json(result)
        #expect((summary["sparsity_after"] as? Double ?? 0) >= 0.5)
        #expect((summary["sparsity_after"] as? Double ?? 1) < 0.501)
        #expect((summary["messages"] as? [String])?.contains { $0.contains("chose beta") } == true)
        #expect((summary["layers"] as? [[String: Any]])?.contains { $0["layer"] as? String == "fc2" } == false)
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func aLayerThatLosesEverythingIsWarnedAbout() throws {
        let result = try gmtool(["prune", Paths.fixture("seqcnn_k2.h5"), "--beta", "100", "--include", "c2", "-o", path("dead.h5")])
        #expect(result.status == 0)
        #expect(result.stderr.contains("warning: c2 loses all of its kernel weights"))
        let stats = try gmtool(["stats", path("dead.h5")])
        #expect(stats.stdout.contains("ALL ZERO"))
    }

    @Test func inPlaceReplacesTheInputOnlyWhenAsked() throws {
        let copy = path("copy.h5")
        try FileManager.default.copyItem(atPath: Paths.fixture("seqcnn_k2.h5"), toPath: copy)
        let refused = try gmtool(["prune", copy, "--beta", "0.05", "-o", copy])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("--in-place"))
        // A mode that 0o666 less a umask never gives (others may read, the group may not), so a
        // replacement created with the default mode shows.
        try FileManager.default.setAttributes([.posixPermissions: 0o604], ofItemAtPath: copy)
        let done = try gmtool(["prune", copy, "--beta", "0.05", "-o", copy, "--in-place"])
        #expect(done.status == 0, "\(done.stderr)")
        #expect(try Checkpoint.open(copy).statistics().hasMasks)
        #expect(try FileManager.default.attributesOfItem(atPath: copy)[.posixPermissions] as? Int == 0o604, "the replaced file keeps its mode")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path) == ["copy.h5"], "no temporary file left")
    }

    @Test(arguments: [
        (["--beta", "-1"], "--beta"),
        (["--beta", "nan"], "--beta"),
        (["--beta", "0.1", "--gamma", "-0.5"], "--gamma"),
        (["--target-sparsity", "1.5"], "--target-sparsity"),
        (["--target-sparsity", "0"], "--target-sparsity"),
        (["--beta", "0.1", "--exclude", "nothing_like_this"], "matches no layer"),
        (["--beta", "0.1", "--layer-beta", "c1"], "PATTERN=VALUE"),
        (["--beta", "0.1", "--gamma", "0.01"], "--data"),
        (["--target-sparsity", "0.999"], "out of reach"),
    ])
    func badSettingsWriteNothing(arguments: [String], fragment: String) throws {
        let output = path("out.h5")
        let result = try gmtool(["prune", Paths.fixture("seqcnn_k2.h5")] + arguments + ["-o", output])
        #expect(result.status != 0)
        #expect(result.stderr.contains(fragment), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func unwritableOrMissingOutputFolder() throws {
        let result = try gmtool(["prune", Paths.fixture("seqcnn_k2.h5"), "--beta", "0.1", "-o", path("missing/out.h5")])
        #expect(result.status == 1)
        #expect(result.stderr.contains("does not exist"))
        #expect(result.stderr.split(separator: "\n").count == 1)
    }

    @Test func reusesGradientFiles() throws {
        let grads = path("grads.h5")
        let made = try gmtool(["grad", Paths.fixture("rescnn_k3.keras"), "--data", Shared.data, "--split", "validation", "--limit", "64", "-o", grads])
        #expect(made.status == 0, "\(made.stderr)")
        let fromFile = try json(try gmtool(["prune", Paths.fixture("rescnn_k3.keras"), "--beta", "0.2", "--gamma", "0.01",
                                            "--gradients", grads, "--dry-run", "--json"]))
        let computed = try json(try gmtool(["prune", Paths.fixture("rescnn_k3.keras"), "--beta", "0.2", "--gamma", "0.01",
                                            "--data", Shared.data, "--limit", "64", "--dry-run", "--json"]))
        #expect(fromFile["nonzero_after"] as? Int == computed["nonzero_after"] as? Int)
        #expect(fromFile["gradient_images"] as? Int == 64)
        let wrong = try gmtool(["prune", Paths.fixture("seqcnn_k2.h5"), "--beta", "0.2", "--gamma", "0.01", "--gradients", grads, "--dry-run"])
        #expect(wrong.status == 1)
        #expect(wrong.stderr.hasPrefix("gmtool: error: \(grads): was taken on other weights (weights digest "))
    }
}
