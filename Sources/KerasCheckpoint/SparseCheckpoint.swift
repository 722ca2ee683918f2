import Foundation
import HDF5

// The sparse export: a complete model in one HDF5 file.
//
//   /                      attrs gmtool_format = "gmtool-sparse-keras", format_version = 1,
//                          model_config (JSON), keras_version, backend, layer_names (model order),
//                          sparse_encoding, source, source_layout
//   /weights/<weight path> one member per weight, at the weight's HDF5 path in the source
//                          checkpoint; attrs layer, layer_class, role, name, keras_shape,
//                          trainable, order (position in the model)
//     prunable kernels:    a group in anndata's csr_matrix encoding (encoding-type, encoding-version,
//                          shape = [rows, columns]; datasets data, indices, indptr), rows = output
//                          channels (KernelMatrixShape), attrs axis_order, has_mask; or with
//                          --format bitmask a group encoding-type = gmtool_bitmask (bits, data)
//     everything else:     a dense float32 dataset
//
// When the source had a mask for a kernel, the stored entries are exactly its 1 bits (explicit
// zeros included), so import restores weights and masks bit for bit.

public let sparseFormatName = "gmtool-sparse-keras"

public enum SparseEncoding: String, Sendable, CaseIterable {
    case csr = "csr_matrix"
    case bitmask = "gmtool_bitmask"
}

/// Sizes of one kernel in the export (payload bytes, before HDF5 compression).
public struct SparseKernelReport: Codable, Sendable {
    public var layer: String
    public var role: String
    public var parameters: Int
    public var stored: Int
    public var denseBytes: Int
    public var csrBytes: Int
    public var bitmaskBytes: Int
    /// The encoding this kernel was written in (its group's encoding-type).
    public var encoding: String
    /// Bytes the member takes in the written file (after compression).
    public var fileBytes: Int

    enum CodingKeys: String, CodingKey {
        case layer, role, parameters, stored, denseBytes = "dense_bytes", csrBytes = "csr_bytes"
        case bitmaskBytes = "bitmask_bytes", encoding, fileBytes = "file_bytes"
    }
}

