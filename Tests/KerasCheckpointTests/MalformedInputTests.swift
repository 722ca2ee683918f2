import Engine
import Foundation
import HDF5
import MalformedFiles
import Testing
@testable import KerasCheckpoint

/// The message a throwing call gives, or nil when it does not throw.
func message(_ body: () throws -> Void) -> String? {
    do { try body() } catch { return "\(error)" }
    return nil
}

let memory = describeBytes(MachineMemory.bytes)

/// Sizes a file declares are checked before anything is allocated from them.
@Suite struct DeclaredSizeTests {
    @Test func aLayerDeclaringMoreThanMemoryIsRefusedWhenOpened() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("huge.h5")
        try copyDeclaringFilters(1 << 40, layer: "c1", of: Fixtures.path("seqcnn_k2.h5"), to: path)
        #expect(message { _ = try Checkpoint.open(path).statistics() }
            == "\(path): /model_weights/c1/c1/kernel:0: declares 29686813949952 float32 values (108.0 TiB), more than this machine's \(memory) of memory")
    }

    @Test func aLayerTheFileNeverStoredIsRefusedWhenRead() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("unwritten.h5")
        try copyDeclaringFilters(1 << 20, layer: "c1", of: Fixtures.path("seqcnn_k2.h5"), to: path)
        let checkpoint = try Checkpoint.open(path)
        #expect(message { _ = try checkpoint.statistics() }
            == "\(path): /model_weights/c1/c1/kernel:0: cannot be read (declares 28311552 float32 values (108.0 MiB) but the file stores none of them)")
    }

    @Test func architectureFilesHaveASizeLimit() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("model.json")
        // A sparse file: 65 MiB declared, nothing on disk.
        #expect(FileManager.default.createFile(atPath: path, contents: nil))
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.truncate(atOffset: 65 << 20)
        try handle.close()
        #expect(message { _ = try ModelConfig(contentsOf: path) } == "\(path): is 65.0 MiB, over gmtool's 64.0 MiB limit for a model config")
    }
}

/// A sparse export of seqcnn_k2.h5 whose c1 kernel member (8 output channels x 27 inputs) `edit`
/// breaks, opened again.
func brokenExport(_ encoding: SparseEncoding, in scratch: ScratchFolder, _ edit: (HDF5Group) throws -> Void) throws -> String {
    let path = scratch.path("broken-\(encoding.rawValue).h5")
    _ = try Fixtures.open("seqcnn_k2.h5").exportSparse(to: path, encoding: encoding, compress: false)
    let file = try HDF5File.open(path, mode: .readWrite)
    try edit(try file.root.group(c1Kernel))
    try file.flush()
    return path
}

let c1Kernel = "/weights/model_weights/c1/c1/kernel:0"

/// Replaces dataset `name` of `group` with `values`.
func replace<T: HDF5Scalar>(_ group: HDF5Group, _ name: String, _ values: [T]) throws {
    try group.removeLink(name)
    _ = try group.createDataset(name, shape: [values.count], values: values)
}

/// Changes dataset `name` of `group` with `change`.
func change<T: HDF5Scalar>(_ group: HDF5Group, _ name: String, as: T.Type, _ change: (inout [T]) -> Void) throws {
    var values = try group.dataset(name).read(as: T.self)
    change(&values)
    try replace(group, name, values)
}

/// Every reader of a sparse export goes through one checked decode.
@Suite struct SparseMemberTests {
    func kernelWeight(_ checkpoint: Checkpoint) throws -> CheckpointWeight {
        try #require(checkpoint.weights.first { $0.datasetPath == "/model_weights/c1/c1/kernel:0" })
    }

    /// The message reading the c1 kernel of a broken export gives.
    func readMessage(_ encoding: SparseEncoding = .csr, _ edit: (HDF5Group) throws -> Void) throws -> String? {
        let scratch = try ScratchFolder()
        let checkpoint = try Checkpoint.open(try brokenExport(encoding, in: scratch, edit))
        return message { _ = try checkpoint.read(try kernelWeight(checkpoint)) }
    }

    @Test func everyReaderRefusesTheSameBrokenMember() throws {
        let scratch = try ScratchFolder()
        let path = try brokenExport(.csr, in: scratch) { try change($0, "indices", as: Int32.self) { $0[5] = 27 } }
        let checkpoint = try Checkpoint.open(path)
        let weight = try kernelWeight(checkpoint)
        let expected = "\(path): \(c1Kernel): invalid CSR matrix: row 0 has column 27, outside 0..<27"
        #expect(message { _ = try checkpoint.read(weight) } == expected)
        #expect(message { _ = try checkpoint.sparseKernel(weight) } == expected)
        #expect(message { _ = try checkpoint.mask(for: weight) } == expected)
        #expect(message { _ = try checkpoint.statistics() } == expected)
    }

