import Foundation
import HDF5

/// How a checkpoint file is laid out (see docs/ARCHITECTURE.md and ../shared/docs/FORMATS.md).
public enum CheckpointLayout: String, Sendable, Codable {
    /// `model.save("m.h5")`, Keras 2 or Keras 3's legacy writer: root `model_config`,
    /// weights under `/model_weights/<layer>/<weight name>`.
    case legacyFull = "h5_full_model"
    /// `model.save_weights("w.h5")` (Keras 2): root `layer_names`, one group per layer.
    case legacyWeights = "h5_weights"
    /// Keras 3 `model.save_weights("w.weights.h5")`: `/layers/<snake_case>[_n]/vars/<i>`.
    case kerasWeights = "keras3_weights_h5"
    /// Keras 3 `.keras` zip: `config.json` + `model.weights.h5` in the layout above.
    case kerasArchive = "keras3_archive"
    /// gmtool's sparse export (`gmtool export`): CSR or bitmask kernels plus the model config.
    case sparseExport = "gmtool_sparse"
}

/// One weight tensor of the model and where it lives in the file.
public struct CheckpointWeight: Sendable, Hashable {
    public var layerName: String
    /// The layer's Keras class, or nil when the file carries no config to say.
    public var layerClass: String?
    public var role: WeightRole
    /// The weight's name as the file records it (`conv1/kernel:0`, `kernel`, `vars/0`).
    public var name: String
    /// Absolute path of the dataset inside the HDF5 file.
    public var datasetPath: String
    public var shape: [Int]
    public var trainable: Bool
    /// What pruning applies to: a role the layer catalog lists as prunable for the layer's class
    /// (the kernels of convolutions, depthwise/separable convolutions and Dense).
    public var prunable: Bool

    public var elementCount: Int { shape.reduce(1, *) }

    public static func == (a: Self, b: Self) -> Bool { a.datasetPath == b.datasetPath }
    public func hash(into hasher: inout Hasher) { hasher.combine(datasetPath) }
}

/// A layer of the checkpoint, in model order, with the weights the file holds for it.
public struct CheckpointLayer: Sendable {
    public var name: String
    public var className: String?
    public var weights: [CheckpointWeight]
}

/// The group where gmtool keeps pruning masks. Keras ignores top-level groups it does not know.
public let maskGroupName = "gmtool_masks"

/// A Keras checkpoint opened for reading. Never modifies the file it was opened from.
public final class Checkpoint {
    /// The path the user gave.
    public let path: String
    public let layout: CheckpointLayout
    public let kerasVersion: String?
    public let backend: String?
    /// The architecture: from the file, or from `--config` for weights-only files.
    public let modelConfig: ModelConfig?
    /// Layers in model order; for weights-only files without a config, in file order.
    public let layers: [CheckpointLayer]
    /// The HDF5 file holding the weights (for an archive, the extracted `model.weights.h5`).
    let file: HDF5File
    /// For archives: the zip entries, kept to write the archive back.
    let archive: KerasArchive?
    /// For sparse exports: where each weight (by its original dataset path) lives in this file.
    let sparseMembers: [String: String]
    /// The layer classes the file was read with.
    public let catalog: any LayerCatalog

    public var weights: [CheckpointWeight] { layers.flatMap(\.weights) }

    /// The layers of the model config whose class `catalog` does not know, as "name (Class)":
    /// their weights are counted as stored, none is prunable, and the engine refuses the model.
    public var unknownLayers: [String] {
        (modelConfig?.allLayers ?? []).map(\.layer)
            .filter { $0.nestedModel == nil && !$0.isOperation && catalog.weightSpecs(for: $0) == nil }
            .map { "\($0.name) (\($0.className))" }
    }

    /// Opens and checks a checkpoint. `config` supplies the architecture for weights-only files
    /// (it overrides nothing in files that carry their own). `layers` says what each layer class
    /// stores and which of its weights are prunable; gmtool's is the engine's
    /// `LayerRegistry.standard`, which `Checkpoint.open(_:config:)` in the Engine module passes.
    public static func open(_ path: String, config: ModelConfig? = nil, layers: any LayerCatalog) throws -> Checkpoint {
        try Checkpoint(path: path, config: config, catalog: layers)
    }

