import CImageDecode
import Dispatch
import Foundation
import NeuralKernels

/// A folder of images, one subfolder per class, read as keras.utils.image_dataset_from_directory
/// reads it: class names sorted (Python's sorted(), by code point), each class's files found by
/// walking its subfolder (folders in sorted order, files sorted within each), labels the class
/// indices. PNG and JPEG are decoded by libpng and libjpeg-turbo with TensorFlow's conversions,
/// then resized as tf.image.resize(..., "bilinear") does (half-pixel centres, no antialiasing),
/// optionally after Keras' crop to the target's aspect ratio. Images are decoded as each batch
/// needs them, on every core, so memory is flat in the number of images.
public final class ImageFolderDataset: ImageDataset, TrainingImageSource, @unchecked Sendable {
    public let folder: String
    public let classNames: [String]
    /// Every image and its label, in Keras' order (after any validation split).
    public let images: [(path: String, label: Int32)]
    public let scaling: InputScaling
    public let cropToAspectRatio: Bool
    public private(set) var imageShape: [Int]
    /// Whether images are resized (a model with a fixed input size sets the target).
    public private(set) var resizes: Bool
    private let workers: Int

    public var count: Int { images.count }
    public var files: [(path: String, records: Int)] { [(folder, images.count)] }
    public var sourceFiles: [String] { [folder] }
    public var requiredClasses: Int? { nil }
    public var largestLabel: Int { classNames.count - 1 }
    public var imageFloats: Int { imageShape.reduce(1, *) }

    /// The extensions Keras lists for image folders; gmtool decodes the PNG and JPEG ones and
    /// refuses the others by name rather than skip images Keras would read.
    static let kerasFormats = [".bmp", ".gif", ".jpeg", ".jpg", ".png"]
    static let decoded = [".jpeg", ".jpg", ".png"]
    /// The most bytes one decoded image may take (a 16384x16384 RGB image).
    static let maxImageBytes = 16384 * 16384 * 3

    /// `split`: Keras' validation split (fraction, which subset, seed). `channels` 1 or 3
    /// (Keras' color_mode grayscale/rgb); the size is the first image's until `resize(to:)`.
    public init(folder: String, channels: Int = 3, split: (fraction: Double, validation: Bool, seed: UInt32)? = nil,
                cropToAspectRatio: Bool = false, limit: Int? = nil, scaling: InputScaling, workers: Int? = nil) throws {
        self.folder = folder
        let manager = FileManager.default
        let subfolders = ((try? manager.contentsOfDirectory(atPath: folder)) ?? []).filter {
            var isDirectory: ObjCBool = false
            // Keras skips class folders whose names start with a dot.
            return !$0.hasPrefix(".") && manager.fileExists(atPath: (folder as NSString).appendingPathComponent($0), isDirectory: &isDirectory) && isDirectory.boolValue
        }.sorted(by: Self.pythonOrder)
        guard !subfolders.isEmpty else {
            throw DataError(file: folder, problem: "has no class subfolders (an image folder holds one subfolder of images per class)")
        }
        var all: [(String, Int32)] = []
        for (label, name) in subfolders.enumerated() {
            let files = try Self.imageFiles(in: (folder as NSString).appendingPathComponent(name))
            guard !files.isEmpty else {
                throw DataError(file: (folder as NSString).appendingPathComponent(name), problem: "is an empty class folder (no .png, .jpg or .jpeg images)")
            }
            all += files.map { ($0, Int32(label)) }
        }
        if let split {
            // Keras' index_directory shuffles paths and labels with the same seed, then
            // get_training_or_validation_split keeps the last int(fraction * n) for validation.
            var paths = all.map(\.0), labels = all.map(\.1)
            var random = MersenneTwister(seed: split.seed)
            random.shuffle(&paths)
            random = MersenneTwister(seed: split.seed)
            random.shuffle(&labels)
            let validationCount = Int(split.fraction * Double(all.count))
            let kept = split.validation ? (all.count - validationCount)..<all.count : 0..<(all.count - validationCount)
            guard !kept.isEmpty else {
                throw DataError(file: folder, problem: "a validation split of \(split.fraction) of \(all.count) images leaves no \(split.validation ? "validation" : "training") images")
            }
            all = kept.map { (paths[$0], labels[$0]) }
        }
        if let limit { all = Array(all.prefix(limit)) }
        images = all
        classNames = subfolders
        self.scaling = scaling
        self.cropToAspectRatio = cropToAspectRatio
        self.workers = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        let (w, h) = try Self.size(of: all[0].0, index: 0)
        imageShape = [h, w, channels]
        resizes = false
    }

    /// Resize every image to `height` x `width` with `channels` (the model's input) from now on.
    public func resize(to height: Int, _ width: Int, channels: Int) {
        imageShape = [height, width, channels]
        resizes = true
    }

    /// Python's sorted() on str: by Unicode code point.
    static func pythonOrder(_ a: String, _ b: String) -> Bool { Array(a.unicodeScalars.map(\.value)).lexicographicallyPrecedes(b.unicodeScalars.map(\.value)) }