extension Checkpoint {
    /// Writes the sparse export of this checkpoint to `path` (atomically). Needs the architecture
    /// (a full model, or `--config` for weights-only files). `encoding` nil: each kernel in the
    /// encoding whose payload is smaller (CSR or bitmask; readers decode each group by its own
    /// encoding-type).
    public func exportSparse(to path: String, encoding requested: SparseEncoding?, compress: Bool) throws -> [SparseKernelReport] {
        guard let config = modelConfig else {
            throw CheckpointError(file: self.path, problem: "holds no architecture; pass --config so the export is a complete model")
        }
        let storage = compress ? HDF5StorageOptions(deflateLevel: 4, shuffle: true, minimumCompressedBytes: 4096) : .contiguous
        var reports: [SparseKernelReport] = []
        try writeAtomically(to: path) { temporary in
            do {
                let file = try HDF5File.create(temporary, compact: true)
                let root = file.root
                try root.setAttribute("gmtool_format", string: sparseFormatName)
                try root.setAttribute("format_version", values: [Int32(1)], scalar: true)
                try root.setAttribute("model_config", string: config.json)
                try root.setAttribute("keras_version", string: kerasVersion ?? "")
                try root.setAttribute("backend", string: backend ?? "tensorflow")
                try root.setAttribute("layer_names", strings: config.layers.map(\.name))
                try root.setAttribute("sparse_encoding", string: requested?.rawValue ?? "smaller per kernel")
                try root.setAttribute("source", string: self.path)
                try root.setAttribute("source_layout", string: layout.rawValue)
                let provenance = try maskProvenance()
                if !provenance.isEmpty {
                    // How the masks were made travels with them (no mask datasets: the CSR
                    // structure is the mask).
                    let masks = try root.createGroup(maskGroupName)
                    for (key, value) in provenance.sorted(by: { $0.key < $1.key }) { try masks.setAttribute(key, string: value) }
                }
                for (order, weight) in weights.enumerated() {
                    let member = "weights" + weight.datasetPath
                    let values = try read(weight)
                    let object: HDF5Object
                    if weight.prunable {
                        let mask = try self.mask(for: weight)
                        let shape = KernelMatrixShape(role: weight.role, shape: weight.shape)
                        let csr = shape.csr(of: values, mask: mask)
                        let csrBytes = shape.csrPayloadBytes(stored: csr.storedCount)
                        let bitmaskBytes = shape.bitmaskPayloadBytes(stored: csr.storedCount)
                        let encoding = requested ?? (bitmaskBytes < csrBytes ? .bitmask : .csr)
                        let group = try root.createGroup(member)
                        try group.setAttribute("encoding-type", string: encoding.rawValue)
                        try group.setAttribute("encoding-version", string: "0.1.0")
                        try group.setAttribute("shape", values: [Int64(shape.rows), Int64(shape.columns)])
                        try group.setAttribute("axis_order", string: shape.axisOrder)
                        try group.setAttribute("has_mask", values: [UInt8(mask == nil ? 0 : 1)], scalar: true)
                        let stored: Int
                        switch encoding {
                        case .csr:
                            stored = csr.storedCount
                            _ = try group.createDataset("data", shape: [stored], values: csr.values, storage: storage)
                            // scipy accepts int32 or int64 indices: the narrower whenever it fits.
                            if max(stored, shape.columns) < Int(Int32.max) {
                                _ = try group.createDataset("indices", shape: [stored], values: csr.columnIndices, storage: storage)
                                _ = try group.createDataset("indptr", shape: [shape.rows + 1], values: csr.rowOffsets.map { Int32($0) }, storage: storage)
                            } else {
                                _ = try group.createDataset("indices", shape: [stored], values: csr.columnIndices.map { Int64($0) }, storage: storage)
                                _ = try group.createDataset("indptr", shape: [shape.rows + 1], values: csr.rowOffsets.map { Int64($0) }, storage: storage)
                            }
                        case .bitmask:
                            let packed = shape.bitmask(of: values, mask: mask)
                            stored = packed.values.count
                            _ = try group.createDataset("bits", shape: [packed.bits.count], values: packed.bits, storage: storage)
                            _ = try group.createDataset("data", shape: [stored], values: packed.values, storage: storage)
                        }
                        object = group
                        let dataBytes = try ["data", "indices", "indptr", "bits"].filter { group.kind(of: $0) == .dataset }
                            .reduce(0) { $0 + (try group.dataset($1).storageSize) }
                        reports.append(SparseKernelReport(
                            layer: weight.layerName, role: weight.role.description, parameters: values.count, stored: stored,
                            denseBytes: 4 * values.count, csrBytes: csrBytes, bitmaskBytes: bitmaskBytes,
                            encoding: encoding.rawValue, fileBytes: dataBytes))
                    } else {
                        object = try root.createDataset(member, shape: weight.shape, values: values, storage: storage)
                    }
                    try object.setAttribute("layer", string: weight.layerName)
                    try object.setAttribute("layer_class", string: weight.layerClass ?? "")
                    try object.setAttribute("role", string: weight.role.description)
                    try object.setAttribute("name", string: weight.name)
                    try object.setAttribute("keras_shape", values: weight.shape.map { Int64($0) })
                    try object.setAttribute("trainable", values: [UInt8(weight.trainable ? 1 : 0)], scalar: true)
                    try object.setAttribute("order", values: [Int64(order)], scalar: true)
                }
                try file.flush()
            } catch let error as HDF5Error {
                throw writeFailure(error, output: path)
            }
        }
        return reports
    }

