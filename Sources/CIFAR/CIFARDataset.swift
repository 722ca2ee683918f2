import Foundation

/// How pixel bytes become model inputs; checkpoints differ, so this is the user's choice.
public enum InputScaling: Sendable, Equatable, CustomStringConvertible {
    /// x / 255
    case unit
    /// x / 127.5 - 1 (Keras' MobileNet preprocessing)
    case symmetric
    /// x as 0...255 floats
    case raw
    /// (x / 255 - mean[c]) / std[c]
    case meanStd(mean: [Float], std: [Float])
    /// Keras' `preprocess_input(mode="caffe")`: RGB -> BGR, then the ImageNet BGR means subtracted.
    case caffe

    /// Keras' `preprocess_input(mode="torch")`: x/255, then ImageNet mean/std.
    public static let torch = InputScaling.meanStd(mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225])
    /// The ImageNet means in BGR order that mode "caffe" subtracts.
    public static let caffeMeans: [Float] = [103.939, 116.779, 123.68]

    public var description: String {
        switch self {
        case .unit: return "unit (x/255)"
        case .symmetric: return "symmetric (x/127.5 - 1)"
        case .raw: return "raw (0..255)"
        case .meanStd(let mean, let std): return "mean/std ((x/255 - \(mean)) / \(std))"
        case .caffe: return "caffe (BGR, x - \(Self.caffeMeans))"
        }
    }

    /// The input channel that output channel `c` of `channels` is read from (caffe swaps RGB to BGR).
    public func sourceChannel(_ c: Int, of channels: Int) -> Int {
        if case .caffe = self, channels == 3 { return 2 - c }
        return c
    }

    /// The model input for pixel value `x` (0...255, already from `sourceChannel(c)`) in output
    /// channel `c`, with the float32 operations NumPy applies to a float32 array.
    public func value(_ x: Float, channel c: Int) -> Float {
        switch self {
        case .unit: return x / 255
        case .symmetric: return x / 127.5 - 1
        case .raw: return x
        case .meanStd(let mean, let std): return (x / 255 - mean[c % mean.count]) / std[c % std.count]
        case .caffe: return x - Self.caffeMeans[c % 3]
        }
    }

    /// The value of each byte per channel, computed with the same float32 operations NumPy
    /// applies to a float32 array (so inputs are bit-identical to a Python pipeline's).
    /// table[c][byte] is the input of output channel c for a byte of channel `sourceChannel(c)`.
    func table(channels: Int) -> [[Float]] {
        (0..<channels).map { c in (0..<256).map { value(Float($0), channel: c) } }
    }
}

/// A problem with a data file: which file and what is wrong.
public struct DataError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var problem: String
    public init(file: String, problem: String) {
        self.file = file
        self.problem = problem
    }
    public var description: String { "\(file): \(problem)" }
}

/// CIFAR-10 in the official binary layout: records of 1 label byte + 3072 pixel bytes (the red,
/// green and blue 32x32 planes). Batches are read from disk as they are needed.
public struct CIFARDataset: ImageDataset {
    public static let height = 32, width = 32, channels = 3, classes = 10
    public static let recordBytes = 1 + height * width * channels

    public enum Split: String, CaseIterable, Sendable {
        case test, validation, train
        /// The project's convention: validation is data_batch_5, train batches 1-4.
        public var fileNames: [String] {
            switch self {
            case .test: return ["test_batch.bin"]
            case .validation: return ["data_batch_5.bin"]
            case .train: return (1...4).map { "data_batch_\($0).bin" }
            }
        }
    }

    public let files: [(path: String, records: Int)]
    public let count: Int
    public let scaling: InputScaling
    public var sourceFiles: [String] { files.map(\.path) }
    public var imageShape: [Int] { [Self.height, Self.width, Self.channels] }
    public var requiredClasses: Int? { Self.classes }
    /// Labels are checked to be 0-9 on opening.
    public var largestLabel: Int { Self.classes - 1 }
    private let table: [[Float]]

