import Foundation
import HDF5

/// A file of dC/dw written by `gmtool grad`: one float32 dataset per trainable weight, at the
/// same HDF5 path the weight has in its checkpoint, and root attributes saying how it was made
/// (`images`, `loss`, data, scaling, model). Any HDF5 reader can inspect it.
public enum GradientFile {
    /// Writes atomically. `attributes` values are strings or numbers.
    public static func write(to path: String, gradients: [(weight: CheckpointWeight, values: [Float])],
                             textAttributes: [String: String], numberAttributes: [String: Double]) throws {
        try writeAtomically(to: path) { temporary in
            do {
                let file = try HDF5File.create(temporary)
                for (key, value) in textAttributes.sorted(by: { $0.key < $1.key }) { try file.root.setAttribute(key, string: value) }
                for (key, value) in numberAttributes.sorted(by: { $0.key < $1.key }) { try file.root.setAttribute(key, values: [value], scalar: true) }
                for (weight, values) in gradients {
                    _ = try file.root.createDataset(String(weight.datasetPath.dropFirst()), shape: weight.shape, values: values)
                }
                try file.flush()
            } catch let error as HDF5Error {
                throw CheckpointError(file: path, object: error.path, problem: "write failed (\(error.detail))")
            }
        }
    }

    /// Reads the gradient of each of `weights` from `path`; every one must be present with the
    /// weight's shape. A failure names its cause (a missing or unreadable file, a missing
    /// dataset, a shape or type that does not fit, a size the file cannot back).
    public static func read(_ path: String, for weights: [CheckpointWeight]) throws -> [CheckpointWeight: [Float]] {
        try checkInputFile(path, kind: "gradient file")
        let file = try Checkpoint.openHDF5(path, reportedAs: path)
        var result: [CheckpointWeight: [Float]] = [:]
        for weight in weights {
            guard file.root.kind(of: weight.datasetPath) == .dataset else {
                throw CheckpointError(file: path, object: weight.datasetPath, problem: "missing: this gradient file was not made for this model")
            }
            do {
                let dataset = try file.root.dataset(weight.datasetPath)
                guard dataset.shape == weight.shape else {
                    throw CheckpointError(file: path, object: weight.datasetPath,
                                          problem: "shape \(shapeText(dataset.shape)) differs from the weight's \(shapeText(weight.shape))")
                }
                guard dataset.elementType.isFloat else {
                    throw CheckpointError(file: path, object: weight.datasetPath, problem: "is not floating point")
                }
                result[weight] = try dataset.read(as: Float.self)
            } catch let error as HDF5Error {
                throw CheckpointError(file: path, object: weight.datasetPath, problem: "cannot be read (\(error.detail))")
            }
        }
        return result
    }

    /// A root attribute as text, for reports.
    public static func attribute(_ path: String, _ name: String) -> String? {
        guard let file = try? HDF5File.open(path), (try? file.root.hasAttribute(name)) == true,
              let attribute = try? file.root.attribute(name) else { return nil }
        if case .string = attribute.elementType { return try? attribute.readString() }
        return (try? attribute.read(as: Double.self))?.first.map { String($0) }
    }
}