    private init(path: String, config externalConfig: ModelConfig?, catalog: any LayerCatalog) throws {
        self.path = path
        self.catalog = catalog
        try checkInputFile(path, kind: "checkpoint file")

        if KerasArchive.looksLikeZip(path) {
            let archive = try KerasArchive(path: path)
            self.archive = archive
            file = try Self.openHDF5(archive.weightsFilePath, reportedAs: "\(path)!model.weights.h5")
            let configText = try archive.text("config.json")
            let config = try ModelConfig(json: configText, source: "\(path)!config.json")
            modelConfig = config
            layout = .kerasArchive
            kerasVersion = archive.metadata?["keras_version"]?.string
            backend = nil
            layers = try Self.kerasWeightsLayers(file: file, config: config, catalog: catalog, source: path)
            sparseMembers = [:]
            return
        }

        archive = nil
        file = try Self.openHDF5(path, reportedAs: path)
        let root = file.root
        if try root.hasAttribute("gmtool_format") {
            guard (try? Self.readString(root, "gmtool_format", path)) == sparseFormatName else {
                throw CheckpointError(file: path, problem: "has an unknown gmtool_format")
            }
            let config = try ModelConfig(json: try Self.readString(root, "model_config", path), source: path)
            modelConfig = config
            layout = .sparseExport
            kerasVersion = try Self.readOptionalString(root, "keras_version", path)
            backend = try Self.readOptionalString(root, "backend", path)
            (layers, sparseMembers) = try Self.sparseLayers(root, config: config, catalog: catalog, source: path)
            return
        }
        sparseMembers = [:]
        if try root.hasAttribute("model_config") {
            guard root.kind(of: "model_weights") == .group else {
                throw CheckpointError(file: path, object: "/model_weights", problem: "missing (a full-model file needs it)")
            }
            let text = try Self.readString(root, "model_config", path)
            let config = try ModelConfig(json: text, source: path)
            modelConfig = config
            layout = .legacyFull
            let weightsRoot = try root.group("model_weights")
            kerasVersion = try Self.readOptionalString(try weightsRoot.hasAttribute("keras_version") ? weightsRoot : root, "keras_version", path)
            backend = try Self.readOptionalString(root, "backend", path)
            layers = try Self.legacyLayers(weightsRoot, config: config, catalog: catalog, source: path)
        } else if try root.hasAttribute("layer_names") || root.hasAttribute("layer_names0") {
            modelConfig = externalConfig
            layout = .legacyWeights
            kerasVersion = try Self.readOptionalString(root, "keras_version", path)
            backend = try Self.readOptionalString(root, "backend", path)
            layers = try Self.legacyLayers(root, config: externalConfig, catalog: catalog, source: path)
        } else if root.kind(of: "layers") == .group || root.kind(of: "vars") == .group {
            guard let config = externalConfig else {
                throw CheckpointError(file: path, problem: "is a Keras 3 weights file: it stores no layer names, so pass the architecture with --config model.json")
            }
            modelConfig = config
            layout = .kerasWeights
            kerasVersion = nil
            backend = nil
            layers = try Self.kerasWeightsLayers(file: file, config: config, catalog: catalog, source: path)
        } else {
            throw CheckpointError(file: path, problem: "is an HDF5 file but not a Keras checkpoint (no model_config, layer_names or layers/ group)")
        }
    }

    /// Opens an HDF5 file of the user's, saying in one line why it cannot be.
    static func openHDF5(_ path: String, reportedAs name: String) throws -> HDF5File {
        do { return try HDF5File.open(path) } catch let error as HDF5Error {
            let problem = error.detail == "not an HDF5 file"
                ? "is not an HDF5 file (or is truncated)"
                : "cannot be opened as HDF5 (\(error.detail.isEmpty ? "unknown error" : error.detail)); the file may be truncated"
            throw CheckpointError(file: name, problem: problem)
        }
    }