    /// The images under `folder` in Keras' order: os.walk's folders sorted by path, files sorted
    /// within each, kept when the lowercased name ends in one of Keras' image extensions.
    static func imageFiles(in folder: String) throws -> [String] {
        var folders = [folder], found: [String] = []
        var index = 0
        while index < folders.count {
            let current = folders[index]
            index += 1
            var files: [String] = []
            for name in ((try? FileManager.default.contentsOfDirectory(atPath: current)) ?? []) {
                let path = (current as NSString).appendingPathComponent(name)
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
                if isDirectory.boolValue { folders.append(path) } else { files.append(name) }
            }
            for name in files.sorted(by: pythonOrder) {
                let lower = name.lowercased()
                guard kerasFormats.contains(where: { lower.hasSuffix($0) }) else { continue }
                let path = (current as NSString).appendingPathComponent(name)
                guard decoded.contains(where: { lower.hasSuffix($0) }) else {
                    throw DataError(file: path, problem: "is a \(lower.split(separator: ".").last ?? "") image, which Keras reads and gmtool does not (PNG and JPEG only)")
                }
                found.append(path)
            }
            // os.walk, sorted by folder path (Keras sorts the walk's tuples by root).
            folders[index...].sort(by: pythonOrder)
        }
        return found
    }

    /// The NUL-terminated message the C decoder wrote into `buffer`.
    static func cMessage(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    static func read(_ path: String, index: Int) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError(file: path, problem: "(image \(index)) cannot be read") }
        return data
    }

    static func size(of path: String, index: Int) throws -> (Int, Int) {
        let data = try read(path, index: index)
        var w: Int32 = 0, h: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes { gm_image_size($0.bindMemory(to: UInt8.self).baseAddress, data.count, &w, &h, &message, 256) }
        guard status == 0 else { throw DataError(file: path, problem: "(image \(index)) \(cMessage(message))") }
        return (Int(w), Int(h))
    }

    /// Image `index` decoded and resized: raw 0-255 floats, HWC with the dataset's channels.
    func decode(_ index: Int, into out: UnsafeMutablePointer<Float>) throws {
        let path = images[index].path
        let data = try Self.read(path, index: index)
        let channels = imageShape[2]
        var w: Int32 = 0, h: Int32 = 0
        var pixels: UnsafeMutablePointer<UInt8>?
        var message = [CChar](repeating: 0, count: 256)
        let status = data.withUnsafeBytes {
            gm_decode_image($0.bindMemory(to: UInt8.self).baseAddress, data.count, Int32(channels), Self.maxImageBytes, &w, &h, &pixels, &message, 256)
        }
        guard status == 0, let pixels else { throw DataError(file: path, problem: "(image \(index)) \(Self.cMessage(message))") }
        defer { gm_free_pixels(pixels) }
        let (height, width) = (Int(h), Int(w))
        let (targetHeight, targetWidth) = (imageShape[0], imageShape[1])
        guard resizes || (height == targetHeight && width == targetWidth) else {
            throw DataError(file: path, problem: "(image \(index)) is \(width)x\(height), the first image \(targetWidth)x\(targetHeight); images of mixed sizes need a model with a fixed input size to be resized to")
        }
        var crop = (top: 0, left: 0, height: height, width: width)
        if cropToAspectRatio {
            // Keras' smart_resize in graph mode: float32 products and quotients cast to int32.
            crop = aspectRatioCrop(height: height, width: width, targetHeight: targetHeight, targetWidth: targetWidth)
        }
        resizeBilinear(pixels, rowStride: width * channels, top: crop.top, left: crop.left, height: crop.height, width: crop.width,
                       channels: channels, to: out, targetHeight, targetWidth)
    }

    /// Decodes images `indices` into consecutive slots of `out`, scaled, on every worker.
    private func decodeBatch(_ indices: [Int], into out: UnsafeMutablePointer<Float>) throws {
        let floats = imageFloats, c = imageShape[2]
        let sources = (0..<c).map { scaling.sourceChannel($0, of: c) }
        let failures = FailureBox()
        let outAddress = UInt(bitPattern: out)
        DispatchQueue.concurrentPerform(iterations: min(workers, indices.count)) { worker in
            var raw = [Float](repeating: 0, count: floats)
            var slot = worker
            while slot < indices.count {
                do {
                    try raw.withUnsafeMutableBufferPointer { try decode(indices[slot], into: $0.baseAddress!) }
                    let destination = UnsafeMutablePointer<Float>(bitPattern: outAddress)! + slot * floats
                    for p in 0..<(floats / c) {
                        for k in 0..<c { destination[p * c + k] = scaling.value(raw[p * c + sources[k]], channel: k) }
                    }
                } catch {
                    failures.record(slot, error)
                }
                slot += min(workers, indices.count)
            }
        }
        if let error = failures.first { throw error }
    }

    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        try forEachBatch(size: size, from: 0, body)
    }

    /// The files are listed: the images before `first` are not decoded.
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(first >= 0 && first % size == 0, "batches must start on a batch boundary")
        let size = max(1, min(size, count))
        var batch = [Float](repeating: 0, count: size * imageFloats)
        var labels = [Int32](repeating: 0, count: size)
        var start = first
        while start < count {
            let n = min(size, count - start)
            try batch.withUnsafeMutableBufferPointer { try decodeBatch(Array(start..<(start + n)), into: $0.baseAddress!) }
            for i in 0..<n { labels[i] = images[start + i].label }
            try body(batch, labels, n)
            start += n
        }
    }

    /// Training batches: decoded, then CIFAR's augmentation (a crop of the 4-pixel reflect-padded
    /// image at a random offset, a flip with probability 1/2; the draws in the same order).
    /// A file that fails to decode here stops the process with its one line: the protocol has no
    /// error path, and every image was decodable when training began only if it was checked.
    public func fill(indices: ArraySlice<Int>, images out: UnsafeMutablePointer<Float>, labels outLabels: UnsafeMutablePointer<Int32>,
                     augment: Bool, random: inout SplitMix64) {
        let (h, w, c) = (imageShape[0], imageShape[1], imageShape[2])
        let floats = h * w * c
        var decoded = [Float](repeating: 0, count: indices.count * floats)
        do {
            try decoded.withUnsafeMutableBufferPointer { try decodeBatch(Array(indices), into: $0.baseAddress!) }
        } catch {
            FileHandle.standardError.write(Data("gmtool: error: \(error)\n".utf8))
            exit(1)
        }
        func reflect(_ i: Int, _ n: Int) -> Int { i < 0 ? min(-i, n - 1) : (i > n - 1 ? max(2 * (n - 1) - i, 0) : i) }
        for (slot, image) in indices.enumerated() {
            outLabels[slot] = images[image].label
            let (dx, dy, flip) = cropAndFlip(augment: augment, random: &random)
            let source = slot * floats, destination = out + slot * floats
            for y in 0..<h {
                let sy = reflect(y + dy - 4, h)
                for x in 0..<w {
                    let sx = reflect(x + dx - 4, w)
                    let tx = flip ? w - 1 - x : x
                    for k in 0..<c { destination[(y * w + tx) * c + k] = decoded[source + (sy * w + sx) * c + k] }
                }
            }
        }
    }
}

