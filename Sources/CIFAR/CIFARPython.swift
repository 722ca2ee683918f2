import Foundation

/// CIFAR-10 and CIFAR-100 "python version" batches, as keras.datasets caches them
/// (`cifar-10-batches-py/data_batch_1..5, test_batch`; `cifar-100-python/train, test`): each a
/// pickled dict with `data`, an (N, 3072) uint8 array of channel planes, and `labels` (CIFAR-10)
/// or `fine_labels`/`coarse_labels` (CIFAR-100). Read by `PickleReader`, which runs nothing; the
/// images are held in memory (a batch is 30 MB), as keras.datasets holds them.
public struct CIFARPythonDataset: ImageDataset, TrainingImageSource {
    public let files: [(path: String, records: Int)]
    public let count: Int
    public let scaling: InputScaling
    public let variant: CIFARVariant
    public var sourceFiles: [String] { files.map(\.path) }
    public var imageShape: [Int] { [32, 32, 3] }
    public var requiredClasses: Int? { variant.classes }
    public var largestLabel: Int { variant.classes - 1 }
    public var imageFloats: Int { 3072 }
    /// The images and labels, with CIFAR's augmentation for training.
    public let images: CIFARTrainingSet

    /// `paths` are batch files or folders (a folder stands for `split`'s files inside it).
    /// `variant` nil: CIFAR-10 or CIFAR-100 from the dict's keys (CIFAR-100 then fine labels);
    /// given, the files must be that variant.
    public init(paths: [String], split: CIFARDataset.Split = .test, variant: CIFARVariant? = nil, limit: Int? = nil,
                scaling: InputScaling) throws {
        var resolved: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                throw DataError(file: path, problem: "no such file or folder")
            }
            if isDirectory.boolValue {
                let folderVariant = variant ?? (Self.isCIFAR100Folder(path) ? .cifar100(fine: true) : .cifar10)
                resolved += try split.files(in: path, folderVariant, python: true)
            } else {
                resolved.append(path)
            }
        }
        guard !resolved.isEmpty else { throw DataError(file: paths.joined(separator: ","), problem: "no data files given") }
        var pixels: [UInt8] = [], labels: [Int32] = []
        var files: [(String, Int)] = []
        var found: CIFARVariant?
        var remaining = limit ?? Int.max
        for file in resolved where remaining > 0 {
            let (batchVariant, batchPixels, batchLabels) = try Self.read(file, variant: variant ?? found)
            found = batchVariant
            let used = min(batchLabels.count, remaining)
            pixels += batchPixels[0..<(used * 3072)]
            labels += batchLabels[0..<used]
            files.append((file, used))
            remaining -= used
        }
        self.files = files
        count = labels.count
        self.scaling = scaling
        self.variant = found ?? .cifar10
        images = CIFARTrainingSet(pixels: pixels, labels: labels, scaling: scaling, files: files.map(\.0))
    }

    /// A folder holding CIFAR-100's python files (train/test/meta) rather than CIFAR-10's.
    static func isCIFAR100Folder(_ path: String) -> Bool {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
        return names.contains("meta") || (names.contains("test") && !names.contains("test_batch"))
    }

    /// Whether `path` starts like a pickle (the PROTO opcode of protocol 2-5).
    public static func looksLikePickle(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let magic = [UInt8]((try? handle.read(upToCount: 2)) ?? Data())
        return magic.count == 2 && magic[0] == 0x80 && (2...5).contains(magic[1])
    }

    /// One batch file: its variant, pixels (channel planes) and labels, checked.
    static func read(_ file: String, variant: CIFARVariant?) throws -> (CIFARVariant, [UInt8], [Int32]) {
        guard let data = FileManager.default.contents(atPath: file) else { throw DataError(file: file, problem: "cannot be read") }
        guard data.first == 0x80 else {
            throw DataError(file: file, problem: "is not a pickle (CIFAR's python batches start with byte 0x80)")
        }
        let batch = try PickleReader.parse([UInt8](data), file: file)
        func notBatch(_ why: String) -> DataError { DataError(file: file, problem: "is a pickle but not a CIFAR batch (\(why))") }
        guard case .dict(let items) = batch else { throw notBatch("not a dict") }
        guard let array = batch["data"] else {
            throw notBatch("no 'data' entry; it holds \(items.compactMap { $0.0.key }.map { "'\($0)'" }.joined(separator: ", "))")
        }
        guard case .array(let dtype, let shape, let fortran, let pixels) = array else { throw notBatch("'data' is not a NumPy array") }
        guard dtype == "|u1", shape.count == 2, shape[1] == 3072, !fortran,
              !shape[0].multipliedReportingOverflow(by: 3072).overflow, pixels.count == shape[0] * 3072 else {
            throw notBatch("'data' is a \(dtype) array of shape \(shape)\(fortran ? " in Fortran order" : ""), not (N, 3072) uint8")
        }
        let keyVariant: CIFARVariant
        if batch["labels"] != nil {
            keyVariant = .cifar10
        } else if batch["fine_labels"] != nil && batch["coarse_labels"] != nil {
            keyVariant = variant == .cifar100(fine: false) ? .cifar100(fine: false) : .cifar100(fine: true)
        } else {
            throw notBatch("no 'labels' (CIFAR-10) or 'fine_labels'/'coarse_labels' (CIFAR-100)")
        }
        if let variant, (variant == .cifar10) != (keyVariant == .cifar10) {
            throw DataError(file: file, problem: "is a \(keyVariant == .cifar10 ? "CIFAR-10" : "CIFAR-100") batch, not \(variant.name)")
        }
        let key = keyVariant == .cifar10 ? "labels" : keyVariant == .cifar100(fine: true) ? "fine_labels" : "coarse_labels"
        guard case .list(let list) = batch[key]!, list.count == shape[0] else { throw notBatch("'\(key)' is not a list of \(shape[0]) labels") }
        var labels: [Int32] = []
        labels.reserveCapacity(list.count)
        for (i, item) in list.enumerated() {
            guard case .int(let label) = item else { throw notBatch("label \(i) is not an integer") }
            guard label >= 0, label < keyVariant.classes else {
                throw DataError(file: file, problem: "image \(i) has label \(label), outside 0-\(keyVariant.classes - 1)")
            }
            labels.append(Int32(label))
        }
        return (keyVariant, pixels, labels)
    }

    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        try forEachBatch(size: size, from: 0, body)
    }

    /// The images are in memory: those before `first` are skipped.
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(first >= 0 && first % size == 0, "batches must start on a batch boundary")
        let size = max(1, min(size, count))
        var batch = [Float](repeating: 0, count: size * 3072)
        var labels = [Int32](repeating: 0, count: size)
        var random = SplitMix64(seed: 0)  // unused: no augmentation
        var start = first
        while start < count {
            let n = min(size, count - start)
            images.fill(indices: (start..<(start + n)).map { $0 }[...], images: &batch, labels: &labels, augment: false, random: &random)
            try body(batch, labels, n)
            start += n
        }
    }

    public func fill(indices: ArraySlice<Int>, images out: UnsafeMutablePointer<Float>, labels: UnsafeMutablePointer<Int32>,
                     augment: Bool, random: inout SplitMix64) {
        images.fill(indices: indices, images: out, labels: labels, augment: augment, random: &random)
    }
}
