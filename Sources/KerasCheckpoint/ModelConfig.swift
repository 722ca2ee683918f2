import Foundation
import HDF5

/// A reference to one output tensor of a layer: `(layer, node, tensor)` as Keras writes it.
public struct TensorReference: Sendable, Equatable {
    public var layer: String
    public var node: Int
    public var tensor: Int
}

/// One layer of a Keras model config: its class, its name, its own config dictionary (kept
/// whole), and for Functional models the tensors it is called on.
public struct LayerConfig: Sendable {
    public var name: String
    public var className: String
    /// The layer's `config` dictionary exactly as Keras wrote it.
    public var config: JSONValue
    /// Inputs of each call of the layer (Functional models); empty for Sequential and inputs.
    public var inboundNodes: [[TensorReference]]
    /// A nested model (a Functional or Sequential used as a layer), parsed.
    public var nestedModel: ModelConfig? = nil
    /// Keras 3's `registered_name` ("Custom>MyLayer" for a registered custom class), when written.
    public var registeredName: String? = nil
    /// Keras 3's `module`: `keras.layers` for a layer, `keras.src.ops.numpy` and the like for an
    /// operation applied to tensors in a Functional model (`x + 3.0` is an `Add` operation).
    public var module: String? = nil
    /// The arguments of the layer's single call (tensors and constants), when written: Keras 3's
    /// positional `args`; for Keras 2's TFOpLambda, its first argument (a tensor reference, or
    /// the constant Keras 2 writes as `_CONSTANT_VALUE`) and its `y` keyword.
    public var callArguments: [JSONValue] = []

    /// A Keras 3 operation (keras.ops) or a Keras 2 TensorFlow operation (TFOpLambda) recorded
    /// in a Functional model, rather than a layer.
    public var isOperation: Bool {
        module?.hasPrefix("keras.src.ops") == true || module?.hasPrefix("keras.ops") == true || className == "TFOpLambda"
    }

    /// `trainable` from the config (Keras' default is true).
    public var trainable: Bool { config["trainable"]?.bool ?? true }
}

/// A Keras `model_config` (`model.to_json()`): Sequential or Functional, Keras 2 or 3.
public struct ModelConfig: Sendable {
    public enum Kind: String, Sendable { case sequential = "Sequential", functional = "Functional" }

    public var kind: Kind
    public var name: String
    /// Layers in `model.layers` order (for Keras 2 Sequential, an InputLayer entry is kept).
    public var layers: [LayerConfig]
    public var inputs: [TensorReference]
    public var outputs: [TensorReference]
    /// Every layer, those of nested models included (depth first, in model order), each with
    /// whether all the models around it are trainable.
    public var allLayers: [(layer: LayerConfig, modelTrainable: Bool)] {
        layers.flatMap { layer -> [(layer: LayerConfig, modelTrainable: Bool)] in
            guard let nested = layer.nestedModel else { return [(layer, true)] }
            return [(layer, true)] + nested.allLayers.map { ($0.layer, $0.modelTrainable && layer.trainable) }
        }
    }

    /// Declared input shape without the batch axis, when the config records one.
    public var inputShape: [Int?]?
    /// The JSON document this config was parsed from (written back verbatim by exports).
    public var json: String = ""

    /// Parses a `model_config` JSON document. `source` names the file for error messages.
    public init(json text: String, source: String) throws {
        let root: JSONValue
        do { root = try JSONValue.parse(text) } catch let error as JSONValue.TooDeep {
            throw CheckpointError(file: source, object: "model_config", problem: "is nested deeper than \(error.limit) levels, gmtool's limit")
        } catch {
            throw CheckpointError(file: source, object: "model_config", problem: "is not valid JSON")
        }
        try self.init(root, source: source)
        json = text
    }