    /// Writes a dense Keras checkpoint (the classic full-model `.h5`, which Keras 2 and 3 load)
    /// with this checkpoint's weights and masks. For a sparse export this is `gmtool import`.
    public func writeDenseModel(to path: String) throws {
        guard let config = modelConfig else {
            throw CheckpointError(file: self.path, problem: "holds no architecture; pass --config")
        }
        let byLayer = Dictionary(grouping: weights, by: \.layerName)
        try writeAtomically(to: path) { temporary in
            do {
                let file = try HDF5File.create(temporary)
                let root = file.root
                try root.setAttribute("model_config", string: config.json)
                try root.setAttribute("keras_version", string: kerasVersion ?? "")
                try root.setAttribute("backend", string: backend ?? "tensorflow")
                let group = try root.createGroup("model_weights")
                try group.setAttribute("layer_names", strings: config.layers.map(\.name))
                try group.setAttribute("keras_version", string: kerasVersion ?? "")
                try group.setAttribute("backend", string: backend ?? "tensorflow")
                for layer in config.layers {
                    let layerGroup = try group.createGroup(layer.name)
                    let layerWeights = byLayer[layer.name] ?? []
                    // Legacy names keep their "<layer>/<weight>:0" form; Keras 3 "vars/i" become "<layer>/<role>".
                    let names = layerWeights.map { $0.name.contains("/") && !$0.name.hasPrefix("vars/") ? $0.name : "\(layer.name)/\($0.role)" }
                    try layerGroup.setAttribute("weight_names", strings: names)
                    for (weight, name) in zip(layerWeights, names) {
                        let dataset = try layerGroup.createDataset(name, shape: weight.shape, values: try read(weight))
                        if let mask = try self.mask(for: weight) {
                            _ = try root.createDataset("\(maskGroupName)\(dataset.path)", shape: weight.shape, values: mask,
                                                       storage: HDF5StorageOptions(deflateLevel: 4))
                        }
                    }
                }
                let provenance = try maskProvenance()
                if !provenance.isEmpty {
                    let masks = try root.openOrCreateGroup(maskGroupName)
                    for (key, value) in provenance.sorted(by: { $0.key < $1.key }) { try masks.setAttribute(key, string: value) }
                }
                try file.flush()
            } catch let error as HDF5Error {
                throw writeFailure(error, output: path)
            }
        }
    }

    // MARK: Reading a sparse export

    /// Layers of a sparse export, from the members' own attributes.
    static func sparseLayers(_ root: HDF5Group, config: ModelConfig, catalog: any LayerCatalog, source: String) throws -> (layers: [CheckpointLayer], members: [String: String]) {
        guard root.kind(of: "weights") == .group else {
            throw CheckpointError(file: source, object: "/weights", problem: "missing from the sparse export")
        }
        var found: [(order: Int, weight: CheckpointWeight, member: String)] = []
        func visit(_ group: HDF5Group) throws {
            for name in try group.childNames() {
                let kind = group.kind(of: name)
                let object: HDF5Object
                if kind == .group {
                    let child = try group.group(name)
                    if try !child.hasAttribute("order") { try visit(child); continue }
                    object = child
                } else if kind == .dataset {
                    object = try group.dataset(name)
                } else { continue }
                func text(_ key: String) throws -> String { try readString(object, key, source) }
                guard try object.hasAttribute("order"), try object.hasAttribute("keras_shape") else {
                    throw CheckpointError(file: source, object: object.path, problem: "has no order/keras_shape attributes")
                }
                let order = Int(try object.attribute("order").read(as: Int64.self).first ?? 0)
                let shape = try object.attribute("keras_shape").read(as: Int64.self).map { Int($0) }
                // Every size derived from the weight multiplies its dimensions, and a small member
                // can declare any keras_shape.
                guard let count = checkedProduct(shape) else {
                    throw CheckpointError(file: source, object: object.path,
                                          problem: "keras_shape \(shapeText(shape)) is not a shape (a negative dimension, or more elements than a 64-bit count holds)")
                }
                try checkFitsInMemory(count, source: source, object: object.path)
                let layerClass = try text("layer_class")
                let role = WeightRole(fileName: try text("role"))
                let originalPath = String(object.path.dropFirst("/weights".count))
                let weight = CheckpointWeight(
                    layerName: try text("layer"), layerClass: layerClass.isEmpty ? nil : layerClass, role: role,
                    name: try text("name"), datasetPath: originalPath, shape: shape,
                    trainable: (try object.attribute("trainable").read(as: UInt8.self).first ?? 1) != 0,
                    prunable: catalog.prunableRoles(className: layerClass).contains(role))
                found.append((order, weight, object.path))
            }
        }
        try visit(try root.group("weights"))
        found.sort { $0.order < $1.order }
        var layers: [CheckpointLayer] = []
        for entry in found {
            if layers.last?.name == entry.weight.layerName { layers[layers.count - 1].weights.append(entry.weight) }
            else { layers.append(CheckpointLayer(name: entry.weight.layerName, className: entry.weight.layerClass, weights: [entry.weight])) }
        }
        return (layers, Dictionary(uniqueKeysWithValues: found.map { ($0.weight.datasetPath, $0.member) }))
    }

