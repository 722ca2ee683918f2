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
}

/// `gmtool grad` files: every failure keeps its cause.
@Suite struct GradientFileReadTests {
    let weights = try! Checkpoint.open(Fixtures.path("seqcnn_k2.h5")).weights.filter { $0.layerName == "c1" }

    @Test func theFileItselfIsNamedForWhatIsWrong() throws {
        let scratch = try ScratchFolder()
        #expect(message { _ = try GradientFile.read(scratch.url.path, for: weights) } == "\(scratch.url.path): is a directory, not a gradient file")
        let text = scratch.path("grads.h5")
        try Data("not hdf5".utf8).write(to: URL(fileURLWithPath: text))
        #expect(message { _ = try GradientFile.read(text, for: weights) } == "\(text): is not an HDF5 file (or is truncated)")
        let empty = scratch.path("empty.h5")
        try Data().write(to: URL(fileURLWithPath: empty))
        #expect(message { _ = try GradientFile.read(empty, for: weights) } == "\(empty): is empty")
    }

    @Test func datasetsThatDoNotFitAreNamed() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("grads.h5")
        do {
            let root = try HDF5File.create(path).root
            _ = try root.createDataset("model_weights/c1/c1/kernel:0", shape: [27, 8], values: [Float](repeating: 0, count: 216))
        }
        #expect(message { _ = try GradientFile.read(path, for: weights) }
            == "\(path): /model_weights/c1/c1/kernel:0: shape (27, 8) differs from the weight's (3, 3, 3, 8)")
        do {
            let root = try HDF5File.open(path, mode: .readWrite).root
            try root.removeLink("model_weights/c1/c1/kernel:0")
            _ = try root.createDataset("model_weights/c1/c1/kernel:0", shape: [3, 3, 3, 8], values: [Int32](repeating: 0, count: 216))
        }
        #expect(message { _ = try GradientFile.read(path, for: weights) } == "\(path): /model_weights/c1/c1/kernel:0: is not floating point")
        do { try HDF5File.open(path, mode: .readWrite).root.removeLink("model_weights/c1/c1/kernel:0") }
        try declareDataset(in: path, at: "/model_weights/c1/c1/kernel:0", shape: [3, 3, 3, 8])
        #expect(message { _ = try GradientFile.read(path, for: weights) }
            == "\(path): /model_weights/c1/c1/kernel:0: cannot be read (declares 216 float32 values (864 bytes) but the file stores none of them)")
        #expect(message { _ = try GradientFile.read(path, for: weights.reversed()) }
            == "\(path): /model_weights/c1/c1/bias:0: missing: this gradient file was not made for this model")
    }
}
