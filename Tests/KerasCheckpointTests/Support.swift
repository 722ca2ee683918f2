import Engine
import Foundation
import HDF5
@testable import KerasCheckpoint

enum Fixtures {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("fixtures")
    static func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// fixtures/expected.json, written by fixtures/make_fixtures.py with real Keras.
    static let expected: JSONValue = {
        let data = FileManager.default.contents(atPath: path("expected.json"))!
        return try! JSONValue.parse(String(decoding: data, as: UTF8.self))
    }()

    static var goodFiles: [String] { (expected["files"]?.object?.keys).map { $0.sorted() } ?? [] }

    /// Opens a good fixture, with the architecture file the generator names for weights-only files.
    static func open(_ name: String) throws -> Checkpoint {
        try Checkpoint.open(path(name), config: architecture(for: name))
    }

    static func architecture(for name: String) throws -> ModelConfig? {
        let source = expected["files"]?[name]?["architecture_source"]?.string ?? ""
        if source.hasSuffix(".json") { return try ModelConfig(contentsOf: path(source)) }
        if name.hasSuffix(".weights.h5") {
            // "<model>_k3.keras (config.json) or builder": the matching archive's config.
            return try ModelConfig(contentsOf: path(name.replacingOccurrences(of: ".weights.h5", with: ".keras")))
        }
        return nil
    }
}

/// A fresh temporary folder, removed when released.
final class ScratchFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

/// Everything in an HDF5 file: each object's path, kind, attributes (as text) and, for datasets,
/// type, shape and raw values as doubles. Two files with equal dumps hold the same content.
func dump(_ path: String) throws -> [String: String] {
    let file = try HDF5File.open(path)
    var out: [String: String] = [:]
    func attributes(_ object: HDF5Object) throws -> String {
        try object.attributeNames.sorted().map { name in
            let attribute = try object.attribute(name)
            switch attribute.elementType {
            case .string: return "\(name)=\(try attribute.readStrings())"
            case .float, .integer: return "\(name)=\(try attribute.read(as: Double.self))"
            default: return "\(name)=<\(attribute.elementType)>"
            }
        }.joined(separator: ";")
    }
    func visit(_ group: HDF5Group) throws {
        out[group.path] = "group " + (try attributes(group))
        for name in try group.childNames() {
            switch group.kind(of: name) {
            case .group: try visit(try group.group(name))
            case .dataset:
                let dataset = try group.dataset(name)
                let values = dataset.elementType.isFloat || { if case .integer = dataset.elementType { return true }; return false }()
                    ? "\(try dataset.read(as: Double.self).map(\.bitPattern))" : "<\(dataset.elementType)>"
                out[dataset.path] = "dataset \(dataset.elementType) \(dataset.shape) \(try attributes(dataset)) \(values)"
            default: out[group.path + "/" + name] = "other"
            }
        }
    }
    try visit(file.root)
    return out
}

func sha(_ path: String) -> Data { FileManager.default.contents(atPath: path) ?? Data() }
