import Foundation
import HDF5

/// Changes to make when writing a checkpoint: new values for some weights, masks to store, and
/// provenance attributes for the mask group. Everything else in the file is carried over as is.
public struct CheckpointEdits {
    public var weights: [CheckpointWeight: [Float]] = [:]
    public var masks: [CheckpointWeight: [UInt8]] = [:]
    /// Written as string attributes of the `/gmtool_masks` group.
    public var maskAttributes: [String: String] = [:]
    /// Other float32 datasets of gmtool's own (e.g. optimizer state under `/gmtool_training`),
    /// absolute paths; an existing dataset there is replaced.
    public var extraDatasets: [(path: String, shape: [Int], values: [Float])] = []
    /// String attributes on groups of gmtool's own, by group path (created when missing).
    public var extraAttributes: [String: [String: String]] = [:]
    public init() {}
}

/// Writes a file atomically: `body` fills a temporary path in the destination's folder, which is
/// then renamed over the destination, so a crash never leaves half a file behind.
public func writeAtomically(to destination: String, _ body: (String) throws -> Void) throws {
    let url = URL(fileURLWithPath: destination)
    let folder = url.deletingLastPathComponent()
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw CheckpointError(file: destination, problem: "output folder \(folder.path) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: folder.path) else {
        throw CheckpointError(file: destination, problem: "output folder \(folder.path) is not writable")
    }
    let temporary = folder.appendingPathComponent(".\(url.lastPathComponent).gmtool-\(UUID().uuidString).tmp").path
    do {
        try body(temporary)
        guard rename(temporary, destination) == 0 else {
            throw CheckpointError(file: destination, problem: "cannot be replaced (\(String(cString: strerror(errno))))")
        }
    } catch {
        try? FileManager.default.removeItem(atPath: temporary)
        throw error
    }
}

extension Checkpoint {
    /// Writes a new checkpoint at `output`: this one with `edits` applied, in the same layout,
    /// every other object and attribute (optimizer state, configs) preserved. The input file is
    /// only read.
    public func write(to output: String, edits: CheckpointEdits = CheckpointEdits()) throws {
        guard layout != .sparseExport else {
            throw CheckpointError(file: path, problem: "is a sparse export; turn it back into a Keras checkpoint with `gmtool import` first")
        }
        let sourceHDF5 = archive?.weightsFilePath ?? path
        try writeAtomically(to: output) { temporary in
            let hdf5Target = archive == nil ? temporary : temporary + ".weights.h5"
            defer { if archive != nil { try? FileManager.default.removeItem(atPath: hdf5Target) } }
            do { try FileManager.default.copyItem(atPath: sourceHDF5, toPath: hdf5Target) } catch {
                throw CheckpointError(file: output, problem: "cannot be written (\(error.localizedDescription))")
            }
            try apply(edits, toHDF5At: hdf5Target, reportedAs: output)
            if let archive {
                try archive.write(to: URL(fileURLWithPath: temporary), weightsFile: hdf5Target)
            }
        }
    }

    /// Applies edits to an HDF5 copy; every handle is released before returning, so the file is
    /// closed and complete.
    private func apply(_ edits: CheckpointEdits, toHDF5At target: String, reportedAs output: String) throws {
        do {
            let file = try HDF5File.open(target, mode: .readWrite)
            let root = file.root
            for (weight, values) in edits.weights.sorted(by: { $0.key.datasetPath < $1.key.datasetPath }) {
                precondition(values.count == weight.elementCount, "new values for \(weight.datasetPath) have the wrong size")
                try root.dataset(weight.datasetPath).write(values)
            }
            if !edits.masks.isEmpty || !edits.maskAttributes.isEmpty {
                let group = try root.openOrCreateGroup(maskGroupName)
                for (key, value) in edits.maskAttributes.sorted(by: { $0.key < $1.key }) { try group.setAttribute(key, string: value) }
                for (weight, mask) in edits.masks.sorted(by: { $0.key.datasetPath < $1.key.datasetPath }) {
                    precondition(mask.count == weight.elementCount, "mask for \(weight.datasetPath) has the wrong size")
                    let relative = String(weight.datasetPath.dropFirst())
                    if group.kind(of: relative) == .dataset {
                        let dataset = try group.dataset(relative)
                        if dataset.shape == weight.shape {
                            try dataset.write(mask)
                            continue
                        }
                        try group.removeLink(relative)
                    }
                    _ = try group.createDataset(relative, shape: weight.shape, values: mask,
                                                storage: HDF5StorageOptions(deflateLevel: 4, shuffle: false))
                }
            }
            for (path, shape, values) in edits.extraDatasets {
                let relative = String(path.drop { $0 == "/" })
                if root.kind(of: relative) == .dataset {
                    let dataset = try root.dataset(relative)
                    if dataset.shape == shape && dataset.elementType == .float(bits: 32) {
                        try dataset.write(values)
                        continue
                    }
                    try root.removeLink(relative)
                }
                _ = try root.createDataset(relative, shape: shape, values: values,
                                           storage: HDF5StorageOptions(deflateLevel: 1, shuffle: true, minimumCompressedBytes: 4096))
            }
            for (groupPath, attributes) in edits.extraAttributes.sorted(by: { $0.key < $1.key }) {
                let group = try root.openOrCreateGroup(String(groupPath.drop { $0 == "/" }))
                for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { try group.setAttribute(key, string: value) }
            }
            try file.flush()
        } catch let error as HDF5Error {
            throw CheckpointError(file: output, object: error.path, problem: "write failed (\(error.detail))")
        }
    }
}
