import Foundation
import MalformedFiles
import Testing
@testable import HDF5

/// A fresh temporary folder per test, removed afterwards.
final class ScratchFolder {
    let url: URL
    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-hdf5-test-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { url.appendingPathComponent(name).path }
    deinit { try? FileManager.default.removeItem(at: url) }
}

@Suite struct HDF5RoundTripTests {
    @Test func numericDatasetsRoundTripExactly() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("numbers.h5")
        let floats: [Float] = [0, -0.0, 1.5, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -3.25e-7]
        let doubles: [Double] = [1, 2, 3, 4, 5, 6.000000000000001]
        let bytes: [UInt8] = [0, 1, 255, 7]
        let ints: [Int64] = [Int64.min, -1, 0, Int64.max]
        do {
            let file = try HDF5File.create(path)
            let group = try file.root.createGroup("a/b")
            _ = try group.createDataset("floats", shape: [2, 3], values: floats)
            _ = try file.root.createDataset("doubles", shape: [6], values: doubles)
            _ = try file.root.createDataset("deep/er/bytes", shape: [2, 2], values: bytes,
                                            storage: HDF5StorageOptions(deflateLevel: 4, shuffle: true))
            _ = try file.root.createDataset("ints", shape: [4], values: ints)
        }
        let file = try HDF5File.open(path)
        let floatSet = try file.root.dataset("a/b/floats")
        #expect(floatSet.shape == [2, 3])
        #expect(floatSet.elementType == .float(bits: 32))
        let readFloats = try floatSet.read(as: Float.self)
        #expect(readFloats.map(\.bitPattern) == floats.map(\.bitPattern))
        #expect(try file.root.dataset("doubles").read(as: Double.self) == doubles)
        #expect(try file.root.dataset("deep/er/bytes").read(as: UInt8.self) == bytes)
        #expect(try file.root.dataset("ints").read(as: Int64.self) == ints)
        #expect(try file.root.dataset("ints").elementType == .integer(bits: 64, signed: true))
        #expect(try file.root.childNames() == ["a", "deep", "doubles", "ints"])
    }

    @Test func readsConvertToTheDestinationType() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("convert.h5")
        do {
            let file = try HDF5File.create(path)
            _ = try file.root.createDataset("d", shape: [3], values: [0.1, 2.5, -1e-3] as [Double])
            _ = try file.root.createDataset("i", shape: [2], values: [7, -9] as [Int32])
        }
        let file = try HDF5File.open(path)
        #expect(try file.root.dataset("d").read(as: Float.self) == [Float(0.1), 2.5, Float(-1e-3)])
        #expect(try file.root.dataset("i").read(as: Double.self) == [7, -9])
    }

    @Test func attributesOfEveryStringKindAndNumbers() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("attributes.h5")
        do {
            let file = try HDF5File.create(path)
            try file.root.setAttribute("single", string: "héllo {json}")
            try file.root.setAttribute("list", strings: ["conv1", "conv1_bn", ""])
            try file.root.setAttribute("numbers", values: [1.5, 2.5] as [Double])
            try file.root.setAttribute("scalar", values: [Int32(42)], scalar: true)
            try file.root.setAttribute("single", string: "replaced")
        }
        let file = try HDF5File.open(path)
        #expect(try file.root.attribute("single").readString() == "replaced")
        #expect(try file.root.attribute("list").readStrings() == ["conv1", "conv1_bn", ""])
        #expect(try file.root.attribute("list").elementType == .string(variableLength: true))
        #expect(try file.root.attribute("numbers").read(as: Double.self) == [1.5, 2.5])
        #expect(try file.root.attribute("scalar").shape == [])
        #expect(try file.root.attribute("scalar").read(as: Int64.self) == [42])
        #expect(Set(try file.root.attributeNames) == ["single", "list", "numbers", "scalar"])
        #expect(try file.root.hasAttribute("missing") == false)
    }

    @Test func fixedLengthStringsLoseTheirPadding() throws {
        // Older Keras 2 wrote layer_names as numpy "S" arrays: fixed-length, NUL padded.
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("fixtures/seqcnn_k2_weights_fixedlen.h5")
        let file = try HDF5File.open(url.path)
        let attribute = try file.root.attribute("layer_names")
        #expect(attribute.elementType == .string(variableLength: false))
        let names = try attribute.readStrings()
        #expect(names.count > 3)
        #expect(names.allSatisfy { !$0.contains("\0") && !$0.isEmpty })
    }
}