    static func readString(_ object: HDF5Object, _ name: String, _ source: String) throws -> String {
        do { return try object.attribute(name).readString() } catch let error as HDF5Error {
            throw CheckpointError(file: source, object: "\(object.path) attribute \(name)", problem: error.detail.isEmpty ? "unreadable" : error.detail)
        }
    }

    /// An optional string attribute: nil when absent, an error when present but unreadable.
    static func readOptionalString(_ object: HDF5Object, _ name: String, _ source: String) throws -> String? {
        try object.hasAttribute(name) ? try readString(object, name, source) : nil
    }

    /// Reads a list-of-strings attribute that Keras may have split into `name0`, `name1`, ...
    /// because HDF5 object headers hold at most 64 KB.
    static func readStringList(_ object: HDF5Object, _ name: String, _ source: String) throws -> [String]? {
        do {
            if try object.hasAttribute(name) { return try object.attribute(name).readStrings() }
            guard try object.hasAttribute("\(name)0") else { return nil }
            var all: [String] = []
            var index = 0
            while try object.hasAttribute("\(name)\(index)") {
                all += try object.attribute("\(name)\(index)").readStrings()
                index += 1
            }
            return all
        } catch let error as HDF5Error {
            throw CheckpointError(file: source, object: "\(object.path) attribute \(name)", problem: error.detail)
        }
    }

    // MARK: Legacy .h5 (Keras 2 and Keras 3's legacy writer)