    /// A member of this sparse export, read and checked against its weight. `read`, `mask(for:)`,
    /// `sparseKernel` and `statistics` all go through here, so nothing a file declares reaches
    /// the dense decode or the CSR kernels unchecked.
    func sparseMember(_ weight: CheckpointWeight) throws -> SparseMember {
        guard let member = sparseMembers[weight.datasetPath] else {
            throw CheckpointError(file: path, object: weight.datasetPath, problem: "missing from the sparse export")
        }
        func invalid(_ what: String, _ problem: String) -> CheckpointError {
            CheckpointError(file: path, object: member, problem: "invalid \(what): \(problem)")
        }
        let root = file.root
        if root.kind(of: member) == .dataset {
            let dataset = try openDataset(member)
            guard dataset.shape == weight.shape else {
                throw CheckpointError(file: path, object: member,
                                      problem: "shape \(shapeText(dataset.shape)) differs from its keras_shape \(shapeText(weight.shape))")
            }
            guard dataset.elementType.isFloat else {
                throw CheckpointError(file: path, object: member, problem: "weights must be floating point, found \(dataset.elementType)")
            }
            return .dense(try readValues(dataset, as: Float.self))
        }
        let group = try root.group(member)
        let encoding = try Self.readString(group, "encoding-type", path)
        let shape = KernelMatrixShape(role: weight.role, shape: weight.shape)
        let matrix: CSRMatrix
        switch encoding {
        case SparseEncoding.csr.rawValue:
            let declared = try group.attribute("shape").read(as: Int64.self).map { Int($0) }
            guard declared == [shape.rows, shape.columns] else {
                throw CheckpointError(file: path, object: group.path, problem: "shape \(declared) does not fit the kernel's \(shape.rows)x\(shape.columns)")
            }
            let (indptr, indices, data) = (try openDataset("\(member)/indptr"), try openDataset("\(member)/indices"), try openDataset("\(member)/data"))
            // The lengths first: a declared length costs nothing on disk, reading it may.
            if let problem = CSRMatrix.sizeProblem(rows: shape.rows, columns: shape.columns, offsets: indptr.elementCount,
                                                   indices: indices.elementCount, values: data.elementCount) {
                throw invalid("CSR matrix", problem)
            }
            matrix = CSRMatrix(rows: shape.rows, columns: shape.columns,
                               rowOffsets: try readValues(indptr, as: Int64.self).map { Int($0) },
                               columnIndices: try readValues(indices, as: Int32.self), values: try readValues(data, as: Float.self))
            if let problem = matrix.structureProblem() { throw invalid("CSR matrix", problem) }
        case SparseEncoding.bitmask.rawValue:
            let (bitsSet, data) = (try openDataset("\(member)/bits"), try openDataset("\(member)/data"))
            // The lengths first, as for CSR.
            if let problem = shape.bitmaskSizeProblem(bytes: bitsSet.elementCount) { throw invalid("bitmask", problem) }
            if let problem = CSRMatrix.sizeProblem(rows: shape.rows, columns: shape.columns, offsets: shape.rows + 1,
                                                   indices: data.elementCount, values: data.elementCount) {
                throw invalid("bitmask", problem)
            }
            let bits = try readValues(bitsSet, as: UInt8.self), values = try readValues(data, as: Float.self)
            if let problem = shape.bitmaskProblem(bits: bits, valueCount: values.count) { throw invalid("bitmask", problem) }
            matrix = shape.matrix(bits: bits, values: values)
        default:
            throw CheckpointError(file: path, object: member, problem: "unknown encoding-type \(encoding)")
        }
        let hasMask = (try group.attribute("has_mask").read(as: UInt8.self).first ?? 0) != 0
        return .kernel(matrix, shape: shape, structureIsMask: hasMask)
    }

    /// The kernel as a CSR matrix with one row per output channel, when this is a sparse export
    /// and the weight is stored sparse (a bitmask member is converted); nil otherwise.
    public func sparseKernel(_ weight: CheckpointWeight) throws -> CSRMatrix? {
        guard layout == .sparseExport, weight.prunable, case .kernel(let matrix, _, _) = try sparseMember(weight) else { return nil }
        return matrix
    }
}

/// A member of a sparse export after `sparseMember` checked it.
enum SparseMember {
    /// A weight stored dense, with exactly its keras_shape's element count.
    case dense([Float])
    /// A kernel stored sparse; `structureIsMask` when the stored entries are the source's mask.
    case kernel(CSRMatrix, shape: KernelMatrixShape, structureIsMask: Bool)
}