    @Test func brokenCSRStructures() throws {
        func expect(_ problem: String, _ edit: (HDF5Group) throws -> Void) throws {
            let text = try readMessage(.csr, edit)
            #expect(text?.hasSuffix(": \(c1Kernel): invalid CSR matrix: \(problem)") == true, "\(text ?? "no error")")
        }
        try expect("indptr starts at 1, not 0") { try change($0, "indptr", as: Int32.self) { $0[0] = 1 } }
        try expect("indptr decreases at row 2 (54 then 10)") { try change($0, "indptr", as: Int32.self) { $0[3] = 10 } }
        // Past the entries, then back: refused before row 0's columns are looked at.
        try expect("indptr decreases at row 1 (300 then 54)") { try change($0, "indptr", as: Int32.self) { $0[1] = 300 } }
        try expect("indptr ends at 215, not at the 216 stored entries") { try change($0, "indptr", as: Int32.self) { $0[8] = 215 } }
        try expect("indptr has 8 entries for 8 rows (needs 9)") { try change($0, "indptr", as: Int32.self) { $0.removeLast() } }
        try expect("row 0 has column -1, outside 0..<27") { try change($0, "indices", as: Int32.self) { $0[0] = -1 } }
        try expect("row 0 has column 1 after 2: columns must increase") { try change($0, "indices", as: Int32.self) { $0.swapAt(1, 2) } }
        try expect("indices has 216 entries but data has 215") { try change($0, "data", as: Float.self) { $0.removeLast() } }
    }

    @Test func declaredArraysLongerThanTheKernelAreRefusedBeforeReading() throws {
        let scratch = try ScratchFolder()
        let path = try brokenExport(.csr, in: scratch) { group in
            try group.removeLink("data")
            try group.removeLink("indices")
        }
        try declareDataset(in: path, at: "\(c1Kernel)/data", shape: [1 << 36])
        try declareDataset(in: path, at: "\(c1Kernel)/indices", shape: [1 << 36])
        let checkpoint = try Checkpoint.open(path)
        #expect(message { _ = try checkpoint.statistics() }
            == "\(path): \(c1Kernel): invalid CSR matrix: data has 68719476736 entries, more than the 8x27 matrix has places")
    }

    @Test func brokenBitmasks() throws {
        #expect(try readMessage(.bitmask) { try change($0, "bits", as: UInt8.self) { $0.removeLast() } }?
            .hasSuffix(": \(c1Kernel): invalid bitmask: bits has 26 bytes, the 8x27 matrix needs 27") == true)
        let fewer = try readMessage(.bitmask) { try change($0, "data", as: Float.self) { $0.removeLast() } }
        #expect(fewer?.hasSuffix(": \(c1Kernel): invalid bitmask: bits mark 216 stored entries but data has 215") == true, "\(fewer ?? "")")
    }

    @Test func denseMembersMustHaveTheirKerasShapeAndFloats() throws {
        let scratch = try ScratchFolder()
        /// The c1 bias member replaced by `values`, its attributes kept; the message reading it gives.
        func readBias<T: HDF5Scalar>(_ values: [T]) throws -> String? {
            let path = try brokenExport(.csr, in: scratch) { _ in }
            do {
                let weights = try HDF5File.open(path, mode: .readWrite).root.group("/weights/model_weights/c1/c1")
                let attributes = try ["layer", "layer_class", "role", "name"].map { ($0, try weights.dataset("bias:0").attribute($0).readString()) }
                try weights.removeLink("bias:0")
                let bias = try weights.createDataset("bias:0", shape: [values.count], values: values)
                for (key, value) in attributes { try bias.setAttribute(key, string: value) }
                try bias.setAttribute("keras_shape", values: [Int64(8)])
                try bias.setAttribute("order", values: [Int64(1)], scalar: true)
                try bias.setAttribute("trainable", values: [UInt8(1)], scalar: true)
            }
            let checkpoint = try Checkpoint.open(path)
            let bias = try #require(checkpoint.weights.first { $0.datasetPath == "/model_weights/c1/c1/bias:0" })
            return message { _ = try checkpoint.read(bias) }.map { $0.replacingOccurrences(of: path, with: "FILE") }
        }
        #expect(try readBias([Float](repeating: 0, count: 7)) == "FILE: /weights/model_weights/c1/c1/bias:0: shape (7,) differs from its keras_shape (8,)")
        #expect(try readBias([Int32](repeating: 0, count: 8)) == "FILE: /weights/model_weights/c1/c1/bias:0: weights must be floating point, found int32")
    }

    @Test func kerasShapesAreCheckedWhenOpened() throws {
        let scratch = try ScratchFolder()
        func open(keras shape: [Int64]) throws -> String? {
            let path = try brokenExport(.csr, in: scratch) { try $0.setAttribute("keras_shape", values: shape) }
            return message { _ = try Checkpoint.open(path) }.map { $0.replacingOccurrences(of: path, with: "FILE") }
        }
        // Bound first so a failure shows the message it got (one failure, under a loaded
        // machine, printed none).
        let overflowing = try open(keras: [1 << 32, 1 << 32, 1 << 32])
        #expect(overflowing == "FILE: \(c1Kernel): keras_shape (4294967296, 4294967296, 4294967296) is not a shape (a negative dimension, or more elements than a 64-bit count holds)",
                "got \(overflowing ?? "no error")")
        #expect(try open(keras: [3, -3]) == "FILE: \(c1Kernel): keras_shape (3, -3) is not a shape (a negative dimension, or more elements than a 64-bit count holds)")
        #expect(try open(keras: [3, 3, 3, 1 << 40])
            == "FILE: \(c1Kernel): declares 29686813949952 float32 values (108.0 TiB), more than this machine's \(memory) of memory")
    }
}