    private static func legacyLayers(_ weightsRoot: HDF5Group, config: ModelConfig?, catalog: any LayerCatalog, source: String) throws -> [CheckpointLayer] {
        guard let names = try readStringList(weightsRoot, "layer_names", source) else {
            throw CheckpointError(file: source, object: "\(weightsRoot.path) attribute layer_names", problem: "missing")
        }
        let configByName = Dictionary((config?.layers ?? []).map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var result: [CheckpointLayer] = []
        for layerName in names {
            guard weightsRoot.kind(of: layerName) == .group else {
                throw CheckpointError(file: source, object: weightsRoot.path == "/" ? "/\(layerName)" : "\(weightsRoot.path)/\(layerName)",
                                      problem: "layer_names lists layer '\(layerName)' but the file has no group for it")
            }
            let group = try weightsRoot.group(layerName)
            let weightNames = try readStringList(group, "weight_names", source) ?? []
            let layerConfig = configByName[layerName]
            if config != nil && layerConfig == nil && !weightNames.isEmpty {
                throw CheckpointError(file: source, object: group.path, problem: "layer '\(layerName)' has weights but is not in model_config")
            }
            var weights: [CheckpointWeight] = []
            for (position, weightName) in weightNames.enumerated() {
                guard group.kind(of: weightName) == .dataset else {
                    throw CheckpointError(file: source, object: "\(group.path)/\(weightName)",
                                          problem: "weight_names lists '\(weightName)' but no such dataset exists")
                }
                let dataset = try group.dataset(weightName)
                var owner = layerConfig
                var ownerPosition = position
                var ownerCount = weightNames.count
                var ownerTrainable = layerConfig?.trainable ?? true
                if let nested = layerConfig?.nestedModel {
                    // A model used as a layer (at any depth): its weights are stored in its
                    // group, their names starting with the innermost layer's name.
                    let innerName = String(weightName.split(separator: "/").first ?? "")
                    let inner = nested.allLayers.first { $0.layer.name == innerName }
                    owner = inner?.layer
                    ownerTrainable = ownerTrainable && (inner?.modelTrainable ?? true)
                    let siblings = weightNames.filter { $0.hasPrefix(innerName + "/") }
                    ownerPosition = siblings.firstIndex(of: weightName) ?? 0
                    ownerCount = siblings.count
                }
                weights.append(try describeWeight(
                    dataset: dataset, name: weightName, layerName: owner?.name ?? layerName, layer: owner,
                    position: ownerPosition, count: ownerCount, modelTrainable: ownerTrainable, catalog: catalog, source: source))
            }
            result.append(CheckpointLayer(name: layerName, className: layerConfig?.className, weights: weights))
        }
        if let config {
            let stored = Set(names)
            for layer in config.layers where !stored.contains(layer.name) {
                let specs = catalog.weightSpecs(for: layer)
                if let specs, specs.isEmpty { continue }
                if layer.nestedModel == nil, specs == nil { continue }
                throw CheckpointError(file: source, object: "layer \(layer.name)",
                                      problem: "model_config has a \(layer.className) layer with weights that the file does not store")
            }
        }
        return result
    }

    /// Checks one stored weight against what its layer's config says and describes it.
    private static func describeWeight(
        dataset: HDF5Dataset, name: String, layerName: String, layer: LayerConfig?, position: Int, count: Int,
        modelTrainable: Bool, catalog: any LayerCatalog, source: String
    ) throws -> CheckpointWeight {
        let elementType = dataset.elementType
        let shape = dataset.shape
        try checkFitsInMemory(dataset.elementCount, source: source, object: dataset.path)
        var role = WeightRole(fileName: name)
        if let layer, let specs = catalog.weightSpecs(for: layer) {
            guard specs.count == count else {
                throw CheckpointError(file: source, object: dataset.path,
                                      problem: "layer \(layer.name) (\(layer.className)) stores \(count) weights, its config implies \(specs.count)")
            }
            let spec = specs[position]
            // Keras 3 renames the depthwise weight to "kernel"; the position in the layer decides.
            role = spec.role
            // A spec without a shape (any rank) is checked when the graph is built.
            if let specShape = spec.shape,
               specShape.count != shape.count || zip(specShape, shape).contains(where: { $0 != nil && $0 != $1 }) {
                let expected = "(" + specShape.map { $0.map(String.init) ?? "?" }.joined(separator: ", ") + ")"
                throw CheckpointError(file: source, object: dataset.path,
                                      problem: "shape \(shapeText(shape)) disagrees with the config of \(layer.className) layer \(layer.name), which implies \(expected)")
            }
        }
        guard elementType.isFloat || (role.mayBeInteger && elementType.isInteger) else {
            throw CheckpointError(file: source, object: dataset.path, problem: "weights must be floating point, found \(elementType)")
        }
        let prunable = layer.map { catalog.prunableRoles(className: $0.className).contains(role) } ?? false
        return CheckpointWeight(
            layerName: layerName, layerClass: layer?.className, role: role, name: name, datasetPath: dataset.path,
            shape: shape, trainable: role.isTrainable && (layer?.trainable ?? true) && modelTrainable, prunable: prunable)
    }

    /// Refuses a weight whose declared size is more than this machine's memory, when the file is
    /// opened: every command holds each weight it touches in memory, and sizes derived from the
    /// weight (gradients, masks, optimizer slots) are allocated from the declared shape, some
    /// before anything is read.
    static func checkFitsInMemory(_ count: Int, source: String, object: String) throws {
        if let problem = MachineMemory.problem(count: count, elementSize: MemoryLayout<Float>.size, noun: "float32 values") {
            throw CheckpointError(file: source, object: object, problem: problem)
        }
    }

    // MARK: Keras 3 .weights.h5 / .keras

    /// Keras 3 names each layer's group after its class in snake case, numbered per name in
    /// model order (`conv2d`, `conv2d_1`, ...), and stores its variables as `vars/0`, `vars/1`.
    private static func kerasWeightsLayers(file: HDF5File, config: ModelConfig, catalog: any LayerCatalog,
                                           source: String) throws -> [CheckpointLayer] {
        try kerasWeightsLayers(file: file, config: config, catalog: catalog, prefix: "", modelTrainable: true, source: source)
    }

    /// The layers of `config` under `prefix`: a model used as a layer keeps its own layers in
    /// `<its group>/layers/...`, numbered per class within it.
    private static func kerasWeightsLayers(file: HDF5File, config: ModelConfig, catalog: any LayerCatalog, prefix: String,
                                           modelTrainable: Bool, source: String) throws -> [CheckpointLayer] {
        let root = file.root
        var counters: [String: Int] = [:]
        var result: [CheckpointLayer] = []
        for layer in config.layers {
            let base = snakeCase(layer.className)
            if layer.className == "InputLayer" { continue }
            let index = counters[base, default: 0]
            counters[base] = index + 1
            let groupPath = prefix + "layers/" + (index == 0 ? base : "\(base)_\(index)")
            if let nested = layer.nestedModel {
                result += try kerasWeightsLayers(file: file, config: nested, catalog: catalog, prefix: groupPath + "/",
                                                 modelTrainable: modelTrainable && layer.trainable, source: source)
                continue
            }
            guard let specs = catalog.weightSpecs(for: layer) else {
                // Unknown class: take whatever variables it stored, roles unknown.
                let stored = root.kind(of: groupPath + "/vars") == .group ? try root.group(groupPath + "/vars").childNames() : []
                let weights = try stored.sorted { (Int($0) ?? 0) < (Int($1) ?? 0) }.map { name in
                    try describeWeight(dataset: root.dataset("\(groupPath)/vars/\(name)"), name: "vars/\(name)",
                                       layerName: layer.name, layer: nil, position: 0, count: 1,
                                       modelTrainable: modelTrainable && layer.trainable, catalog: catalog, source: source)
                }
                result.append(CheckpointLayer(name: layer.name, className: layer.className, weights: weights))
                continue
            }
            var weights: [CheckpointWeight] = []
            for position in specs.indices {
                let path = "\(groupPath)/vars/\(position)"
                guard root.kind(of: path) == .dataset else {
                    throw CheckpointError(file: source, object: "/" + path,
                                          problem: "missing: \(layer.className) layer \(layer.name) needs \(specs.count) weights")
                }
                weights.append(try describeWeight(
                    dataset: root.dataset(path), name: "vars/\(position)", layerName: layer.name, layer: layer,
                    position: position, count: specs.count, modelTrainable: modelTrainable, catalog: catalog, source: source))
            }
            result.append(CheckpointLayer(name: layer.name, className: layer.className, weights: weights))
        }
        return result
    }

    /// Keras' `to_snake_case`: "DepthwiseConv2D" -> "depthwise_conv2d", "ReLU" -> "re_lu".
    static func snakeCase(_ name: String) -> String {
        // Python: strip \W; re.sub("(.)([A-Z][a-z]+)", r"\1_\2"); re.sub("([a-z])([A-Z])", r"\1_\2"); lower().
        let chars = Array(name.filter { $0.isLetter || $0.isNumber || $0 == "_" })
        var first: [Character] = []
        for (i, c) in chars.enumerated() {
            if i > 0, c.isUppercase, i + 1 < chars.count, chars[i + 1].isLowercase { first.append("_") }
            first.append(c)
        }
        var second: [Character] = []
        for (i, c) in first.enumerated() {
            if i > 0, c.isUppercase, first[i - 1].isLowercase { second.append("_") }
            second.append(c)
        }
        return String(second).lowercased()
    }

    // MARK: Reading weights and masks

    /// Reads a weight as float32 (libhdf5 converts from the stored precision).
    public func read(_ weight: CheckpointWeight) throws -> [Float] {
        guard layout == .sparseExport else { return try readValues(try openDataset(weight.datasetPath), as: Float.self) }
        switch try sparseMember(weight) {
        case .dense(let values): return values
        case .kernel(let matrix, let shape, _): return shape.dense(matrix)
        }
    }

    /// Where the mask of `weight` lives.
    public static func maskPath(for weight: CheckpointWeight) -> String { "/\(maskGroupName)\(weight.datasetPath)" }

    /// The pruning mask gmtool stored for `weight` (1 keep, 0 pruned), or nil when there is none.
    public func mask(for weight: CheckpointWeight) throws -> [UInt8]? {
        if layout == .sparseExport {
            guard case .kernel(let matrix, let shape, structureIsMask: true) = try sparseMember(weight) else { return nil }
            return shape.structure(matrix)
        }
        let maskPath = Self.maskPath(for: weight)
        guard file.root.kind(of: maskPath) == .dataset else { return nil }
        let dataset = try openDataset(maskPath)
        guard dataset.shape == weight.shape else {
            throw CheckpointError(file: path, object: maskPath, problem: "mask shape \(shapeText(dataset.shape)) differs from the weight's \(shapeText(weight.shape))")
        }
        return try readValues(dataset, as: UInt8.self)
    }

    /// The string attributes of `weight`'s mask dataset (the pruning step's beta, gamma and counts
    /// for this kernel), empty when it has none.
    public func maskAttributes(for weight: CheckpointWeight) throws -> [String: String] {
        let maskPath = Self.maskPath(for: weight)
        guard layout != .sparseExport, file.root.kind(of: maskPath) == .dataset else { return [:] }
        let dataset = try file.root.dataset(maskPath)
        var result: [String: String] = [:]
        for name in try dataset.attributeNames { result[name] = try Self.readString(dataset, name, path) }
        return result
    }

    /// A float32 dataset of gmtool's own (see `CheckpointEdits.extraDatasets`), or nil.
    public func extraDataset(_ path: String) throws -> [Float]? {
        guard file.root.kind(of: path) == .dataset else { return nil }
        return try readValues(try openDataset(path), as: Float.self)
    }

    /// Whether the file has one of gmtool's own groups (e.g. `/gmtool_training`).
    public func hasExtraGroup(_ group: String) -> Bool { file.root.kind(of: group) == .group }

    /// A string attribute of one of gmtool's own groups, or nil when the group or the attribute is
    /// absent; one that is there but unreadable is an error, never nil.
    public func extraAttribute(group: String, _ name: String) throws -> String? {
        guard hasExtraGroup(group) else { return nil }
        let object = try file.root.group(group)
        guard try object.hasAttribute(name) else { return nil }
        return try Self.readString(object, name, path)
    }

    /// Opens a dataset of this checkpoint's HDF5 file; a failure is one error naming it.
    func openDataset(_ datasetPath: String) throws -> HDF5Dataset {
        do { return try file.root.dataset(datasetPath) } catch let error as HDF5Error {
            throw CheckpointError(file: path, object: datasetPath, problem: "cannot be opened (\(error.detail))")
        }
    }

    /// Reads every value of `dataset`. Every read of the checkpoint's data goes through here, so
    /// a failure, including a declared size the file or this machine cannot back (which the
    /// HDF5 layer refuses before allocating), is one error naming the dataset.
    func readValues<T: HDF5Scalar>(_ dataset: HDF5Dataset, as: T.Type) throws -> [T] {
        do { return try dataset.read(as: T.self) } catch let error as HDF5Error {
            throw CheckpointError(file: path, object: dataset.path, problem: "cannot be read (\(error.detail))")
        }
    }

    /// Attributes stored on the mask group (how the masks were made), as text.
    public func maskProvenance() throws -> [String: String] {
        guard file.root.kind(of: maskGroupName) == .group else { return [:] }
        let group = try file.root.group(maskGroupName)
        var result: [String: String] = [:]
        for name in try group.attributeNames {
            let attribute = try group.attribute(name)
            if case .string = attribute.elementType { result[name] = try attribute.readString() }
            else { result[name] = try attribute.read(as: Double.self).map { String($0) }.joined(separator: ",") }
        }
        return result
    }

}

/// The checks every input file gets before libhdf5 or the zip reader sees it, so a missing,
/// unreadable or empty file is named as such rather than as "not an HDF5 file". `kind` names
/// what the file should be ("checkpoint file").
func checkInputFile(_ path: String, kind: String) throws {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        throw CheckpointError(file: path, problem: "no such file")
    }
    guard !isDirectory.boolValue else { throw CheckpointError(file: path, problem: "is a directory, not a \(kind)") }
    guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
          let size = attributes[.size] as? Int else {
        throw CheckpointError(file: path, problem: "cannot be read")
    }
    guard size > 0 else { throw CheckpointError(file: path, problem: "is empty") }
    guard FileManager.default.isReadableFile(atPath: path) else {
        throw CheckpointError(file: path, problem: "permission denied")
    }
}

/// The size in bytes of the file at `path`, through symbolic links (the target's size, not the
/// link's), or nil when it cannot be read.
public func fileSize(atPath path: String) -> Int? {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    return Int(info.st_size)
}

func shapeText(_ shape: [Int]) -> String {
    "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
}
