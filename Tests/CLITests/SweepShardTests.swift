import Foundation
import Testing

/// `sweep --shard` + `merge` write the single sweep's folder: every file byte for byte, sweep.json
/// once its two timings are taken out; `merge` refuses sweep shards that are not one whole grid of
/// one sweep, naming the shard and the reason. The grid has 6 points (3 betas x 2 gammas), so 3
/// shards measure 2 points each.
@Suite(.serialized) struct SweepShardTests {
    let scratch: URL
    var model: String { Paths.fixture("mobilenet_k2.h5") }
    let grid = ["--beta", "0.02:0.1:3", "--gamma", "1e-3,inf", "--max-drop", "100", "--quiet"]
    let data = ["--data", Shared.data, "--limit", "64"]

    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-sweep-shards-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }

    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    func sweep(_ extra: [String], _ output: String, model: String? = nil, grid: [String]? = nil, data: [String]? = nil) throws -> String {
        let result = try gmtool(["sweep", model ?? self.model, "-o", path(output)] + (grid ?? self.grid) + (data ?? self.data) + extra)
        #expect(result.status == 0, "\(result.stderr)")
        return path(output)
    }

    /// The folder's files by name; sweep.json without the lines of its timings (the only values
    /// that depend on the run: wall-clock seconds).
    func folder(_ folder: String) throws -> [String: Data] {
        var files: [String: Data] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: folder) {
            var data = try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))
            if name == "sweep.json" {
                let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
                let kept = lines.filter { !$0.contains("\"gradient_seconds\"") && !$0.contains("\"point_seconds\"") }
                #expect(kept.count == lines.count - 2, "sweep.json has its two timings")
                data = Data(kept.joined(separator: "\n").utf8)
            }
            files[name] = data
        }
        return files
    }

    func expectRefused(_ inputs: [String], _ fragments: [String]) throws {
        try expectError(["merge"] + inputs + ["-o", path("refused")], fragments)
        #expect(!FileManager.default.fileExists(atPath: path("refused")))
    }

    @Test func mergedSweepShardsWriteTheSingleSweepsFolderAndBadSetsAreRefused() throws {
        defer { try? FileManager.default.removeItem(at: scratch) }
        let single = try folder(try sweep([], "single"))
        #expect(single.count == 8)
        var three: [String] = []
        for count in [1, 3] {
            let files = try (0..<count).map { try sweep(["--shard", "\($0)/\(count)"], "n\(count)-\($0).h5") }
            if count == 3 { three = files }
            let merge = try gmtool(["merge"] + files.reversed() + ["-o", path("merged-\(count)")])
            #expect(merge.status == 0, "\(merge.stderr)")
            let merged = try folder(path("merged-\(count)"))
            #expect(merged.keys.sorted() == single.keys.sorted())
            for (name, data) in single { #expect(merged[name] == data, "\(count) shards: \(name) differs from the single sweep's") }
        }
        try expectError(["sweep", model, "-o", path("x.h5"), "--shard", "0/7"] + grid + data, ["--shard 0/7", "the grid has only 6 points"])

        // Missing, duplicated, overlapping.
        try expectRefused([three[0], three[2]], ["gmtool: error: shard 1/3: missing (points 2-3"])
        try FileManager.default.copyItem(atPath: three[1], toPath: path("copy-of-1.h5"))
        try expectRefused(three + [path("copy-of-1.h5")], ["duplicates", "both shard 1/3, points 2-3"])
        try expectRefused([three[0], path("n1-0.h5")], ["n1-0.h5: shard 0/1 (points 0-5) overlaps", "shard 0/3, points 0-1"])
        // Another grid, another model, other data.
        _ = try sweep(["--shard", "1/3"], "other-grid-1.h5", grid: ["--beta", "0.02:0.1:3", "--gamma", "1e-2,inf", "--max-drop", "100", "--quiet"])
        try expectRefused([three[0], path("other-grid-1.h5"), three[2]], ["other-grid-1.h5: is part of another sweep", "gamma 0.01,inf"])
        _ = try sweep(["--shard", "1/3"], "other-model-1.h5", model: Shared.model, data: ["--data", Shared.data, "--limit", "8"])
        try expectRefused([three[0], path("other-model-1.h5"), three[2]], ["other-model-1.h5: was taken on another model"])
        _ = try sweep(["--shard", "1/3"], "other-data-1.h5", data: ["--data", Shared.data, "--limit", "32"])
        try expectRefused([three[0], path("other-data-1.h5"), three[2]], ["other-data-1.h5: was taken on other data"])
        // A changed byte in a shard's outcomes; a gradient shard among sweep shards.
        var changed = try Data(contentsOf: URL(fileURLWithPath: three[1]))
        let json = try #require(changed.range(of: Data("\"top1\"".utf8)))
        changed[json.lowerBound + 1] = UInt8(ascii: "T")
        try changed.write(to: URL(fileURLWithPath: path("changed-1.h5")))
        try expectRefused([three[0], path("changed-1.h5"), three[2]], ["changed-1.h5: /sweep/shard.json", "is corrupt"])
        let grad = try gmtool(["grad", model, "-o", path("grad-1.h5"), "--shard", "0/1", "--quiet"] + data)
        #expect(grad.status == 0, "\(grad.stderr)")
        try expectRefused([three[0], path("grad-1.h5"), three[2]], ["grad-1.h5: is a gradients shard", "a sweep shard"])
    }
}
