@testable import CIFAR
import Foundation
import Testing

private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("fixtures/data/images")
private func fixture(_ name: String) -> String { root.appendingPathComponent(name).path }

/// A float32 .npy array written by make_images.py (Keras' output).
private func npyFloats(_ name: String) throws -> [Float] {
    let data = try Data(contentsOf: URL(fileURLWithPath: fixture(name)))
    let headerLength = Int(data[8]) | Int(data[9]) << 8
    return data.dropFirst(10 + headerLength).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
}

private func read(_ source: ImageBatchSource, floats: Int) throws -> (images: [Float], labels: [Int32]) {
    var images: [Float] = [], labels: [Int32] = []
    try source.forEachBatch(size: 3) { x, y, n in
        images.append(contentsOf: UnsafeBufferPointer(start: x, count: n * floats))
        labels.append(contentsOf: UnsafeBufferPointer(start: y, count: n))
    }
    return (images, labels)
}

@Suite struct ImageFolderTests {
    /// The files, in Keras' order: classes by code point (Dog < bird_2 < cat), nested folders
    /// walked, .txt and dot-folders skipped.
    @Test func filesAndClassesInKerasOrder() throws {
        let folder = try ImageFolderDataset(folder: fixture("folder"), scaling: .raw)
        #expect(folder.classNames == ["Dog", "bird_2", "cat"])
        let relative = folder.images.map { String($0.path.dropFirst(fixture("folder").count + 1)) }
        #expect(relative == ["Dog/a.png", "Dog/b.jpg", "Dog/sub/c.png", "bird_2/x.png", "bird_2/y.PNG", "bird_2/z.jpeg", "cat/m.png", "cat/n.jpg"])
        #expect(folder.images.map(\.label) == [0, 0, 0, 1, 1, 1, 2, 2])
    }

    /// gmtool's decode + resize against image_dataset_from_directory's (tf.image.resize
    /// bilinear). PNG is lossless and the resize does TensorFlow's float32 operations in its
    /// order, so PNG images must be equal bit for bit (palette, RGBA, gray+alpha, gray<->RGB
    /// included). JPEG decoders may differ by their IDCT: both use libjpeg-turbo's fast integer
    /// IDCT, but TensorFlow bundles its own build, and that IDCT's results are only documented
    /// to within 1-2 levels of the exact one, so JPEG pixels are allowed 2 levels (0-255) after
    /// resizing (a convex combination keeps the bound). Measured on these fixtures: 0 for all.
    @Test(arguments: [("rgb", 3, false), ("crop", 3, true), ("gray", 1, false)])
    func pixelsEqualKeras(name: String, channels: Int, crop: Bool) throws {
        let folder = try ImageFolderDataset(folder: fixture("folder"), cropToAspectRatio: crop, scaling: .raw)
        folder.resize(to: 6, 8, channels: channels)
        let floats = 6 * 8 * channels
        let (images, labels) = try read(folder, floats: floats)
        let expected = try npyFloats("expected_\(name).npy")
        #expect(images.count == expected.count)
        #expect(labels == [0, 0, 0, 1, 1, 1, 2, 2])
        for (i, image) in folder.images.enumerated() {
            let jpeg = image.path.hasSuffix("jpg") || image.path.hasSuffix("jpeg")
            var worst: Float = 0
            for k in 0..<floats { worst = max(worst, abs(images[i * floats + k] - expected[i * floats + k])) }
            let allowed: Float = jpeg ? 2 : 0
            #expect(worst <= allowed, "\(image.path): worst difference \(worst)")
        }
    }

