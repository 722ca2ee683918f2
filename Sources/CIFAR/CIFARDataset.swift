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

/// Which CIFAR: CIFAR-10, or CIFAR-100 with its fine (100) or coarse (20) labels.
public enum CIFARVariant: Sendable, Equatable {
    case cifar10
    case cifar100(fine: Bool)

    public var classes: Int {
        switch self {
        case .cifar10: return 10
        case .cifar100(let fine): return fine ? 100 : 20
        }
    }
    public var name: String {
        switch self {
        case .cifar10: return "CIFAR-10"
        case .cifar100(let fine): return "CIFAR-100 (\(fine ? "fine" : "coarse") labels)"
        }
    }
    /// Label bytes before each binary record's pixels (CIFAR-100: coarse, then fine).
    var labelBytes: Int { self == .cifar10 ? 1 : 2 }
    var labelOffset: Int { self == .cifar100(fine: true) ? 1 : 0 }
    public var recordBytes: Int { labelBytes + 3072 }
}

/// CIFAR-10 and CIFAR-100 in the official binary layout: records of 1 label byte (CIFAR-100: 2,
/// coarse then fine) + 3072 pixel bytes (the red, green and blue 32x32 planes). Batches are read
/// from disk as they are needed.
public struct CIFARDataset: ImageDataset {
    public static let height = 32, width = 32, channels = 3

    public enum Split: String, CaseIterable, Sendable {
        case test, validation, train
        /// The project's convention for CIFAR-10: validation is data_batch_5, train batches 1-4.
        /// CIFAR-100 has train.bin and test.bin only.
        public func fileNames(_ variant: CIFARVariant, python: Bool = false) -> [String]? {
            let ext = python ? "" : ".bin"
            switch (variant, self) {
            case (.cifar10, .test): return ["test_batch" + ext]
            case (.cifar10, .validation): return ["data_batch_5" + ext]
            case (.cifar10, .train): return (1...4).map { "data_batch_\($0)" + ext }
            case (.cifar100, .test): return ["test" + ext]
            case (.cifar100, .train): return ["train" + ext]
            case (.cifar100, .validation): return nil
            }
        }

        /// The files for this split in `folder`, or an error naming the folder.
        public func files(in folder: String, _ variant: CIFARVariant, python: Bool = false) throws -> [String] {
            guard let names = fileNames(variant, python: python) else {
                throw DataError(file: folder, problem: "\(variant.name) has no \(rawValue) split (only train and test); pick one with --split or name a file")
            }
            return try names.map { name in
                let file = (folder as NSString).appendingPathComponent(name)
                guard FileManager.default.fileExists(atPath: file) else {
                    throw DataError(file: folder, problem: "has no \(name) for the \(rawValue) split")
                }
                return file
            }
        }
    }

    public let files: [(path: String, records: Int)]
    public let count: Int
    public let scaling: InputScaling
    public let variant: CIFARVariant
    public var sourceFiles: [String] { files.map(\.path) }
    public var imageShape: [Int] { [Self.height, Self.width, Self.channels] }
    public var requiredClasses: Int? { variant.classes }
    /// Labels are checked to be within the variant's classes on opening.
    public var largestLabel: Int { variant.classes - 1 }
    private let table: [[Float]]

    /// `paths` are .bin files or folders; a folder stands for `split`'s files inside it.
    /// Every file is checked (size a whole number of records, labels 0-9) before use.
    public init(paths: [String], split: Split = .test, variant: CIFARVariant = .cifar10, limit: Int? = nil, scaling: InputScaling) throws {
        var resolved: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw DataError(file: path, problem: "no such file or folder")
            }
            if isDirectory.boolValue {
                resolved += try split.files(in: path, variant)
            } else {
                resolved.append(path)
            }
        }
        guard !resolved.isEmpty else { throw DataError(file: paths.joined(separator: ","), problem: "no data files given") }
        var files: [(String, Int)] = []
        var remaining = limit ?? Int.max
        for file in resolved where remaining > 0 {
            let records = try Self.check(file, variant)
            let used = min(records, remaining)
            files.append((file, used))
            remaining -= used
        }
        self.files = files
        count = files.reduce(0) { $0 + $1.1 }
        self.scaling = scaling
        self.variant = variant
        table = scaling.table(channels: Self.channels)
    }

    /// Validates size and labels; returns the record count.
    private static func check(_ file: String, _ variant: CIFARVariant) throws -> Int {
        let recordBytes = variant.recordBytes, classes = variant.classes
        guard let handle = FileHandle(forReadingAtPath: file) else { throw DataError(file: file, problem: "cannot be read") }
        defer { try? handle.close() }
        let size = Int((try? handle.seekToEnd()) ?? 0)
        guard size > 0 else { throw DataError(file: file, problem: "is empty") }
        guard size % recordBytes == 0 else {
            throw DataError(file: file, problem: "is \(size) bytes, not a whole number of \(recordBytes)-byte \(variant == .cifar10 ? "CIFAR-10" : "CIFAR-100") records (\(variant.labelBytes) label\(variant.labelBytes > 1 ? "s" : "") + 32x32x3 pixels)")
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
                for r in 0..<chunk where bytes[r * recordBytes + variant.labelOffset] >= classes {
                    throw DataError(file: file, problem: "record \(index + r) has label \(bytes[r * recordBytes + variant.labelOffset]), outside 0-\(classes - 1)")
                }
            }
            index += chunk
        }
        return records
    }

    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        try forEachBatch(size: size, from: 0, body)
    }

    /// Records are of fixed size: the images before `first` are skipped by seeking.
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(first >= 0 && first % size == 0, "batches must start on a batch boundary")
        let pixels = Self.height * Self.width
        // Buffers follow the images there are, not the flag: --batch-size 10000000 on 300 images
        // holds 300.
        let size = max(1, min(size, count))
        var images = [Float](repeating: 0, count: size * pixels * Self.channels)
        var labels = [Int32](repeating: 0, count: size)
        var filled = 0
        var skip = first
        for (file, records) in files {
            if skip >= records { skip -= records; continue }
            guard let handle = FileHandle(forReadingAtPath: file) else { throw DataError(file: file, problem: "cannot be read") }
            defer { try? handle.close() }
            let recordBytes = variant.recordBytes
            var done = skip
            if skip > 0 { try handle.seek(toOffset: UInt64(skip * recordBytes)) }
            skip = 0
            while done < records {
                let take = min(size - filled, records - done)
                guard let data = try handle.read(upToCount: take * recordBytes), data.count == take * recordBytes else {
                    throw DataError(file: file, problem: "ended early (was it changed while reading?)")
                }
                data.withUnsafeBytes { bytes in
                    images.withUnsafeMutableBufferPointer { out in
                        for r in 0..<take {
                            let record = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + r * recordBytes
                            labels[filled + r] = Int32(record[variant.labelOffset])
                            // Planes (C, H, W) -> NHWC.
                            let destination = out.baseAddress! + (filled + r) * pixels * Self.channels
                            for c in 0..<Self.channels {
                                let plane = record + variant.labelBytes + scaling.sourceChannel(c, of: Self.channels) * pixels
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
