import Engine
import Foundation
import HDF5
import Testing
@testable import KerasCheckpoint

private let layoutNames: [String: CheckpointLayout] = [
    "keras2_full": .legacyFull, "keras3_legacy_h5": .legacyFull, "keras2_weights": .legacyWeights,
    "keras3_weights_h5": .kerasWeights, "keras3_zip": .kerasArchive,
]

@Suite struct FixtureParsingTests {
    @Test(arguments: Fixtures.goodFiles)
    func countsShapesAndValuesMatchKeras(name: String) throws {
        let expected = try #require(Fixtures.expected["files"]?[name])
        let checkpoint = try Fixtures.open(name)
        #expect(checkpoint.layout == layoutNames[expected["layout"]?.string ?? ""])
        let statistics = try checkpoint.statistics()
        #expect(statistics.totalParameters == expected["params"]?["total"]?.int)
        #expect(statistics.trainableParameters == expected["params"]?["trainable"]?.int)
        #expect(statistics.nonTrainableParameters == expected["params"]?["non_trainable"]?.int)

        let expectedWeights = try #require(expected["weights"]?.array)
        let weights = checkpoint.weights
        try #require(weights.count == expectedWeights.count)
        for (weight, reference) in zip(weights, expectedWeights) {
            #expect(weight.layerName == reference["layer"]?.string)
            #expect(weight.layerClass == reference["class_name"]?.string)
            // Keras 3 calls the depthwise weight "kernel"; gmtool names roles the same in both generations.
            var role = reference["role"]?.string
            if reference["class_name"]?.string == "DepthwiseConv2D" && role == "kernel" { role = "depthwise_kernel" }
            #expect(weight.role.description == role, "\(name) \(weight.datasetPath)")
            #expect(weight.shape == reference["shape"]?.ints)
            #expect(weight.trainable == reference["trainable"]?.bool)
            #expect(weight.datasetPath == reference["h5_path"]?.string)
            // Sums in float64 of the float32 values: equal up to summation order.
            let values = try checkpoint.read(weight).map(Double.init)
            let sum = values.reduce(0, +), absSum = values.reduce(0) { $0 + abs($1) }
            let referenceSum = try #require(reference["sum"]?.double), referenceAbs = try #require(reference["abs_sum"]?.double)
            #expect(abs(sum - referenceSum) <= 1e-9 * max(1, referenceAbs), "\(name) \(weight.datasetPath)")
            #expect(abs(absSum - referenceAbs) <= 1e-9 * max(1, referenceAbs))
        }
    }

    @Test func mobilenetPrunableKernels() throws {
        let checkpoint = try Fixtures.open("mobilenet_k2.h5")
        let prunable = checkpoint.weights.filter(\.prunable)
        // conv1, 13 depthwise, 13 pointwise, conv_preds.
        #expect(prunable.count == 28)
        #expect(prunable.filter { $0.role == .depthwiseKernel }.count == 13)
        #expect(!checkpoint.weights.contains { $0.prunable && $0.role == .bias })
    }

    /// The checkpoint reader knows layers only through the catalog it is given: with one that
    /// knows no class, every weight is taken as stored (roles from the names, Keras 3's `vars/<i>`
    /// unknown), none is prunable and every layer is listed as unknown; with one that knows
    /// seqcnn's classes but prunes none, the roles and shapes are the registry's and nothing is
    /// prunable.
    @Test func theCatalogDecidesRolesAndPrunable() throws {
        struct Knows: LayerCatalog {
            let classes: Set<String>
            let prunes: Bool
            func weightSpecs(for layer: LayerConfig) -> [WeightSpec]? {
                classes.contains(layer.className) ? LayerRegistry.standard.weightSpecs(for: layer) : nil
            }
            func prunableRoles(className: String) -> Set<WeightRole> {
                prunes ? LayerRegistry.standard.prunableRoles(className: className) : []
            }
        }
        let standard = try Checkpoint.open(Fixtures.path("seqcnn_k3.keras"))
        #expect(standard.weights.contains(where: \.prunable) && standard.unknownLayers.isEmpty)
        let none = try Checkpoint.open(Fixtures.path("seqcnn_k3.keras"), layers: Knows(classes: [], prunes: true))
        #expect(none.weights.count == standard.weights.count && !none.weights.contains(where: \.prunable))
        #expect(none.weights.allSatisfy { if case .other(let name) = $0.role { return Int(name) != nil } else { return false } })
        #expect(none.unknownLayers.count == standard.modelConfig!.layers.count)
        let classes = Set(standard.modelConfig!.layers.map(\.className))
        let unpruned = try Checkpoint.open(Fixtures.path("seqcnn_k3.keras"), layers: Knows(classes: classes, prunes: false))
        #expect(unpruned.weights.map(\.role) == standard.weights.map(\.role) && !unpruned.weights.contains(where: \.prunable))
        #expect(unpruned.unknownLayers.isEmpty)
    }

