import Foundation

/// Parameter counts of one weight tensor.
public struct WeightStatistics: Codable, Sendable {
    public var layer: String
    public var layerType: String
    public var weight: String
    public var role: String
    public var shape: [Int]
    public var parameters: Int
    public var nonzero: Int
    public var sparsity: Double
    /// Bytes of the dense tensor as stored (element count times element size).
    public var bytes: Int
    public var trainable: Bool
    public var prunable: Bool
    /// Entries whose mask bit is 0, when the checkpoint carries a gmtool mask for this weight.
    public var masked: Int?
    /// How the last pruning step treated this kernel (beta, gamma, pruned_now, pruned_total), when
    /// its mask records it.
    public var pruning: [String: String]?
    /// A prunable kernel whose every value is zero: the layer is dead (biases that are still at
    /// their zero initialisation are not flagged).
    public var allZero: Bool

    enum CodingKeys: String, CodingKey {
        case layer, layerType = "layer_type", weight, role, shape, parameters, nonzero, sparsity, bytes, trainable
        case prunable, masked, pruning, allZero = "all_zero"
    }
}

/// What `gmtool stats` reports: per-weight rows and model totals.
public struct ModelStatistics: Codable, Sendable {
    public var file: String
    public var layout: String
    public var kerasVersion: String?
    public var fileBytes: Int
    public var totalParameters: Int
    public var trainableParameters: Int
    public var nonTrainableParameters: Int
    public var prunableParameters: Int
    public var nonzeroParameters: Int
    /// Zero fraction over all parameters.
    public var sparsity: Double
    /// Zero fraction over the prunable kernels only.
    public var prunableSparsity: Double
    /// Bytes of all weights stored dense.
    public var denseBytes: Int
    public var hasMasks: Bool
    public var maskProvenance: [String: String]
    /// Layers whose class the layer catalog does not know, as "name (Class)": their weights are
    /// counted as stored, none is prunable, and eval, grad, prune and train refuse the model.
    public var unknownLayers: [String]
    public var layers: [WeightStatistics]

    enum CodingKeys: String, CodingKey {
        case file, layout, kerasVersion = "keras_version", fileBytes = "file_bytes"
        case totalParameters = "total_parameters", trainableParameters = "trainable_parameters"
        case nonTrainableParameters = "non_trainable_parameters", prunableParameters = "prunable_parameters"
        case nonzeroParameters = "nonzero_parameters", sparsity, prunableSparsity = "prunable_sparsity"
        case denseBytes = "dense_bytes", hasMasks = "has_masks", maskProvenance = "mask_provenance"
        case unknownLayers = "unknown_layers", layers
    }
}

extension Checkpoint {
    /// Reads every weight and counts parameters, non-zeros and masks.
    public func statistics() throws -> ModelStatistics {
        var rows: [WeightStatistics] = []
        for weight in weights {
            let (nonzero, masked) = try counts(weight)
            let count = weight.elementCount
            rows.append(WeightStatistics(
                layer: weight.layerName, layerType: weight.layerClass ?? "?", weight: weight.name,
                role: weight.role.description, shape: weight.shape, parameters: count, nonzero: nonzero,
                sparsity: count == 0 ? 0 : Double(count - nonzero) / Double(count),
                bytes: count * elementBytes(weight), trainable: weight.trainable, prunable: weight.prunable,
                masked: masked, pruning: try maskAttributes(for: weight).nilIfEmpty,
                allZero: weight.prunable && count > 0 && nonzero == 0))
        }
        let total = rows.reduce(0) { $0 + $1.parameters }
        let trainable = rows.filter(\.trainable).reduce(0) { $0 + $1.parameters }
        let prunable = rows.filter(\.prunable).reduce(0) { $0 + $1.parameters }
        let nonzero = rows.reduce(0) { $0 + $1.nonzero }
        let prunableNonzero = rows.filter(\.prunable).reduce(0) { $0 + $1.nonzero }
        // For the report only (0 if unknown): the file was just opened and read.
        let fileBytes = fileSize(atPath: path) ?? 0
        return ModelStatistics(
            file: path, layout: layout.rawValue, kerasVersion: kerasVersion, fileBytes: fileBytes,
            totalParameters: total, trainableParameters: trainable, nonTrainableParameters: total - trainable,
            prunableParameters: prunable, nonzeroParameters: nonzero,
            sparsity: total == 0 ? 0 : Double(total - nonzero) / Double(total),
            prunableSparsity: prunable == 0 ? 0 : Double(prunable - prunableNonzero) / Double(prunable),
            denseBytes: rows.reduce(0) { $0 + $1.bytes }, hasMasks: rows.contains { $0.masked != nil },
            maskProvenance: try maskProvenance(), unknownLayers: unknownLayers, layers: rows)
    }

    /// Non-zeros and masked-out entries of one weight. A sparse member is counted from its stored
    /// entries (the rest are zeros, and masked out when its structure is the mask) without
    /// building the dense kernel.
    private func counts(_ weight: CheckpointWeight) throws -> (nonzero: Int, masked: Int?) {
        func nonzeros(_ values: [Float]) -> Int { values.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }
        if layout == .sparseExport {
            switch try sparseMember(weight) {
            case .dense(let values): return (nonzeros(values), nil)
            case .kernel(let matrix, _, let structureIsMask):
                return (nonzeros(matrix.values), structureIsMask ? weight.elementCount - matrix.storedCount : nil)
            }
        }
        let nonzero = nonzeros(try read(weight))
        return (nonzero, try mask(for: weight).map { mask in mask.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } })
    }

    /// The stored precision; 4 (float32) when the weight's path is no dataset of this file (a sparse
    /// export keeps kernels in groups). A dataset that cannot be read fails when its values are.
    private func elementBytes(_ weight: CheckpointWeight) -> Int {
        guard let dataset = try? file.root.dataset(weight.datasetPath) else { return 4 }
        switch dataset.elementType {
        case .float(let bits), .integer(let bits, _): return bits / 8  // Normalization's count is int64
        default: return 4
        }
    }
}

extension Dictionary {
    var nilIfEmpty: Self? { isEmpty ? nil : self }
}