@Suite struct HDF5ErrorTests {
    @Test func openingSomethingThatIsNotHDF5Fails() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("text.h5")
        try Data("not hdf5 at all".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: HDF5Error.self) { try HDF5File.open(path) }
        do { _ = try HDF5File.open(path) } catch let error as HDF5Error {
            #expect(error.path == path)
            #expect(error.description == "\(path): cannot open file (not an HDF5 file)")
        }
        // The system's reason, not libhdf5's stack of driver errors.
        let missing = scratch.path("missing.h5")
        do {
            _ = try HDF5File.open(missing)
            Issue.record("expected an error")
        } catch let error as HDF5Error {
            #expect(error.description == "\(missing): cannot open file (No such file or directory)")
        }
    }

    @Test func missingObjectsNameTheirPath() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("small.h5")
        do { _ = try HDF5File.create(path).root.createGroup("g") }
        let file = try HDF5File.open(path)
        #expect(file.root.kind(of: "g") == .group)
        #expect(file.root.kind(of: "g/nothing/deeper") == nil)
        #expect(file.root.kind(of: "nope") == nil)
        do {
            _ = try file.root.dataset("g/weights")
            Issue.record("expected an error")
        } catch let error as HDF5Error {
            #expect(error.description == "\(path):/g/weights: cannot open dataset (no such dataset)")
        }
    }

    @Test func libraryFailuresCarryTheHDF5Stack() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("readonly.h5")
        do { _ = try HDF5File.create(path) }
        let file = try HDF5File.open(path, mode: .readOnly)
        do {
            _ = try file.root.createGroup("g")
            Issue.record("expected an error")
        } catch let error as HDF5Error {
            #expect(error.operation == "create group")
            #expect(!error.detail.isEmpty)
        }
    }

    @Test func readingStringsAsNumbersIsAnError() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("s.h5")
        do { try HDF5File.create(path).root.setAttribute("s", string: "x") }
        let file = try HDF5File.open(path)
        #expect(throws: HDF5Error.self) { try file.root.attribute("s").read(as: Double.self) }
    }
}

/// Declared sizes are checked before a read allocates (Sources/HDF5/Sizes.swift).
@Suite struct HDF5SizeTests {
    /// An empty HDF5 file with `body` run on its path.
    func file(_ scratch: ScratchFolder, _ body: (String) throws -> Void) throws -> HDF5File {
        let path = scratch.path("declared.h5")
        do { _ = try HDF5File.create(path) }
        try body(path)
        return try HDF5File.open(path)
    }

    func readError(_ dataset: HDF5Dataset) -> String? {
        do { _ = try dataset.read(as: Float.self) } catch let error as HDF5Error { return error.description } catch { return "\(error)" }
        return nil
    }

    @Test func aShapeBeyondMemoryIsRefusedBeforeAllocating() throws {
        let scratch = try ScratchFolder()
        let file = try file(scratch) { try declareDataset(in: $0, at: "w", shape: [3, 1 << 40]) }
        let dataset = try file.root.dataset("w")
        #expect(dataset.elementCount == 3 << 40)
        #expect(readError(dataset) == "\(file.path):/w: cannot read dataset (declares 3298534883328 float32 values (12.0 TiB), more than this machine's \(describeBytes(MachineMemory.bytes)) of memory)")
        // Reading as bytes needs a quarter of the memory, still too much.
        #expect(throws: HDF5Error.self) { try dataset.read(as: UInt8.self) }
    }