    @Test func keras3ArchiveNamesTheDepthwiseWeightKernelButItIsDepthwise() throws {
        let checkpoint = try Fixtures.open("rescnn_k3.keras")
        let depthwise = try #require(checkpoint.weights.first { $0.layerClass == "DepthwiseConv2D" })
        #expect(depthwise.role == .depthwiseKernel)
        #expect(depthwise.prunable)
    }

    @Test func splitLayerNamesAttributesAreJoined() throws {
        let file = try HDF5File.open(Fixtures.path("split_k2_weights.h5"))
        #expect(try !file.root.hasAttribute("layer_names"))
        #expect(try file.root.hasAttribute("layer_names1"))
        let checkpoint = try Fixtures.open("split_k2_weights.h5")
        #expect(checkpoint.layers.count == Fixtures.expected["files"]?["split_k2_weights.h5"]?["layer_names_attr"]?.array?.count)
    }

    @Test func weightsOnlyFilesWithoutConfigStillCount() throws {
        // Keras 2 weights files name their weights: counts need no architecture.
        let checkpoint = try Checkpoint.open(Fixtures.path("seqcnn_k2_weights.h5"))
        #expect(checkpoint.modelConfig == nil)
        #expect(try checkpoint.statistics().totalParameters == 9962)
        #expect(try checkpoint.statistics().trainableParameters == 9946)
        // Keras 3 weights files do not: the architecture is required.
        #expect(throws: CheckpointError.self) { try Checkpoint.open(Fixtures.path("seqcnn_k3.weights.h5")) }
    }

    @Test(arguments: [
        ("Conv2D", "conv2d"), ("DepthwiseConv2D", "depthwise_conv2d"), ("BatchNormalization", "batch_normalization"),
        ("ReLU", "re_lu"), ("GlobalAveragePooling2D", "global_average_pooling2d"), ("Dense", "dense"),
        ("SeparableConv2D", "separable_conv2d"), ("ZeroPadding2D", "zero_padding2d"), ("InputLayer", "input_layer"),
    ])
    func snakeCaseMatchesKeras(className: String, snake: String) {
        #expect(Checkpoint.snakeCase(className) == snake)
    }
}

@Suite struct BadCheckpointTests {
    @Test(arguments: Fixtures.expected["bad"]?.object?.keys.sorted() ?? [])
    func badFilesThrowCheckpointErrors(name: String) throws {
        do {
            _ = try Checkpoint.open(Fixtures.path("bad/\(name)"), config: nil)
            Issue.record("\(name) opened without error")
        } catch let error as CheckpointError {
            #expect(error.file.hasSuffix(name))
            #expect(!error.problem.isEmpty)
        }
    }

    /// Optional metadata may be absent, but one that is there and unreadable is an error, not nil.
    @Test func anUnreadableKerasVersionIsAnError() throws {
        let scratch = try ScratchFolder()
        let copy = scratch.path("version.h5")
        try FileManager.default.copyItem(atPath: Fixtures.path("seqcnn_k2.h5"), toPath: copy)
        try HDF5File.open(copy, mode: .readWrite).root.group("model_weights").setAttribute("keras_version", values: [Int32(3)], scalar: true)
        let error = #expect(throws: CheckpointError.self) { try Checkpoint.open(copy) }
        #expect(error?.description == "\(copy): /model_weights attribute keras_version: holds int32, not strings")
    }

