import Foundation
import Testing

/// `grad --shard` + `merge` give the single run's file byte for byte, and `merge` refuses every
/// set of shards that is not one whole pass, naming the shard and the reason. 251 images in
/// batches of 2 are 126 batches (the last of 1 image) in 13 batch groups (the last of 6 batches),
/// two `GroupTree` blocks (8 + 5 groups), so the shards cut groups of 10 batches, fold their
/// groups into pieces that cross the block boundary or stop inside a block, and end on a short
/// group and a short batch.
@Suite(.serialized) struct ShardTests {
    let scratch: URL
    let data = ["--data", Shared.data, "--limit", "251", "--batch-size", "2", "--quiet"]

    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    func bytes(_ name: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path(name))) }

    func grad(_ extra: [String], _ output: String, model: String = Shared.model, data: [String]? = nil,
              environment: [String: String] = [:]) throws {
        let result = try gmtool(["grad", model, "-o", path(output)] + (data ?? self.data) + extra, environment: environment)
        #expect(result.status == 0, "\(result.stderr)")
    }

    /// Shards K/N of the 130-image pass, written as `prefix`K.h5.
    func shards(_ count: Int, _ prefix: String) throws -> [String] {
        try (0..<count).map { k in
            try grad(["--shard", "\(k)/\(count)"], "\(prefix)\(k).h5")
            return path("\(prefix)\(k).h5")
        }
    }

    func expectRefused(_ inputs: [String], _ fragments: [String]) throws {
        let output = path("refused.h5")
        try expectError(["merge"] + inputs + ["-o", output], fragments)
        #expect(!FileManager.default.fileExists(atPath: output))
    }

    @Test func mergedShardsEqualTheSingleRunAndEveryBadSetIsRefused() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        try grad([], "single.h5")
        let single = try bytes("single.h5")
        var four: [String] = []
        for count in [1, 3, 4, 5, 7] {
            let files = try shards(count, "n\(count)-")
            if count == 4 { four = files }
            // Any order on the command line.
            let merge = try gmtool(["merge"] + files.reversed() + ["-o", path("merged-\(count).h5")])
            #expect(merge.status == 0, "\(merge.stderr)")
            #expect(try bytes("merged-\(count).h5") == single, "\(count) shards merged differ from the single run")
        }
        // The merged file is a gradient file like any other: prune takes it.
        let pruned = try gmtool(["prune", Shared.model, "--gradients", path("merged-4.h5"), "--beta", "0.05", "--gamma", "0.001",
                                 "-o", path("pruned.h5")])
        #expect(pruned.status == 0, "\(pruned.stderr)")

        // A retried task rewrites its own shard with the same bytes; auto/N reads the scheduler's index.
        let shardTwo = try bytes("n4-2.h5")
        try grad(["--shard", "2/4"], "n4-2.h5")
        #expect(try bytes("n4-2.h5") == shardTwo)
        try grad(["--shard", "auto/4"], "slurm-2.h5",
                 environment: ["SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"])
        try grad(["--shard", "auto/4"], "k8s-2.h5", environment: ["JOB_COMPLETION_INDEX": "2"])
        #expect(try bytes("slurm-2.h5") == bytes("n4-2.h5"))
        #expect(try bytes("k8s-2.h5") == bytes("n4-2.h5"))
        try expectError(["grad", Shared.model, "-o", path("x.h5"), "--shard", "auto/3"] + data, ["--shard auto/3", "SLURM_ARRAY_TASK_ID"])
        try expectError(["grad", Shared.model, "-o", path("x.h5"), "--shard", "0/14"] + data, ["--shard 0/14", "only 13 batch groups"])

        // Missing, duplicated, overlapping.
        try expectRefused([four[0], four[1], four[3]], ["gmtool: error: shard 2/4: missing (images 120-179"])
        try FileManager.default.copyItem(atPath: four[1], toPath: path("copy-of-1.h5"))
        try expectRefused(four + [path("copy-of-1.h5")], ["duplicates", "both shard 1/4, images 60-119"])
        try expectRefused([four[0], path("n3-1.h5"), four[2], four[3]], ["overlaps", "shard 1/3, images 80-159"])
        // Another model, other data.
        try grad(["--shard", "1/4"], "other-model-1.h5", model: Paths.fixture("mobilenet_k2.h5"))
        try expectRefused([four[0], path("other-model-1.h5"), four[2], four[3]], ["other-model-1.h5: was taken on another model"])
        try grad(["--shard", "1/4"], "other-data-1.h5", data: data + ["--split", "validation"])
        try expectRefused([four[0], path("other-data-1.h5"), four[2], four[3]], ["other-data-1.h5: was taken on other data", "data_batch_5.bin"])
        // Truncated; a changed byte in a partial sum.
        let shard2 = try bytes("n4-2.h5")
        try shard2.prefix(shard2.count / 2).write(to: URL(fileURLWithPath: path("truncated-2.h5")))
        try expectRefused([four[0], four[1], path("truncated-2.h5"), four[3]], ["truncated-2.h5: ", "truncated"])
        var changed = shard2
        changed[changed.count / 2] ^= 0x40
        try changed.write(to: URL(fileURLWithPath: path("changed-2.h5")))
        try expectRefused([four[0], four[1], path("changed-2.h5"), four[3]], ["changed-2.h5: /groups/", "is corrupt"])
        // Not a shard at all.
        try expectRefused(four + [path("single.h5")], ["single.h5: is not a shard file"])
    }

    @Test func evaluationShardsMergeIntoTheSingleEvaluation() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        var files: [String] = []
        for k in 0..<3 {
            let result = try gmtool(["eval", Shared.model, "--shard", "\(k)/3", "-o", path("eval-\(k).h5")] + data)
            #expect(result.status == 0, "\(result.stderr)")
            files.append(path("eval-\(k).h5"))
        }
        let single = try json(try gmtool(["eval", Shared.model, "--json"] + data))
        let merged = try json(try gmtool(["merge", "--json"] + files))
        for key in ["images", "top1_accuracy", "top5_accuracy", "mean_loss"] {
            #expect((merged[key] as? NSNumber) == (single[key] as? NSNumber), "\(key)")
        }
        try expectError(["merge", files[0], files[2]], ["shard 1/3: missing"])
        let alone = try gmtool(["eval", Shared.model, "--shard", "0/3"] + data)
        #expect(alone.status == 64)
        #expect(alone.stderr.hasPrefix("gmtool: error: --shard and -o/--output go together\n"))
    }
}
