/// Labelled images delivered in batches: NHWC floats already scaled for the model, labels as
/// Int32. Sources stream from disk so memory stays flat in the number of images. The engine
/// consumes this protocol; the data side owns it and knows nothing of the engine.
public protocol ImageBatchSource {
    /// Number of images the source will deliver.
    var count: Int { get }
    /// The files the images come from, for provenance in outputs.
    var sourceFiles: [String] { get }
    /// Calls `body(images, labels, n)` for consecutive batches of at most `size` images.
    func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws
    /// The same batches from image `first` on (a multiple of `size`): what `forEachBatch(size:)`
    /// delivers after its first `first / size` batches. Sources that can seek skip the images
    /// before it without decoding them; the default reads and drops them.
    func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws
}

extension ImageDataset {
    /// The files in order, each with the images it gives before the limit; those after it left out.
    public func files(limit: Int) -> [(path: String, records: Int)] {
        var remaining = limit
        return files.compactMap { file in
            guard remaining > 0 else { return nil }
            defer { remaining -= min(file.records, remaining) }
            return (file.path, min(file.records, remaining))
        }
    }
}

extension ImageBatchSource {
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(first >= 0 && first % size == 0, "batches must start on a batch boundary")
        var start = 0
        try forEachBatch(size: size) { images, labels, n in
            defer { start += n }
            if start >= first { try body(images, labels, n) }
        }
    }
}

/// Labelled images with random access, for training: any subset in any order, optionally
/// augmented.
public protocol TrainingImageSource {
    var count: Int { get }
    var sourceFiles: [String] { get }
    /// Floats per image (height x width x channels).
    var imageFloats: Int { get }
    /// Fills NHWC floats and labels for the images at `indices`; with `augment`, the source's
    /// augmentation draws from `random`.
    func fill(indices: ArraySlice<Int>, images: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>,
              augment: Bool, random: inout SplitMix64)
}

/// The first `limit` images of a source.
public struct LimitedSource: ImageBatchSource {
    public let base: ImageBatchSource
    public let limit: Int
    public init(base: ImageBatchSource, limit: Int) {
        self.base = base
        self.limit = limit
    }
    public var count: Int { min(limit, base.count) }
    public var sourceFiles: [String] { base.sourceFiles }
    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        var remaining = count
        try base.forEachBatch(size: size) { images, labels, n in
            guard remaining > 0 else { return }
            let take = min(n, remaining)
            remaining -= take
            try body(images, labels, take)
        }
    }
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        var remaining = count - first
        try base.forEachBatch(size: size, from: first) { images, labels, n in
            guard remaining > 0 else { return }
            let take = min(n, remaining)
            remaining -= take
            try body(images, labels, take)
        }
    }
}

/// A labelled image set opened from files, as the commands use it: where each image comes
/// from, how it is scaled, and what it asks of a model.
public protocol ImageDataset: ImageBatchSource {
    /// Each file and the images used from it.
    var files: [(path: String, records: Int)] { get }
    /// `files` as the same source opened with `limit` would record them.
    func files(limit: Int) -> [(path: String, records: Int)]
    var scaling: InputScaling { get }
    /// Per-image shape (height, width, channels).
    var imageShape: [Int] { get }
    /// The class count the format fixes (CIFAR-10: 10), or nil where only the labels bound it.
    var requiredClasses: Int? { get }
    /// The largest label in the data.
    var largestLabel: Int { get }
}

/// The images `range` of a source, in batches cut as the whole source cuts them: `range` starts
/// on a batch boundary (a multiple of the batch size), so every batch is one of the source's own.
/// The images before it are skipped without decoding (`forEachBatch(size:from:)`); reading
/// stops after the range.
public struct ImageRangeSource: ImageBatchSource {
    public let base: ImageBatchSource
    public let range: Range<Int>
    public init(base: ImageBatchSource, range: Range<Int>) {
        precondition(range.lowerBound >= 0 && range.upperBound <= base.count, "image range outside the source")
        self.base = base
        self.range = range
    }
    public var count: Int { range.count }
    public var sourceFiles: [String] { base.sourceFiles }
    private struct Done: Error {}
    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(range.lowerBound % size == 0, "an image range must start on a batch boundary")
        var start = range.lowerBound
        do {
            try base.forEachBatch(size: size, from: range.lowerBound) { images, labels, n in
                defer { start += n }
                guard start < range.upperBound else { throw Done() }
                try body(images, labels, min(n, range.upperBound - start))
            }
        } catch is Done {}
    }
}
