import Foundation
import HDF5

/// A file of dC/dw written by `gmtool grad`: one float32 dataset per trainable weight, at the
/// same HDF5 path the weight has in its checkpoint, and root attributes saying how it was made
/// (`images`, `loss`, data, scaling, model), plus the two that `read` checks: `gmtool_gradients`
/// (this is a gmtool gradient file) and `weights_digest` (the `WeightsDigest` of the weights the
/// gradients were taken on). Any HDF5 reader can inspect it.
public enum GradientFile {
    /// The root attribute that marks a gradient file, and its value.
    public static let marker = ("gmtool_gradients", "dC/dw of the mean categorical cross-entropy")
    /// The root attribute holding the digest of the weights the gradients were taken on.
    public static let digestAttribute = "weights_digest"

    /// Writes atomically, with the marker and `weightsDigest`: the root attributes (sorted), then
    /// one float32 dataset per tensor, in order, `values(i)` asked for tensor i only when it is
    /// written (a merge streams one tensor at a time). The same content gives the same bytes.
    public static func write(to path: String, tensors: [(path: String, shape: [Int])], weightsDigest: String,
                             textAttributes: [String: String], numberAttributes: [String: Double],
                             values: (Int) throws -> [Float]) throws {
        var textAttributes = textAttributes
        textAttributes[marker.0] = marker.1
        textAttributes[digestAttribute] = weightsDigest
        try writeAtomically(to: path) { temporary in
            do {
                let file = try HDF5File.create(temporary)
                for (key, value) in textAttributes.sorted(by: { $0.key < $1.key }) { try file.root.setAttribute(key, string: value) }
                for (key, value) in numberAttributes.sorted(by: { $0.key < $1.key }) { try file.root.setAttribute(key, values: [value], scalar: true) }
                for (index, tensor) in tensors.enumerated() {
                    _ = try file.root.createDataset(String(tensor.path.dropFirst()), shape: tensor.shape, values: try values(index))
                }
                try file.flush()
            } catch let error as HDF5Error {
                throw CheckpointError(file: path, object: error.path, problem: "write failed (\(error.detail))")
            }
        }
    }

    /// Reads the gradient of each of `weights` from `path`. The file must be one `gmtool grad`
    /// wrote (the marker), taken on weights whose digest is `weightsDigest`, and every gradient
    /// must be present with the weight's shape and finite. A failure names its cause (a missing
    /// or unreadable file, a checkpoint instead of gradients, other weights, a missing dataset, a
    /// shape or type that does not fit, a size the file cannot back, NaN or infinity).
    public static func read(_ path: String, for weights: [CheckpointWeight], weightsDigest: String) throws -> [CheckpointWeight: [Float]] {
        try checkInputFile(path, kind: "gradient file")
        let file = try Checkpoint.openHDF5(path, reportedAs: path)
        func text(_ name: String) -> String? {
            guard (try? file.root.hasAttribute(name)) == true, let attribute = try? file.root.attribute(name),
                  case .string = attribute.elementType else { return nil }
            return try? attribute.readString()
        }
        guard text(marker.0) == marker.1 else {
            let isCheckpoint = ["model_config", "layer_names", "gmtool_format"].contains { (try? file.root.hasAttribute($0)) == true }
                || file.root.kind(of: "/layers") == .group
            throw CheckpointError(file: path, problem: isCheckpoint ? "is a model checkpoint, not a gradient file written by `gmtool grad`"
                                                                    : "is not a gradient file written by `gmtool grad` (no \(marker.0) attribute)")
        }
        guard let digest = text(digestAttribute) else {
            throw CheckpointError(file: path, problem: "has no \(digestAttribute) attribute: write it again with this version's `gmtool grad`")
        }
        guard digest == weightsDigest else {
            throw CheckpointError(file: path, problem: "was taken on other weights (weights digest \(digest), this model's is \(weightsDigest))")
        }
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
                let values = try dataset.read(as: Float.self)
                let nonFinite = values.reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
                guard nonFinite == 0 else {
                    throw CheckpointError(file: path, object: weight.datasetPath,
                                          problem: "holds \(nonFinite) of \(values.count) values that are NaN or infinite")
                }
                result[weight] = values
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

/// A 64-bit FNV-1a digest over weight values (their float32 bit patterns, little-endian), fed in
/// model order: it tells whether two sets of weights are the same, byte for byte, whatever file
/// layout they came from. Not cryptographic: it guards against mix-ups, not against forgery.
/// `gmtool grad` records it so `prune --gradients` can check the gradients were taken on these
/// weights; it is the one digest of weights in gmtool (use it for any other provenance).
public struct WeightsDigest: Sendable {
    private var state: UInt64 = 0xcbf2_9ce4_8422_2325

    public init() {}

    /// Adds one tensor's values.
    public mutating func add(_ values: UnsafeBufferPointer<Float>) {
        var h = state
        for value in values {
            var bits = value.bitPattern.littleEndian
            for _ in 0..<4 {
                h = (h ^ UInt64(bits & 0xff)) &* 0x0000_0100_0000_01b3
                bits >>= 8
            }
        }
        state = h
    }

    /// 16 lowercase hex digits.
    public var hex: String {
        let digits = String(state, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }
}