    /// `paths` are .bin files or folders; a folder stands for `split`'s files inside it.
    /// Every file is checked (size a whole number of records, labels 0-9) before use.
    public init(paths: [String], split: Split = .test, limit: Int? = nil, scaling: InputScaling) throws {
        var resolved: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw DataError(file: path, problem: "no such file or folder")
            }
            if isDirectory.boolValue {
                for name in split.fileNames {
                    let file = (path as NSString).appendingPathComponent(name)
                    guard FileManager.default.fileExists(atPath: file) else {
                        throw DataError(file: path, problem: "has no \(name) for the \(split.rawValue) split")
                    }
                    resolved.append(file)
                }
            } else {
                resolved.append(path)
            }
        }
        guard !resolved.isEmpty else { throw DataError(file: paths.joined(separator: ","), problem: "no data files given") }
        var files: [(String, Int)] = []
        var remaining = limit ?? Int.max
        for file in resolved where remaining > 0 {
            let records = try Self.check(file)
            let used = min(records, remaining)
            files.append((file, used))
            remaining -= used
        }
        self.files = files
        count = files.reduce(0) { $0 + $1.1 }
        self.scaling = scaling
        table = scaling.table(channels: Self.channels)
    }

    /// Validates size and labels; returns the record count.
    private static func check(_ file: String) throws -> Int {
        guard let handle = FileHandle(forReadingAtPath: file) else { throw DataError(file: file, problem: "cannot be read") }
        defer { try? handle.close() }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        guard size > 0 else { throw DataError(file: file, problem: "is empty") }
        guard size % recordBytes == 0 else {
            throw DataError(file: file, problem: "is \(size) bytes, not a whole number of \(recordBytes)-byte CIFAR-10 records (1 label + 32x32x3 pixels)")
        }
        let records = size / recordBytes
        try handle.seek(toOffset: 0)
        // Labels are checked in one pass of 1,000-record chunks (30 MB files stay out of memory).
        var index = 0
        while index < records {
            let chunk = min(1000, records - index)
            guard let data = try handle.read(upToCount: chunk * recordBytes), data.count == chunk * recordBytes else {
                throw DataError(file: file, problem: "could not be read to the end")
            }
            try data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
                for r in 0..<chunk where bytes[r * recordBytes] >= classes {
                    throw DataError(file: file, problem: "record \(index + r) has label \(bytes[r * recordBytes]), outside 0-9")
                }
            }
            index += chunk
        }
        return records
    }

    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        let pixels = Self.height * Self.width
        // Buffers follow the images there are, not the flag: --batch-size 10000000 on 300 images
        // holds 300.
        let size = max(1, min(size, count))
        var images = [Float](repeating: 0, count: size * pixels * Self.channels)
        var labels = [Int32](repeating: 0, count: size)
        var filled = 0
        for (file, records) in files {
            guard let handle = FileHandle(forReadingAtPath: file) else { throw DataError(file: file, problem: "cannot be read") }
            defer { try? handle.close() }
            var done = 0
            while done < records {
                let take = min(size - filled, records - done)
                guard let data = try handle.read(upToCount: take * Self.recordBytes), data.count == take * Self.recordBytes else {
                    throw DataError(file: file, problem: "ended early (was it changed while reading?)")
                }
                data.withUnsafeBytes { bytes in
                    images.withUnsafeMutableBufferPointer { out in
                        for r in 0..<take {
                            let record = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + r * Self.recordBytes
                            labels[filled + r] = Int32(record[0])
                            // Planes (C, H, W) -> NHWC.
                            let destination = out.baseAddress! + (filled + r) * pixels * Self.channels
                            for c in 0..<Self.channels {
                                let plane = record + 1 + scaling.sourceChannel(c, of: Self.channels) * pixels
                                let lookup = table[c]
                                for p in 0..<pixels { destination[p * Self.channels + c] = lookup[Int(plane[p])] }
                            }
                        }
                    }
                }
                filled += take
                done += take
                if filled == size {
                    try body(images, labels, filled)
                    filled = 0
                }
            }
        }
        if filled > 0 { try body(images, labels, filled) }
    }
}