    /// Keras' validation_split with seed 1337: the files each subset holds (its shuffle of the
    /// file list is NumPy's RandomState(1337).shuffle).
    @Test func validationSplitHoldsTheFilesKerasHolds() throws {
        let expected = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture("expected_split.json")))) as? [String: [String]]
        for subset in ["training", "validation"] {
            let folder = try ImageFolderDataset(folder: fixture("folder"), split: (0.25, subset == "validation", 1337), scaling: .raw)
            let relative = folder.images.map { String($0.path.dropFirst(fixture("folder").count + 1)) }
            #expect(relative == expected?[subset], "\(subset)")
        }
    }

    /// numpy.random.RandomState(5489).randint(0, 2**32) draws and RandomState(7).shuffle(arange(10)).
    @Test func mersenneTwisterIsNumPys() {
        var random = MersenneTwister(seed: 5489)
        #expect(random.next() == 3_499_211_612)  // MT19937's reference first output for seed 5489
        var items = Array(0..<10)
        random = MersenneTwister(seed: 7)
        random.shuffle(&items)
        #expect(items == [8, 5, 0, 2, 1, 9, 7, 3, 6, 4])
    }

    @Test func badFoldersAndFilesAreOneLineNamingTheFile() throws {
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-images-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: scratch) }
        let manager = FileManager.default
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "accepted" } catch { return String(describing: error) }
        }
        // An empty class folder.
        try manager.createDirectory(at: scratch.appendingPathComponent("a"), withIntermediateDirectories: true)
        try manager.createDirectory(at: scratch.appendingPathComponent("b"), withIntermediateDirectories: true)
        try manager.copyItem(atPath: fixture("folder/Dog/a.png"), toPath: scratch.appendingPathComponent("a/1.png").path)
        #expect(message { _ = try ImageFolderDataset(folder: scratch.path, scaling: .unit) }
                == "\(scratch.path)/b: is an empty class folder (no .png, .jpg or .jpeg images)")
        // Mixed sizes without a resize target: the second image named with its index.
        try manager.copyItem(atPath: fixture("folder/cat/m.png"), toPath: scratch.appendingPathComponent("b/2.png").path)
        let mixed = try ImageFolderDataset(folder: scratch.path, scaling: .unit)
        #expect(message { _ = try read(mixed, floats: 105) }.hasPrefix("\(scratch.path)/b/2.png: (image 1) is 6x5, the first image 7x5"))
        // Truncated PNG and JPEG, a file that is neither.
        let png = try Data(contentsOf: URL(fileURLWithPath: fixture("folder/Dog/a.png")))
        try png.prefix(png.count - 20).write(to: scratch.appendingPathComponent("b/2.png"))
        #expect(message { _ = try read(try ImageFolderDataset(folder: scratch.path, scaling: .unit), floats: 105) }
                .hasPrefix("\(scratch.path)/b/2.png: (image 1) corrupt PNG"))
        let jpeg = try Data(contentsOf: URL(fileURLWithPath: fixture("folder/cat/n.jpg")))
        try manager.removeItem(at: scratch.appendingPathComponent("b/2.png"))
        try jpeg.prefix(jpeg.count - 30).write(to: scratch.appendingPathComponent("b/3.jpg"))
        let truncated = try ImageFolderDataset(folder: scratch.path, scaling: .unit)
        truncated.resize(to: 5, 7, channels: 3)
        #expect(message { _ = try read(truncated, floats: 105) } == "\(scratch.path)/b/3.jpg: (image 1) is a truncated JPEG (its data ends early)")
        try Data("hello".utf8).write(to: scratch.appendingPathComponent("b/3.jpg"))
        #expect(message { _ = try read(truncated, floats: 105) } == "\(scratch.path)/b/3.jpg: (image 1) is neither a PNG nor a JPEG")
        try Data("GIF89a".utf8).write(to: scratch.appendingPathComponent("b/4.gif"))
        #expect(message { _ = try ImageFolderDataset(folder: scratch.path, scaling: .unit) }
                == "\(scratch.path)/b/4.gif: is a gif image, which Keras reads and gmtool does not (PNG and JPEG only)")
        #expect(message { _ = try ImageFolderDataset(folder: fixture("folder/Dog/sub"), scaling: .unit) }.hasSuffix("has no class subfolders (an image folder holds one subfolder of images per class)"))
    }

    /// The resize on its own against values worked by hand from TensorFlow's formula: 2x2 -> 3x3.
    @Test func bilinearHalfPixelCentres() {
        let pixels: [UInt8] = [0, 100, 200, 50]
        var out = [Float](repeating: 0, count: 9)
        pixels.withUnsafeBufferPointer { resizeBilinear($0.baseAddress!, rowStride: 2, top: 0, left: 0, height: 2, width: 2, channels: 1, to: &out, 3, 3) }
        // scale 2/3: sources -1/6 (clamped to row 0, lerp 5/6 of floor -1... floor(-1/6) = -1 -> lower 0, upper 0), 1/2, 7/6 -> (1, 1).
        let s0: Float = (0.5 * (Float(2) / 3)) - 0.5, s1: Float = (1.5 * (Float(2) / 3)) - 0.5
        let lerp0 = s0 - s0.rounded(.down), lerp1 = s1 - s1.rounded(.down)
        #expect(lerp0 > 0.8 && lerp1 == 0.5)
        // Corners: all four weights on one pixel.
        #expect(out[0] == 0 && out[2] == 100 && out[6] == 200 && out[8] == 50)
        // Centre: the mean of the four, as two lerps at 0.5.
        #expect(out[4] == (0 + (100 - 0) * 0.5) + ((200 + (50 - 200) * 0.5) - (0 + (100 - 0) * 0.5)) * 0.5)
    }
}