    @Test func shapeDisagreementNamesDatasetAndExpectation() throws {
        do {
            _ = try Checkpoint.open(Fixtures.path("bad/shape_mismatch.h5"))
            Issue.record("expected an error")
        } catch let error as CheckpointError {
            #expect(error.object == "/model_weights/fc1/fc1/kernel:0")
            #expect(error.problem.contains("(32, 256)"))
            #expect(error.problem.contains("(?, 32)"))
        }
    }
}

@Suite struct RoundTripTests {
    @Test(arguments: Fixtures.goodFiles)
    func unchangedWriteKeepsEveryObjectAndAttribute(name: String) throws {
        let scratch = try ScratchFolder()
        let checkpoint = try Fixtures.open(name)
        let before = sha(Fixtures.path(name))
        let output = scratch.path(name)
        try checkpoint.write(to: output)
        #expect(sha(Fixtures.path(name)) == before, "the input must not change")
        let reread = try Checkpoint.open(output, config: try Fixtures.architecture(for: name))
        #expect(reread.layout == checkpoint.layout)
        for (a, b) in zip(checkpoint.weights, reread.weights) {
            #expect(a.datasetPath == b.datasetPath)
            #expect(try checkpoint.read(a).map(\.bitPattern) == reread.read(b).map(\.bitPattern))
        }
        if checkpoint.layout == .kerasArchive {
            #expect(try dump(checkpoint.archive!.weightsFilePath) == dump(reread.archive!.weightsFilePath))
            for entry in ["config.json", "metadata.json"] {
                #expect(try checkpoint.archive!.text(entry) == reread.archive!.text(entry))
            }
        } else {
            #expect(try dump(Fixtures.path(name)) == dump(output))
        }
    }

    @Test(arguments: Fixtures.goodFiles)
    func editedWeightsAndMasksSurviveAReread(name: String) throws {
        let scratch = try ScratchFolder()
        let checkpoint = try Fixtures.open(name)
        let output = scratch.path(name)
        let edits = try zeroSmallKernels(checkpoint)
        try checkpoint.write(to: output, edits: edits)
        let reread = try Checkpoint.open(output, config: try Fixtures.architecture(for: name))
        for weight in reread.weights {
            let values = try reread.read(weight)
            if let edited = edits.weights[weight] {
                #expect(values.map(\.bitPattern) == edited.map(\.bitPattern))
                #expect(try reread.mask(for: weight) == edits.masks[weight]?.bits)
            } else {
                #expect(values.map(\.bitPattern) == (try checkpoint.read(weight)).map(\.bitPattern))
                #expect(try reread.mask(for: weight) == nil)
            }
        }
        #expect(try reread.maskProvenance()["rule"] == edits.maskAttributes["rule"])
        let statistics = try reread.statistics()
        #expect(statistics.hasMasks == !edits.masks.isEmpty)

        // Writing again over the masked file replaces the masks in place.
        var second = CheckpointEdits()
        for (weight, mask) in edits.masks { second.masks[weight] = Mask([UInt8](repeating: 0, count: mask.count)) }
        let output2 = scratch.path("again-" + name)
        try reread.write(to: output2, edits: second)
        let again = try Checkpoint.open(output2, config: try Fixtures.architecture(for: name))
        for weight in again.weights where second.masks[weight] != nil {
            #expect(try again.mask(for: weight)?.allSatisfy { $0 == 0 } == true)
        }

        if let folder = ProcessInfo.processInfo.environment["GMTOOL_INTEROP_OUT"] {
            // For Tests/interop: Keras must load what gmtool wrote.
            let destination = URL(fileURLWithPath: folder).appendingPathComponent("roundtrip")
            try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
            try checkpoint.write(to: destination.appendingPathComponent(name).path, edits: edits)
        }
    }

