import Foundation
import Testing

/// The layer-family fixtures (fixtures/make_layer_golden.py), saved by Keras 2 and Keras 3, through
/// the whole tool: gradients and the paper's rule, the sparse export and inference from it, and
/// (where the model has no training-only layers) a training epoch with pruning.
@Suite struct LayerFamilyCommandTests {
    let folder: URL
    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-families-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    @Test(arguments: ["activations_k2.h5", "activations_k3.keras", "merging_k2.h5", "merging_k3.keras",
                      "nested_k2.h5", "nested_k3.keras", "normalization_k2.h5", "normalization_k3.keras"])
    func prunesWithGradientsExportsAndRunsTheExport(fixture: String) throws {
        let data = ["--data", Shared.data, "--split", "validation", "--limit", "64"]
        let evalData = ["--data", Shared.data, "--limit", "64", "--json"]
        let output = path(fixture.replacingOccurrences(of: ".", with: "_pruned."))
        let prune = try gmtool(["prune", Paths.fixture(fixture), "--beta", "0.05", "--gamma", "1e9", "-o", output, "--json"] + data)
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect((try json(prune)["pruned_now"] as? Int ?? 0) > 0)
        let exported = path("\(fixture).sparse.h5")
        let export = try gmtool(["export", output, "-o", exported])
        #expect(export.status == 0, "\(export.stderr)")
        let dense = try json(try gmtool(["eval", output] + evalData))
        let sparse = try json(try gmtool(["eval", exported] + evalData))
        #expect(dense["top1_accuracy"] as? Double == sparse["top1_accuracy"] as? Double)
        let loss = (dense["mean_loss"] as? Double ?? .nan, sparse["mean_loss"] as? Double ?? .nan)
        #expect(abs(loss.0 - loss.1) <= 1e-6, "\(loss)")
    }

    @Test(arguments: ["activations_k2.h5", "nested_k3.keras"])
    func trainsAnEpochWithPruning(fixture: String) throws {
        try writeTinyCIFAR(in: folder)
        let result = try gmtool(["train", Paths.fixture(fixture), "--data", folder.path, "--epochs", "1", "--batch-size", "16",
                                 "--beta", "0.05", "--gamma", "1e9", "--delta", "1", "-o", path("trained.h5")])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(FileManager.default.fileExists(atPath: path("trained.h5")))
    }

    /// Normalization's sample count is stored as int64 by Keras 2 and 3: 8 bytes a value in
    /// `stats`, the float32 weights 4.
    @Test(arguments: ["normalization_k2.h5", "normalization_k3.keras"])
    func bytesFollowTheStoredType(fixture: String) throws {
        let layers = try json(try gmtool(["stats", Paths.fixture(fixture), "--json"]))["layers"] as? [[String: Any]] ?? []
        let counts = layers.filter { $0["role"] as? String == "count" }
        #expect(!counts.isEmpty)
        for row in layers {
            let perValue = row["role"] as? String == "count" ? 8 : 4
            #expect(row["bytes"] as? Int == (row["parameters"] as? Int ?? -1) * perValue, "\(row)")
        }
    }

    /// A frozen base (`base.trainable = False`) counts as non-trainable, as Keras counts it: only
    /// the Dense head's 16 x 10 + 10 parameters are trainable, in both formats.
    @Test(arguments: ["nested_frozen_k2.h5", "nested_frozen_k3.keras"])
    func aFrozenBaseIsNotTrainable(fixture: String) throws {
        let stats = try json(try gmtool(["stats", Paths.fixture(fixture), "--json"]))
        #expect(stats["trainable_parameters"] as? Int == 170)
        #expect(stats["total_parameters"] as? Int == 1_178)
    }
}
