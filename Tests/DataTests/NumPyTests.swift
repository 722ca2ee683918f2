import CIFAR
import Foundation
import Testing

private let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/data/numpy")
private func fixture(_ name: String) -> String { folder.appendingPathComponent(name).path }

/// Every image and label a source delivers, in order, with batches of `batch`.
private func read(_ source: ImageBatchSource, batch: Int = 3) throws -> (images: [Float], labels: [Int32]) {
    var images: [Float] = [], labels: [Int32] = []
    try source.forEachBatch(size: batch) { x, y, n in
        images.append(contentsOf: UnsafeBufferPointer(start: x, count: n * 5 * 6 * 3))
        labels.append(contentsOf: UnsafeBufferPointer(start: y, count: n))
    }
    return (images, labels)
}

/// make_numpy.py's model inputs, computed by Keras' preprocess_input (float32 NHWC).
private func expected(_ mode: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixture("expected_\(mode).f32")))
    return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

@Suite struct NumPyTests {
    /// Bit for bit: the reader applies the same float32 operations, in the same order, as Keras'
    /// NumPy preprocessing, so no tolerance is needed (compared as bit patterns).
    @Test(arguments: [("unit", InputScaling.unit), ("tf", .symmetric), ("torch", .torch), ("caffe", .caffe), ("raw", .raw)])
    func uint8ImagesEqualKerasPreprocessing(mode: String, scaling: InputScaling) throws {
        let source = try NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_i8.npy"), scaling: scaling)
        #expect(source.imageShape == [5, 6, 3])
        #expect(source.count == 4)
        let (images, labels) = try read(source)
        #expect(labels == [0, 2, 1, 2])
        #expect(images.map(\.bitPattern) == (try expected(mode)).map(\.bitPattern))
    }

    @Test func float32ChannelsFirstAndEveryLabelFormReadTheSame() throws {
        let reference = try read(NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_i8.npy"), scaling: .caffe))
        for (x, y, first) in [("x_f4.npy", "y_i4.npy", false), ("x_nchw.npy", "y_u1.npy", true), ("x_u8.npy", "y_onehot.npy", false)] {
            let source = try NumPyDataset(images: fixture(x), labels: fixture(y), channelsFirst: first, scaling: .caffe)
            let (images, labels) = try read(source, batch: 4)
            #expect(labels == reference.labels, "\(x) \(y)")
            #expect(images.map(\.bitPattern) == reference.images.map(\.bitPattern), "\(x) \(y)")
        }
        let oneHot = try NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_onehot.npy"), scaling: .unit)
        #expect(oneHot.requiredClasses == 3)
        #expect(oneHot.largestLabel == 2)
    }

    @Test func limitKeepsTheFirstImages() throws {
        let all = try read(NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_i8.npy"), scaling: .unit))
        let two = try read(NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_i8.npy"), limit: 2, scaling: .unit))
        #expect(two.labels == [0, 2])
        #expect(two.images == Array(all.images[0..<(2 * 90)]))
    }

    @Test(arguments: [
        ("bad_fortran.npy", "y_i8.npy", "bad_fortran.npy: is in Fortran order"),
        ("bad_f8.npy", "y_i8.npy", "bad_f8.npy: holds dtype '<f8'"),
        ("bad_truncated.npy", "y_i8.npy", "bad_truncated.npy: declares shape [4, 5, 6, 3] of |u1 (360 bytes) but holds 353 bytes"),
        ("bad_shape.npy", "y_i8.npy", "bad_shape.npy: has shape [4, 30, 3]"),
        ("x_u8.npy", "y_bad_count.npy", "y_bad_count.npy: has shape [3]"),
        ("y_i8.npy", "x_u8.npy", "y_i8.npy: holds <i8 images"),
        ("missing.npy", "y_i8.npy", "missing.npy: cannot be read"),
        ("expected_unit.f32", "y_i8.npy", "expected_unit.f32: is not a NumPy .npy file"),
    ])
    func badFilesAreOneLineNamingTheFile(images: String, labels: String, message: String) throws {
        do {
            _ = try NumPyDataset(images: fixture(images), labels: fixture(labels), scaling: .unit)
            Issue.record("\(images) \(labels) was accepted")
        } catch let error as DataError {
            #expect(String(describing: error).hasPrefix(fixture("")), "\(error)")
            #expect(String(describing: error).contains(message), "\(error)")
            #expect(!String(describing: error).contains("\n"))
        }
    }

    /// np.savez (stored members, read in place) and np.savez_compressed (deflated) give the
    /// same images and labels as the .npy pair, bit for bit.
    @Test func npzArchivesReadLikeTheNpyPair() throws {
        let reference = try read(NumPyDataset(images: fixture("x_u8.npy"), labels: fixture("y_i8.npy"), scaling: .torch))
        let stored = try NumPyDataset(npz: fixture("xy_stored.npz"), candidates: NumPyDataset.defaultArrayNames(split: "test"), scaling: .torch)
        let deflated = try NumPyDataset(npz: fixture("test_deflated.npz"), candidates: NumPyDataset.defaultArrayNames(split: "test"), scaling: .torch)
        for source in [stored, deflated] {
            let (images, labels) = try read(source)
            #expect(source.sourceFiles.count == 1)
            #expect(labels == reference.labels)
            #expect(images.map(\.bitPattern) == reference.images.map(\.bitPattern))
        }
        // Named arrays: the archive's training pair is its first two images.
        let train = try read(NumPyDataset(npz: fixture("test_deflated.npz"), names: ("x_train", "y_train"), scaling: .torch))
        #expect(train.labels == [0, 2])
        #expect(train.images == Array(reference.images[0..<(2 * 90)]))
    }

    @Test(arguments: [
        ("bad_names.npz", "bad_names.npz: has no arrays x/y or x_test/y_test (it holds images, labels); name them with --arrays"),
        ("bad_truncated.npz", "bad_truncated.npz: is not a valid NumPy .npz archive (no central directory; truncated?)"),
        ("x_u8.npy", "x_u8.npy: is not a valid NumPy .npz archive"),
    ])
    func badNpzIsOneLineNamingTheFile(file: String, message: String) throws {
        do {
            _ = try NumPyDataset(npz: fixture(file), candidates: NumPyDataset.defaultArrayNames(split: "test"), scaling: .unit)
            Issue.record("\(file) was accepted")
        } catch let error as DataError {
            #expect(String(describing: error).hasPrefix(fixture("")), "\(error)")
            #expect(String(describing: error).contains(message), "\(error)")
        }
    }

    @Test func npzMemberWithTheWrongDtypeNamesTheMember() throws {
        do {
            _ = try NumPyDataset(npz: fixture("test_deflated.npz"), names: ("y_test", "x_test"), scaling: .unit)
            Issue.record("accepted")
        } catch let error as DataError {
            #expect(String(describing: error).hasSuffix("test_deflated.npz: y_test.npy: has shape [4]; images are (N, height, width, channels)"), "\(error)")
        }
    }
}