    @Test func aShapeTheFileNeverStoredIsRefused() throws {
        let scratch = try ScratchFolder()
        let file = try file(scratch) { path in
            try declareDataset(in: path, at: "never", shape: [1 << 24])
            try declareDataset(in: path, at: "partly", shape: [1 << 24], writtenElements: 1024)
            try declareDataset(in: path, at: "compressed", shape: [1 << 24], deflate: true, writtenElements: 1024)
        }
        #expect(readError(try file.root.dataset("never")) == "\(file.path):/never: cannot read dataset (declares 16777216 float32 values (64.0 MiB) but the file stores none of them)")
        #expect(readError(try file.root.dataset("partly")) == "\(file.path):/partly: cannot read dataset (declares 16777216 float32 values (64.0 MiB) but the file stores only 4.0 KiB for it)")
        let compressed = try file.root.dataset("compressed")
        let stored = compressed.storageSize
        #expect(readError(compressed) == "\(file.path):/compressed: cannot read dataset (declares 16777216 float32 values (64.0 MiB) but its \(describeBytes(stored)) of compressed data inflate to at most \(describeBytes(stored * 1032)))")
    }

    @Test func aShapeWhoseElementCountOverflowsIsRefusedAtOpen() throws {
        let scratch = try ScratchFolder()
        let file = try file(scratch) { try declareDataset(in: $0, at: "x", shape: [1 << 32, 1 << 32, 1 << 32]) }
        do {
            _ = try file.root.dataset("x")
            Issue.record("expected an error")
        } catch let error as HDF5Error {
            #expect(error.description == "\(file.path):/x: cannot read dataspace (shape (4294967296, 4294967296, 4294967296) has more elements than a 64-bit count holds)")
        }
    }

    @Test func dataStoredOutsideTheFileIsRefused() throws {
        let scratch = try ScratchFolder()
        let outside = scratch.path("outside.raw")
        try Data(count: 64).write(to: URL(fileURLWithPath: outside))
        let file = try file(scratch) { try declareDataset(in: $0, at: "x", shape: [16], external: outside) }
        #expect(readError(try file.root.dataset("x")) == "\(file.path):/x: cannot read dataset (its data lives outside this file (external storage), which gmtool does not follow)")
    }

    @Test func writtenDatasetsStillRead() throws {
        let scratch = try ScratchFolder()
        let path = scratch.path("ok.h5")
        let values = (0..<5000).map { Float($0 % 7) }
        do {
            let root = try HDF5File.create(path).root
            _ = try root.createDataset("plain", shape: [50, 100], values: values)
            _ = try root.createDataset("packed", shape: [50, 100], values: values, storage: HDF5StorageOptions(deflateLevel: 9, shuffle: true))
            _ = try root.createDataset("empty", shape: [0, 3], values: [Float]())
        }
        let root = try HDF5File.open(path).root
        #expect(try root.dataset("plain").read(as: Float.self) == values)
        #expect(try root.dataset("packed").read(as: Float.self) == values)
        #expect(try root.dataset("empty").read(as: Float.self).isEmpty)
    }

    @Test func sizeArithmetic() {
        #expect(checkedProduct([3, 3, 3, 1 << 40]) == 27 << 40)
        #expect(checkedProduct([1 << 32, 1 << 32]) == nil)
        #expect(checkedProduct([-1, 3]) == nil)
        #expect(checkedProduct([]) == 1)
        #expect(describeBytes(1) == "1 byte")
        #expect(describeBytes(1023) == "1023 bytes")
        #expect(describeBytes(22 * 1024 + 100) == "22.1 KiB")
        #expect(describeBytes(16 << 40) == "16.0 TiB")
        #expect(MachineMemory.problem(count: 1 << 62, elementSize: 4, noun: "float32 values")
            == "declares 4611686018427387904 float32 values (more than 8.0 EiB), more than this machine's \(describeBytes(MachineMemory.bytes)) of memory")
        #expect(MachineMemory.problem(count: 1000, elementSize: 4, noun: "float32 values") == nil)
    }
}