    @Test func failedWriteLeavesNothingBehind() throws {
        let scratch = try ScratchFolder()
        let checkpoint = try Fixtures.open("seqcnn_k2.h5")
        #expect(throws: CheckpointError.self) { try checkpoint.write(to: scratch.path("no/such/folder/out.h5")) }
        // A weights edit of the wrong element type is caught by HDF5 after the copy was made:
        // simulate a failure in the middle by removing write permission on the folder.
        let locked = scratch.url.appendingPathComponent("locked")
        try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.posixPermissions: 0o500], ofItemAtPath: locked.path)
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o700], ofItemAtPath: locked.path) }
        if getuid() != 0 {  // root ignores permissions
            #expect(throws: CheckpointError.self) { try checkpoint.write(to: locked.appendingPathComponent("out.h5").path) }
        }
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.url.path).sorted() == ["locked"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: locked.path).isEmpty)
    }
}

/// The interop edit (Tests/interop repeats it in NumPy): every prunable kernel entry with
/// |w| < 0.05 becomes 0, with a mask bit 0.
func zeroSmallKernels(_ checkpoint: Checkpoint) throws -> CheckpointEdits {
    var edits = CheckpointEdits()
    edits.maskAttributes["rule"] = "abs(w) < 0.05"
    for weight in checkpoint.weights where weight.prunable {
        var values = try checkpoint.read(weight)
        var mask = [UInt8](repeating: 1, count: values.count)
        for index in values.indices where abs(values[index]) < Float(0.05) {
            values[index] = 0
            mask[index] = 0
        }
        edits.weights[weight] = values
        edits.masks[weight] = Mask(mask)
    }
    return edits
}

/// Keras 2's TFOpLambda calls as tf_keras 2.21 writes them (`to_json()` of `t + 3.0`,
/// `1.0 - t`, `t * t`): the tensors read become the inbound node, the first argument and `y`
/// the call arguments, a constant first argument (`_CONSTANT_VALUE`) a number in its place.
@Suite struct TFOpLambdaParsingTests {
    @Test func argumentsAndInputs() throws {
        let json = #"""
        {"class_name": "Functional", "config": {"name": "m", "layers": [
          {"class_name": "InputLayer", "config": {"batch_input_shape": [null, 4, 4, 3], "name": "input_1"}, "name": "input_1", "inbound_nodes": []},
          {"module": "tf_keras.src.layers.core.tf_op_layer", "class_name": "TFOpLambda", "config": {"name": "tf.__operators__.add", "function": "__operators__.add"}, "name": "tf.__operators__.add", "inbound_nodes": [["input_1", 0, 0, {"y": 3.0, "name": null}]]},
          {"module": "tf_keras.src.layers.core.tf_op_layer", "class_name": "TFOpLambda", "config": {"name": "tf.math.subtract", "function": "math.subtract"}, "name": "tf.math.subtract", "inbound_nodes": [["_CONSTANT_VALUE", -1, 1.0, {"y": ["tf.__operators__.add", 0, 0], "name": null}]]},
          {"module": "tf_keras.src.layers.core.tf_op_layer", "class_name": "TFOpLambda", "config": {"name": "tf.math.multiply", "function": "math.multiply"}, "name": "tf.math.multiply", "inbound_nodes": [["tf.math.subtract", 0, 0, {"y": ["input_1", 0, 0], "name": null}]]}],
          "input_layers": [["input_1", 0, 0]], "output_layers": [["tf.math.multiply", 0, 0]]}}
        """#
        let layers = try ModelConfig(json: json, source: "test").layers
        let (add, subtract, multiply) = (layers[1], layers[2], layers[3])
        #expect(layers.dropFirst().allSatisfy(\.isOperation) && !layers[0].isOperation)
        #expect(add.inboundNodes == [[TensorReference(layer: "input_1", node: 0, tensor: 0)]])
        #expect(add.callArguments == [.array([.string("input_1"), .number(0), .number(0)]), .number(3)])
        #expect(subtract.inboundNodes == [[TensorReference(layer: "tf.__operators__.add", node: 0, tensor: 0)]])
        #expect(subtract.callArguments == [.number(1), .array([.string("tf.__operators__.add"), .number(0), .number(0)])])
        #expect(multiply.inboundNodes == [[TensorReference(layer: "tf.math.subtract", node: 0, tensor: 0),
                                           TensorReference(layer: "input_1", node: 0, tensor: 0)]])
        #expect(multiply.callArguments.allSatisfy { $0.double == nil })
    }
}