    /// Reads an architecture file: a `model.to_json()` document, or a `.keras` archive's
    /// `config.json`.
    public init(contentsOf path: String) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw CheckpointError(file: path, problem: "no such architecture file")
        }
        if KerasArchive.looksLikeZip(path) {
            try self.init(json: try KerasArchive(path: path, extractWeights: false).text("config.json"), source: "\(path)!config.json")
        } else {
            let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
            guard size <= KerasArchive.jsonLimit else {
                throw CheckpointError(file: path, problem: "is \(describeBytes(size)), over gmtool's \(describeBytes(KerasArchive.jsonLimit)) limit for a model config")
            }
            guard let data = FileManager.default.contents(atPath: path) else {
                throw CheckpointError(file: path, problem: "cannot be read")
            }
            try self.init(json: String(decoding: data, as: UTF8.self), source: path)
        }
    }

    init(_ root: JSONValue, source: String) throws {
        guard let className = root["class_name"]?.string, let config = root["config"] else {
            throw CheckpointError(file: source, object: "model_config", problem: "has no class_name/config")
        }
        func fail(_ problem: String) -> CheckpointError {
            CheckpointError(file: source, object: "model_config", problem: problem)
        }
        guard let layerList = config["layers"]?.array else {
            throw fail("class \(className) has no layer list (only Sequential and Functional models are supported)")
        }
        name = config["name"]?.string ?? "model"
        switch className {
        case "Sequential": kind = .sequential
        case "Functional", "Model": kind = .functional
        default: throw fail("model class \(className) is not Sequential or Functional")
        }
        var parsed: [LayerConfig] = []
        for entry in layerList {
            guard let layerClass = entry["class_name"]?.string, let layerConfig = entry["config"] else {
                throw fail("a layer entry has no class_name/config")
            }
            guard let layerName = entry["name"]?.string ?? layerConfig["name"]?.string else {
                throw fail("a \(layerClass) layer has no name")
            }
            var nested: ModelConfig?
            if ["Sequential", "Functional", "Model"].contains(layerClass) {
                nested = try ModelConfig(entry, source: source)
            }
            let nodes = entry["inbound_nodes"]?.array ?? []
            var inbound = try nodes.map { try Self.parseNode($0, source: source) }
            var arguments = nodes.first?["args"]?.array ?? []
            // tf_keras writes a TFOpLambda's node as the call itself, `[first, node, tensor, kwargs]`.
            if layerClass == "TFOpLambda", let call = nodes.first?.array, call.first?.string != nil {
                (inbound, arguments) = ([Self.operationInputs(call)], Self.operationArguments(call))
            }
            parsed.append(LayerConfig(name: layerName, className: layerClass, config: layerConfig,
                                      inboundNodes: nodes.isEmpty ? [] : inbound, nestedModel: nested,
                                      registeredName: entry["registered_name"]?.string, module: entry["module"]?.string,
                                      callArguments: arguments))
        }
        layers = parsed
        inputs = Self.parseReferences(config["input_layers"])
        outputs = Self.parseReferences(config["output_layers"])
        inputShape = Self.declaredInputShape(config: config, layers: parsed)
        if kind == .functional && (inputs.isEmpty || outputs.isEmpty) {
            throw fail("Functional model has no input_layers/output_layers")
        }
    }

    /// `[["name", 0, 0], ...]` or a single `["name", 0, 0]` (Keras 3 writes the flat form for
    /// one tensor).
    private static func parseReferences(_ value: JSONValue?) -> [TensorReference] {
        guard let items = value?.array, !items.isEmpty else { return [] }
        if items.first?.string != nil { return reference(items).map { [$0] } ?? [] }
        return items.compactMap { $0.array.flatMap(reference) }
    }

    private static func reference(_ triple: [JSONValue]) -> TensorReference? {
        guard triple.count >= 3, let layer = triple[0].string, let node = triple[1].int, let tensor = triple[2].int
        else { return nil }
        return TensorReference(layer: layer, node: node, tensor: tensor)
    }

    /// One inbound node. Keras 2: `[["a", 0, 0, {}], ["b", 0, 0, {}]]`. Keras 3:
    /// `{"args": [tensor or [tensors]], "kwargs": {...}}` where a tensor is
    /// `{"class_name": "__keras_tensor__", "config": {"keras_history": ["a", 0, 0]}}`.
    private static func parseNode(_ node: JSONValue, source: String) throws -> [TensorReference] {
        if let list = node.array {
            return list.compactMap { $0.array.flatMap(reference) }
        }
        var found: [TensorReference] = []
        func collect(_ value: JSONValue) {
            if value["class_name"]?.string == "__keras_tensor__",
               let history = value["config"]?["keras_history"]?.array, let ref = reference(history) {
                found.append(ref)
            } else if let items = value.array {
                items.forEach(collect)
            }
        }
        (node["args"]?.array ?? []).forEach(collect)
        return found
    }

    /// A Keras 2 TFOpLambda call, `[first, node, tensor, kwargs]`: `first` names the layer whose
    /// output is the first argument, or is `_CONSTANT_VALUE` with the constant in place of the
    /// tensor index; a tensor in `kwargs["y"]` is `[layer, node, tensor]`. The tensors read.
    private static func operationInputs(_ call: [JSONValue]) -> [TensorReference] {
        let first = call.first?.string == "_CONSTANT_VALUE" ? nil : reference(call)
        let y = call.count > 3 ? call[3]["y"]?.array.flatMap(reference) : nil
        return [first, y].compactMap { $0 }
    }

    /// The TFOpLambda call's first argument and `y` as `callArguments`: a number for a constant,
    /// the reference's array for a tensor.
    private static func operationArguments(_ call: [JSONValue]) -> [JSONValue] {
        let first: JSONValue = call.first?.string == "_CONSTANT_VALUE" && call.count > 2 ? call[2] : .array(Array(call.prefix(3)))
        guard call.count > 3, let y = call[3]["y"] else { return [first] }
        return [first, y]
    }

    private static func declaredInputShape(config: JSONValue, layers: [LayerConfig]) -> [Int?]? {
        func shape(_ value: JSONValue?) -> [Int?]? {
            guard let items = value?.array, items.count >= 2 else { return nil }
            return items.dropFirst().map(\.int)
        }
        if let input = layers.first(where: { $0.className == "InputLayer" }) {
            return shape(input.config["batch_input_shape"]) ?? shape(input.config["batch_shape"])
        }
        if let first = layers.first {
            return shape(first.config["batch_input_shape"]) ?? shape(first.config["batch_shape"])
                ?? shape(config["build_input_shape"])
        }
        return nil
    }
}