/// The first error by slot among the workers'.
private final class FailureBox: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [(Int, Error)] = []
    func record(_ slot: Int, _ error: Error) { lock.lock(); errors.append((slot, error)); lock.unlock() }
    var first: Error? { errors.min { $0.0 < $1.0 }?.1 }
}

/// tf.image.resize(image, (outHeight, outWidth), "bilinear") with antialias=False (NeuralKernels'
/// `resizeBilinear`, which the Resizing layer runs too) of the crop of `pixels` at (top, left) of
/// height x width; the output raw floats HWC.
func resizeBilinear(_ pixels: UnsafePointer<UInt8>, rowStride: Int, top: Int, left: Int, height: Int, width: Int, channels c: Int,
                    to out: UnsafeMutablePointer<Float>, _ outHeight: Int, _ outWidth: Int) {
    NeuralKernels.resizeBilinear(height: height, width: width, channels: c, output: out, outHeight: outHeight, outWidth: outWidth) { y, x, k in
        Float(pixels[(top + y) * rowStride + (left + x) * c + k])
    }
}

/// NumPy's legacy RandomState (MT19937) as far as Keras' split needs it: seeding with a 32-bit
/// integer (init_genrand) and shuffle (Fisher-Yates from the end, each index drawn by
/// random_interval: masked 32-bit draws, rejected above the bound).
struct MersenneTwister {
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    init(seed: UInt32) {
        state[0] = seed
        for i in 1..<624 { state[i] = 1_812_433_253 &* (state[i - 1] ^ (state[i - 1] >> 30)) &+ UInt32(i) }
    }

    mutating func next() -> UInt32 {
        if index >= 624 {
            for i in 0..<624 {
                let y = (state[i] & 0x8000_0000) | (state[(i + 1) % 624] & 0x7FFF_FFFF)
                state[i] = state[(i + 397) % 624] ^ (y >> 1) ^ (y & 1 == 0 ? 0 : 0x9908_B0DF)
            }
            index = 0
        }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// random_interval(max): a value in 0...max.
    mutating func interval(_ max: Int) -> Int {
        if max == 0 { return 0 }
        var mask = UInt64(max)
        for shift in [1, 2, 4, 8, 16, 32] { mask |= mask >> UInt64(shift) }
        precondition(max <= 0xFFFF_FFFF)
        while true {
            let value = UInt64(next()) & mask
            if value <= UInt64(max) { return Int(value) }
        }
    }

    mutating func shuffle<T>(_ items: inout [T]) {
        guard items.count > 1 else { return }
        for i in stride(from: items.count - 1, through: 1, by: -1) { items.swapAt(i, interval(i)) }
    }
}