/// `gmtool grad` files: every failure keeps its cause.
@Suite struct GradientFileReadTests {
    let weights = try! Checkpoint.open(Fixtures.path("seqcnn_k2.h5")).weights.filter { $0.layerName == "c1" }
    /// The digest these files claim (any string: `read` compares it with the one it is given).
    let digest = "0123456789abcdef"

    /// Marks `root` as a gradient file taken on weights with `digest`.
    func mark(_ root: HDF5Group, digest: String) throws {
        try root.setAttribute(GradientFile.marker.0, string: GradientFile.marker.1)
        try root.setAttribute(GradientFile.digestAttribute, string: digest)
    }

    @Test func onlyGradientFilesOfTheseWeightsWithFiniteValues() throws {
        let scratch = try ScratchFolder()
        let model = Fixtures.path("seqcnn_k2.h5")
        #expect(message { _ = try GradientFile.read(model, for: weights, weightsDigest: digest) }
            == "\(model): is a model checkpoint, not a gradient file written by `gmtool grad`")
        let path = scratch.path("grads.h5")
        do {
            let root = try HDF5File.create(path).root
            _ = try root.createDataset("model_weights/c1/c1/kernel:0", shape: [3, 3, 3, 8], values: [Float](repeating: .nan, count: 216))
            _ = try root.createDataset("model_weights/c1/c1/bias:0", shape: [8], values: [Float](repeating: 0, count: 8))
        }
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) }
            == "\(path): is not a gradient file written by `gmtool grad` (no gmtool_gradients attribute)")
        do { try HDF5File.open(path, mode: .readWrite).root.setAttribute(GradientFile.marker.0, string: GradientFile.marker.1) }
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) }
            == "\(path): has no weights_digest attribute: write it again with this version's `gmtool grad`")
        do { try HDF5File.open(path, mode: .readWrite).root.setAttribute(GradientFile.digestAttribute, string: "fedcba9876543210") }
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) }
            == "\(path): was taken on other weights (weights digest fedcba9876543210, this model's is \(digest))")
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: "fedcba9876543210") }
            == "\(path): /model_weights/c1/c1/kernel:0: holds 216 of 216 values that are NaN or infinite")
    }


    @Test func theFileItselfIsNamedForWhatIsWrong() throws {
        let scratch = try ScratchFolder()
        #expect(message { _ = try GradientFile.read(scratch.url.path, for: weights, weightsDigest: digest) } == "\(scratch.url.path): is a directory, not a gradient file")
        let text = scratch.path("grads.h5")
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: text))
        #expect(message { _ = try GradientFile.read(text, for: weights, weightsDigest: digest) } == "\(text): is not an HDF5 file (or is truncated)")
        let empty = scratch.path("empty.h5")
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(message { _ = try GradientFile.read(empty, for: weights, weightsDigest: digest) } == "\(empty): is empty")
    }

    @Test func datasetsThatDoNotFitAreNamed() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("grads.h5")
        do {
            let root = try HDF5File.create(path).root
            try mark(root, digest: digest)
            _ = try root.createDataset("model_weights/c1/c1/kernel:0", shape: [27, 8], values: [Float](repeating: 0, count: 216))
        }
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) }
            == "\(path): /model_weights/c1/c1/kernel:0: shape (27, 8) differs from the weight's (3, 3, 3, 8)")
        do {
            let root = try HDF5File.open(path, mode: .readWrite).root
            try root.removeLink("model_weights/c1/c1/kernel:0")
            _ = try root.createDataset("model_weights/c1/c1/kernel:0", shape: [3, 3, 3, 8], values: [Int32](repeating: 0, count: 216))
        }
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) } == "\(path): /model_weights/c1/c1/kernel:0: is not floating point")
        do { try HDF5File.open(path, mode: .readWrite).root.removeLink("model_weights/c1/c1/kernel:0") }
        try declareDataset(in: path, at: "/model_weights/c1/c1/kernel:0", shape: [3, 3, 3, 8])
        #expect(message { _ = try GradientFile.read(path, for: weights, weightsDigest: digest) }
            == "\(path): /model_weights/c1/c1/kernel:0: cannot be read (declares 216 float32 values (864 bytes) but the file stores none of them)")
        #expect(message { _ = try GradientFile.read(path, for: weights.reversed(), weightsDigest: digest) }
            == "\(path): /model_weights/c1/c1/bias:0: missing: this gradient file was not made for this model")
    }
}
