import Foundation
import HDF5
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

    /// A copy of fixture `fixture` at `path(name)` whose model_config layers `edit` changed.
    func editedCopy(of fixture: String, as name: String, _ edit: (inout [[String: Any]]) throws -> Void) throws -> String {
        let copy = path(name)
        try FileManager.default.copyItem(atPath: Paths.fixture(fixture), toPath: copy)
        let file = try HDF5File.open(copy, mode: .readWrite)
        let text = try file.root.attribute("model_config").readString()
        var config = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
        var inner = try #require(config["config"] as? [String: Any])
        var layers = try #require(inner["layers"] as? [[String: Any]])
        try edit(&layers)
        inner["layers"] = layers
        config["config"] = inner
        try file.root.setAttribute("model_config", string: String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
        try file.flush()
        return copy
    }

    @Test(arguments: ["activations_k2.h5", "activations_k3.keras", "merging_k2.h5", "merging_k3.keras",
                      "nested_k2.h5", "nested_k3.keras", "normalization_k2.h5", "normalization_k3.keras",
                      "reshaping_k2.h5", "reshaping_k3.keras", "resizing_k2.h5", "resizing_k3.keras",
                      "convolutions_k2.h5", "convolutions_k3.keras",
                      "sequences_k2.h5", "sequences_k3.keras"])
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

    /// A layer of a class gmtool does not run (a Conv3D, made by renaming the class of seqcnn's
    /// first Conv2D in the model config; the engine builds no Conv3D): `stats` counts its weights
    /// as stored, calls none of them prunable and names the layer; `eval` and `prune` refuse the
    /// model in one line naming the layer and its class.
    @Test func aLayerClassGmtoolDoesNotRunIsCountedAndRefused() throws {
        let copy = try editedCopy(of: "seqcnn_k2.h5", as: "conv3d.h5") { layers in
            let index = try #require(layers.firstIndex { ($0["config"] as? [String: Any])?["name"] as? String == "c1" })
            #expect(layers[index]["class_name"] as? String == "Conv2D")
            layers[index]["class_name"] = "Conv3D"
        }
        let original = try json(try gmtool(["stats", Paths.fixture("seqcnn_k2.h5"), "--json"]))
        let stats = try gmtool(["stats", copy, "--json"])
        #expect(stats.status == 0, "\(stats.stderr)")
        let object = try json(stats)
        #expect(object["unknown_layers"] as? [String] == ["c1 (Conv3D)"])
        #expect(original["unknown_layers"] as? [String] == [])
        #expect(object["total_parameters"] as? Int == original["total_parameters"] as? Int)
        let rows = object["layers"] as? [[String: Any]] ?? []
        let c1 = rows.filter { $0["layer"] as? String == "c1" }
        #expect(c1.count == 2 && c1.allSatisfy { $0["prunable"] as? Bool == false && $0["layer_type"] as? String == "Conv3D" })
        let kernelSize = rows.first { $0["layer"] as? String == "c1" && $0["role"] as? String == "kernel" }?["parameters"] as? Int ?? -1
        #expect(object["prunable_parameters"] as? Int == (original["prunable_parameters"] as? Int ?? 0) - kernelSize)
        let table = try gmtool(["stats", copy])
        #expect(table.stdout.contains("unknown layers:          c1 (Conv3D): weights counted as stored, none prunable; gmtool cannot run this model"))
        #expect(!(try gmtool(["stats", Paths.fixture("seqcnn_k2.h5")]).stdout.contains("unknown layers")))
        for arguments in [["eval", copy, "--data", Shared.data, "--limit", "10"],
                          ["prune", copy, "--beta", "0.1", "--gamma", "1e9", "-o", path("pruned.h5"), "--data", Shared.data, "--split", "validation", "--limit", "64"]] {
            let refused = try gmtool(arguments)
            #expect(refused.status == 1)
            #expect(refused.stderr == "gmtool: error: \(copy): layer c1 (Conv3D): layer class Conv3D is not supported\n", "\(arguments): \(refused.stderr)")
        }
        #expect(!FileManager.default.fileExists(atPath: path("pruned.h5")))
    }

    /// UpSampling2D runs nearest interpolation only: a bilinear one (the reshaping fixture's
    /// first layer, its config edited) is refused in one line naming the layer, class and why.
    @Test func bilinearUpSamplingIsRefused() throws {
        let copy = try editedCopy(of: "reshaping_k2.h5", as: "bilinear.h5") { layers in
            let index = try #require(layers.firstIndex { ($0["config"] as? [String: Any])?["name"] as? String == "up_sampling2d" })
            var layerConfig = try #require(layers[index]["config"] as? [String: Any])
            #expect(layerConfig["interpolation"] as? String == "nearest")
            layerConfig["interpolation"] = "bilinear"
            layers[index]["config"] = layerConfig
        }
        let refused = try gmtool(["eval", copy, "--data", Shared.data, "--limit", "10"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "gmtool: error: \(copy): layer up_sampling2d (UpSampling2D): interpolation \"bilinear\" is not supported (only \"nearest\")\n",
                "\(refused.stderr)")
        #expect(try gmtool(["eval", Paths.fixture("reshaping_k2.h5"), "--data", Shared.data, "--limit", "10"]).status == 0)
    }

    /// What the resizing fixture's layers do not run, each refused in one line naming the layer,
    /// its class and why (the fixture's config edited): an interpolation other than bilinear
    /// and nearest, a LayerNormalization over another axis than the last, PReLU's shared_axes
    /// outside the input's axes, a TFOpLambda that is not arithmetic (one of the hard-swish's
    /// made tf.nn.relu).
    @Test(arguments: [
        ("resizing", "interpolation", #""bicubic""#, "interpolation \"bicubic\" is not supported (\"bilinear\" and \"nearest\")"),
        ("layer_normalization", "axis", "[1, 2, 3]", "normalizes over axis [1, 2, 3]; only the last axis (-1) is supported"),
        ("resizing_1", "antialias", "true", "antialias=True is not supported"),
        ("p_re_lu", "shared_axes", "[4]", "shared_axes [4] are not axes 1...3 of its input of shape [24, 28, 19]"),
        ("tf.math.truediv", "function", #""nn.relu""#, "is the TensorFlow function tf.nn.relu recorded from Python code, which gmtool cannot run (it runs add, subtract, multiply and divide of a tensor and a number); rebuild the model with built-in Keras layers (Keras 3 saves such models with them)"),
    ])
    func unsupportedResizingAndNormalizationAreRefused(layer: String, key: String, value: String, reason: String) throws {
        let copy = try editedCopy(of: "resizing_k2.h5", as: "\(layer)_\(key).h5") { layers in
            let index = try #require(layers.firstIndex { ($0["config"] as? [String: Any])?["name"] as? String == layer })
            var layerConfig = try #require(layers[index]["config"] as? [String: Any])
            // The new value, written as JSON.
            layerConfig[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
            layers[index]["config"] = layerConfig
        }
        let className = ["resizing": "Resizing", "resizing_1": "Resizing", "layer_normalization": "LayerNormalization", "p_re_lu": "PReLU",
                         "tf.math.truediv": "TFOpLambda"][layer]!
        let refused = try gmtool(["eval", copy, "--data", Shared.data, "--limit", "10"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "gmtool: error: \(copy): layer \(layer) (\(className)): \(reason)\n", "\(refused.stderr)")
    }

    /// PReLU's alpha has a spec of any rank (Keras 2's config does not fix it), so its shape is
    /// checked when the graph is built: with shared_axes [1] instead of the [1, 2] it was saved
    /// with, the stored (1, 1, 19) alpha does not fit the (1, 28, 19) the layer needs.
    @Test func aPReLUAlphaOfTheWrongShapeIsRefused() throws {
        let copy = try editedCopy(of: "resizing_k2.h5", as: "prelu_shape.h5") { layers in
            let index = try #require(layers.firstIndex { ($0["config"] as? [String: Any])?["name"] as? String == "p_re_lu" })
            var layerConfig = try #require(layers[index]["config"] as? [String: Any])
            #expect(layerConfig["shared_axes"] as? [Int] == [1, 2])
            layerConfig["shared_axes"] = [1]
            layers[index]["config"] = layerConfig
        }
        #expect(try gmtool(["stats", copy]).status == 0)
        let refused = try gmtool(["eval", copy, "--data", Shared.data, "--limit", "10"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "gmtool: error: \(copy): /model_weights/p_re_lu/p_re_lu/alpha:0: shape [1, 1, 19] does not fit layer p_re_lu: expected [1, 28, 19]\n",
                "\(refused.stderr)")
    }

    /// From a sparse export the ungrouped im2col convolutions (dilated Conv2D, SeparableConv2D's
    /// pointwise half, Conv1D with any padding) and Dense run the CSR kernel; the grouped ones and Conv2DTranspose stay dense (their
    /// CSR rows are not a product over the im2col columns of all channels), and every kernel run
    /// sparse gives the dense loss (float32 summation order: 1e-6).
    @Test(arguments: [("convolutions_k2.h5", ["conv2d", "conv2d_3", "separable_conv2d", "dense"]),
                      ("sequences_k2.h5", ["conv1d", "conv1d_3", "conv1d_4", "dense"])])
    func groupedAndTransposedConvolutionsRunDenseFromAnExport(fixture: String, sparseLayers: [String]) throws {
        let output = path("pruned.h5"), exported = path("exported.h5")
        let prune = try gmtool(["prune", Paths.fixture(fixture), "--beta", "0.3", "--gamma", "1e9", "-o", output,
                                "--data", Shared.data, "--split", "validation", "--limit", "64"])
        #expect(prune.status == 0, "\(prune.stderr)")
        #expect(try gmtool(["export", output, "-o", exported, "--csr"]).status == 0)
        let evalData = ["--data", Shared.data, "--limit", "64", "--json"]
        let dense = try json(try gmtool(["eval", output] + evalData))
        let sparse = try json(try gmtool(["eval", exported, "--kernels", "sparse"] + evalData))
        let layers = sparse["sparse_layers"] as? [[String: Any]] ?? []
        #expect(layers.compactMap { $0["layer"] as? String } == sparseLayers)
        #expect(layers.allSatisfy { $0["sparse"] as? Bool == true })
        let loss = (dense["mean_loss"] as? Double ?? .nan, sparse["mean_loss"] as? Double ?? .nan)
        #expect(abs(loss.0 - loss.1) <= 1e-6, "\(loss)")
    }

    /// What the convolution family cannot run is refused in one line naming the layer, its class
    /// and why: (fixture, "layer (class)", config key, JSON value, the problem).
    @Test(arguments: [
        ("convolutions_k2.h5", "conv2d_transpose (Conv2DTranspose)", "dilation_rate", "[2, 2]", "dilation_rate [2, 2] is not supported for Conv2DTranspose"),
        ("convolutions_k2.h5", "conv2d_transpose (Conv2DTranspose)", "groups", "2", "groups=2 is not supported for Conv2DTranspose"),
        // 'same' with output_padding: (26 - 1) + 2 - 2 * 1 rows, which TensorFlow cannot convolve back to 26 either.
        ("convolutions_k2.h5", "conv2d_transpose_1 (Conv2DTranspose)", "padding", "\"same\"", "its 25x63 output does not convolve back to its 26x32 input"),
        ("convolutions_k2.h5", "conv2d_1 (Conv2D)", "groups", "3", "groups=3 does not divide its 16 input channels and 16 filters"),
        ("convolutions_k2.h5", "conv2d (Conv2D)", "padding", "\"causal\"", "padding 'causal' is not supported (same, valid)"),
        ("sequences_k2.h5", "conv1d (Conv1D)", "data_format", "\"channels_first\"", "data_format channels_first is not supported (channels_last)"),
        ("sequences_k2.h5", "max_pooling1d (MaxPooling1D)", "data_format", "\"channels_first\"", "data_format channels_first is not supported (channels_last)"),
        ("sequences_k2.h5", "conv1d_3 (Conv1D)", "dilation_rate", "[30]", "a 2 window dilated by [30] does not fit its 24 input"),
    ])
    func convolutionRefusalsNameTheLayer(fixture: String, layer: String, key: String, value: String, problem: String) throws {
        let name = String(layer.prefix { $0 != " " })
        let copy = try editedCopy(of: fixture, as: "edited.h5") { layers in
            let index = try #require(layers.firstIndex { ($0["config"] as? [String: Any])?["name"] as? String == name })
            var config = try #require(layers[index]["config"] as? [String: Any])
            config[key] = try JSONSerialization.jsonObject(with: Data(value.utf8), options: .fragmentsAllowed)
            layers[index]["config"] = config
        }
        let refused = try gmtool(["eval", copy, "--data", Shared.data, "--limit", "10"])
        #expect(refused.status == 1)
        #expect(refused.stderr == "gmtool: error: \(copy): layer \(layer): \(problem)\n", "\(refused.stderr)")
    }

    @Test(arguments: ["activations_k2.h5", "nested_k3.keras", "resizing_k2.h5", "resizing_k3.keras", "convolutions_k2.h5", "sequences_k3.keras"])
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
