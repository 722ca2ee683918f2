@testable import CIFAR
import Foundation
import Testing

private let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/data/cifar-python")
private func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

/// Every image (raw 0-255 floats, NHWC) and label a source delivers.
private func read(_ source: ImageBatchSource) throws -> (images: [Float], labels: [Int32]) {
    var images: [Float] = [], labels: [Int32] = []
    try source.forEachBatch(size: 3) { x, y, n in
        images.append(contentsOf: UnsafeBufferPointer(start: x, count: n * 3072))
        labels.append(contentsOf: UnsafeBufferPointer(start: y, count: n))
    }
    return (images, labels)
}

/// What keras.datasets' cifar.load_batch read from the same file (make_cifar_python.py).
private func expected(_ name: String) throws -> (images: [Float], labels: [Int32]) {
    let x = try NumPyDataset(images: fixture("expected_\(name)_x.npy"), labels: fixture("expected_\(name)_y.npy"), scaling: .raw)
    return try read(x)
}

@Suite struct CIFARPythonTests {
    /// The pixel bytes and labels equal keras' load_batch's exactly (raw scaling: the bytes as floats).
    @Test(arguments: [
        ("cifar-10-batches-py", CIFARDataset.Split.test, "test_batch", CIFARVariant?.none),
        ("cifar-10-batches-py", .validation, "data_batch_5", nil),
        ("cifar-100-python", .test, "test_fine", nil),
        ("cifar-100-python", .test, "test_coarse", .cifar100(fine: false)),
        ("test_batch_protocol4", .test, "test_batch", nil),
        ("cifar-10-batches-py/test_batch", .test, "test_batch", .cifar10),
    ])
    func batchesEqualKerasLoadBatch(path: String, split: CIFARDataset.Split, name: String, variant: CIFARVariant?) throws {
        let source = try CIFARPythonDataset(paths: [fixture(path)], split: split, variant: variant, scaling: .raw)
        let (images, labels) = try read(source)
        let reference = try expected(name)
        #expect(labels == reference.labels)
        #expect(images == reference.images)
        #expect(source.requiredClasses == (name.hasSuffix("coarse") ? 20 : name.hasSuffix("fine") ? 100 : 10))
    }

    @Test func trainSplitIsBatchesOneToFourAndLimitCuts() throws {
        let train = try CIFARPythonDataset(paths: [fixture("cifar-10-batches-py")], split: .train, scaling: .unit)
        #expect(train.count == 8)
        #expect(train.files.map { ($0.path as NSString).lastPathComponent } == (1...4).map { "data_batch_\($0)" })
        let limited = try CIFARPythonDataset(paths: [fixture("cifar-10-batches-py")], split: .train, limit: 3, scaling: .unit)
        #expect(limited.count == 3)
        #expect(limited.files.count == 2)
    }

    @Test(arguments: [
        ("not_a_batch", CIFARVariant?.none, "not_a_batch: is a pickle but not a CIFAR batch (no 'data' entry; it holds 'labels')"),
        ("unsafe", nil, "unsafe: is a pickle that refers to os.system, which a CIFAR batch does not"),
        ("expected_test_batch_x.npy", nil, "expected_test_batch_x.npy: is not a pickle"),
        ("cifar-10-batches-py/batches.meta", nil, "batches.meta: is a pickle but not a CIFAR batch (no 'data' entry"),
        ("cifar-100-python/test", .cifar10, "cifar-100-python/test: is a CIFAR-100 batch, not CIFAR-10"),
    ])
    func notCIFARBatchesAreOneLineNamingTheFile(file: String, variant: CIFARVariant?, message: String) throws {
        do {
            _ = try CIFARPythonDataset(paths: [fixture(file)], variant: variant, scaling: .unit)
            Issue.record("\(file) was accepted")
        } catch let error as DataError {
            #expect(String(describing: error).contains(message), "\(error)")
            #expect(!String(describing: error).contains("\n"))
        }
    }

    @Test func truncatedPickleIsRefused() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("cifar-10-batches-py/test_batch")))
        let cut = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-cut-\(UUID().uuidString)")
        try data.prefix(data.count / 2).write(to: cut)
        defer { try? FileManager.default.removeItem(at: cut) }
        #expect(throws: DataError.self) { _ = try CIFARPythonDataset(paths: [cut.path], scaling: .unit) }
        do { _ = try CIFARPythonDataset(paths: [cut.path], scaling: .unit) } catch {
            #expect(String(describing: error).contains("is a truncated pickle"), "\(error)")
        }
    }

    /// CIFAR-100 binary records (coarse, fine, 3072 pixels) give the same images as the python
    /// batch they were written from, with either label.
    @Test func cifar100BinaryMatchesThePythonBatch() throws {
        let python = try CIFARPythonDataset(paths: [fixture("cifar-100-python/test")], scaling: .raw)
        let fine = try expected("test_fine"), coarse = try expected("test_coarse")
        var records: [UInt8] = []
        let data = try Data(contentsOf: URL(fileURLWithPath: fixture("cifar-100-python/test")))
        let batch = try PickleReader.parse([UInt8](data), file: "test")
        guard case .array(_, _, _, let pixels) = batch["data"]! else { Issue.record("no data"); return }
        for i in 0..<4 {
            records += [UInt8(coarse.labels[i]), UInt8(fine.labels[i])] + pixels[(i * 3072)..<((i + 1) * 3072)]
        }
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-c100-\(UUID().uuidString).bin")
        try Data(records).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        let binaryFine = try read(CIFARDataset(paths: [file.path], variant: .cifar100(fine: true), scaling: .raw))
        let binaryCoarse = try read(CIFARDataset(paths: [file.path], variant: .cifar100(fine: false), scaling: .raw))
        #expect(binaryFine.labels == fine.labels)
        #expect(binaryCoarse.labels == coarse.labels)
        #expect(binaryFine.images == (try read(python)).images)
        #expect(binaryFine.images == fine.images)
    }
}
