import Foundation
import Zip
#if canImport(Glibc)
import Glibc
#endif

/// A NumPy array in `.npy` form: a file mapped read-only, or a member of an `.npz` archive (a
/// stored member read in place from the mapped archive, a deflated one inflated into memory).
/// The header is parsed strictly and the data's size checked against the bytes there are before
/// anything is read. Only the little-endian C-order arrays Keras users save are accepted ('|u1',
/// '<f4', '<i4', '<i8').
final class NumPyArray: @unchecked Sendable {
    enum DType: String { case uint8 = "|u1", float32 = "<f4", int32 = "<i4", int64 = "<i8" }
    /// The name in messages: the file, or "archive.npz: member.npy".
    let path: String
    let dtype: DType
    let shape: [Int]
    /// The array's elements (at any alignment: read with loadUnaligned).
    let data: UnsafeRawPointer
    /// What keeps `data` alive: the mapping, the archive or the inflated buffer.
    private let release: () -> Void

    /// A `.npy` file, memory-mapped.
    convenience init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw DataError(file: path, problem: "cannot be read") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError(file: path, problem: "cannot be read") }
        let size = Int(info.st_size)
        guard let mapped = mmap(nil, max(size, 1), PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw DataError(file: path, problem: "cannot be memory-mapped")
        }
        try self.init(name: path, bytes: UnsafeRawBufferPointer(start: mapped, count: size)) { munmap(mapped, max(size, 1)) }
    }

    /// Member `member` of an opened `.npz` archive.
    convenience init(archive: ZipArchive, member: ZipArchive.Entry) throws {
        let name = "\(archive.path): \(member.name)"
        func reading<T>(_ body: () throws -> T) throws -> T {
            do { return try body() } catch let error as ZipError { throw DataError(file: archive.path, problem: "\(error.entry): \(error.problem)") }
        }
        if member.method == 0 {
            let bytes = try reading { try archive.storedBytes(of: member) }
            try self.init(name: name, bytes: bytes) { withExtendedLifetime(archive) {} }
            return
        }
        // A deflated member is inflated whole (np.savez_compressed): refused up front when it
        // declares more than this machine's memory; inflating stops at the declared size.
        let size = member.uncompressedSize
        guard UInt64(size) <= ProcessInfo.processInfo.physicalMemory else {
            throw DataError(file: name, problem: "declares \(size) bytes uncompressed, more than this machine's memory")
        }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(size, 1), alignment: 64)
        var filled = 0
        do {
            try reading {
                try archive.inflate(member) { piece in
                    UnsafeMutableRawBufferPointer(rebasing: buffer[filled..<(filled + piece.count)]).copyMemory(from: piece)
                    filled += piece.count
                }
            }
        } catch {
            buffer.deallocate()
            throw error
        }
        try self.init(name: name, bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<size])) { buffer.deallocate() }
    }

    /// Parses the `.npy` in `bytes`; `release` is called when the array goes (or on an error).
    private init(name path: String, bytes: UnsafeRawBufferPointer, release: @escaping () -> Void) throws {
        self.path = path
        self.release = release
        var parsed = false
        defer { if !parsed { release() } }
        let size = bytes.count
        func byte(_ i: Int) -> Int { Int(bytes[i]) }
        // Magic (6), version (2), header length (2 in version 1, 4 in versions 2 and 3).
        guard size >= 10, bytes[0] == 0x93, Array(bytes[1..<6]) == Array("NUMPY".utf8) else {
            throw DataError(file: path, problem: "is not a NumPy .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerStart: Int, headerLength: Int
        switch major {
        case 1: headerStart = 10; headerLength = byte(8) | byte(9) << 8
        case 2, 3:
            guard size >= 12 else { throw DataError(file: path, problem: "ends inside its .npy header") }
            headerStart = 12
            headerLength = byte(8) | byte(9) << 8 | byte(10) << 16 | byte(11) << 24
        default: throw DataError(file: path, problem: "is .npy format version \(major), not 1, 2 or 3")
        }
        guard headerLength <= 1 << 20, headerStart + headerLength <= size else {
            throw DataError(file: path, problem: "ends inside its .npy header")
        }
        guard let header = String(bytes: bytes[headerStart..<(headerStart + headerLength)], encoding: major == 3 ? .utf8 : .isoLatin1) else {
            throw DataError(file: path, problem: "has an unreadable .npy header")
        }
        let (descr, fortran, shape) = try Self.parse(header, path: path)
        guard let dtype = DType(rawValue: descr) else {
            throw DataError(file: path, problem: "holds dtype '\(descr)'; gmtool reads '|u1' or '<f4' images and '<i8', '<i4', '|u1' or '<f4' (one-hot) labels")
        }
        guard !fortran else { throw DataError(file: path, problem: "is in Fortran order; save it C-ordered (np.ascontiguousarray)") }
        let itemSize = dtype == .uint8 ? 1 : dtype == .int64 ? 8 : 4
        var count = 1
        for d in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, d >= 0 else { throw DataError(file: path, problem: "declares shape \(shape), too large") }
            count = product
        }
        let (dataBytes, overflow) = count.multipliedReportingOverflow(by: itemSize)
        let dataOffset = headerStart + headerLength
        guard !overflow, dataOffset + dataBytes == size else {
            throw DataError(file: path, problem: "declares shape \(shape) of \(descr) (\(overflow ? "too many" : "\(dataBytes)") bytes) but holds \(size - dataOffset) bytes of data")
        }
        self.dtype = dtype
        self.shape = shape
        data = bytes.baseAddress! + dataOffset
        parsed = true
    }

    deinit { release() }

    /// The header's dict: {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
    private static func parse(_ header: String, path: String) throws -> (String, Bool, [Int]) {
        let bad = DataError(file: path, problem: "has a .npy header gmtool cannot parse: \(header.trimmingCharacters(in: .whitespacesAndNewlines))")
        func value(of key: String) throws -> Substring {
            guard let keyRange = header.range(of: "'\(key)':") else { throw bad }
            let rest = header[keyRange.upperBound...].drop { $0 == " " }
            if rest.first == "(" {
                guard let close = rest.firstIndex(of: ")") else { throw bad }
                return rest[rest.index(after: rest.startIndex)..<close]
            }
            guard let end = rest.firstIndex(where: { $0 == "," || $0 == "}" }) else { throw bad }
            return rest[..<end]
        }
        let descr = try value(of: "descr").trimmingCharacters(in: .whitespaces)
        guard descr.count >= 2, descr.hasPrefix("'"), descr.hasSuffix("'") else { throw bad }
        let fortran = try value(of: "fortran_order").trimmingCharacters(in: .whitespaces)
        guard fortran == "False" || fortran == "True" else { throw bad }
        var shape: [Int] = []
        for part in try value(of: "shape").split(separator: ",") {
            let text = part.trimmingCharacters(in: .whitespaces)
            if text.isEmpty { continue }
            guard let d = Int(text) else { throw bad }
            shape.append(d)
        }
        return (String(descr.dropFirst().dropLast()), fortran == "True", shape)
    }
}

/// Images and labels as a pair of NumPy `.npy` files (`np.save("x.npy", x_test)`,
/// `np.save("y.npy", y_test)`): images uint8 or float32 (pixel values 0-255, scaled like bytes),
/// NHWC or with `channelsFirst` NCHW; labels integers (shape (N,) or (N, 1)) or one-hot float32
/// (shape (N, classes)). Both files are memory-mapped, so a large set is never loaded whole.
public struct NumPyDataset: ImageDataset, @unchecked Sendable {
    let images: NumPyArray
    public let labels: [Int32]
    public let count: Int
    public let scaling: InputScaling
    public let imageShape: [Int]
    public let largestLabel: Int
    let channelsFirst: Bool
    private let table: [[Float]]

    public var requiredClasses: Int? { oneHotClasses }
    private let oneHotClasses: Int?
    public var files: [(path: String, records: Int)] { sourceFiles.map { ($0, count) } }
    /// Both arrays hold every image: each is recorded with the images used.
    public func files(limit: Int) -> [(path: String, records: Int)] { sourceFiles.map { ($0, min(limit, count)) } }
    /// The two .npy files, or the one .npz.
    public let sourceFiles: [String]

    public init(images imagePath: String, labels labelPath: String, channelsFirst: Bool = false,
                limit: Int? = nil, scaling: InputScaling) throws {
        try self.init(images: try NumPyArray(path: imagePath), labels: try NumPyArray(path: labelPath), files: [imagePath, labelPath],
                      channelsFirst: channelsFirst, limit: limit, scaling: scaling)
    }

    /// The arrays Keras users save in an `.npz` for each split, tried in this order when none
    /// are named: `x`/`y`, then the split's own (`x_test`/`y_test`, `x_train`/`y_train`,
    /// `x_val`/`y_val`).
    public static func defaultArrayNames(split: String) -> [(images: String, labels: String)] {
        [("x", "y"), ("x_\(split)", "y_\(split)")]
    }

    /// An `.npz` archive (`np.savez` or `np.savez_compressed`) holding the images and labels as
    /// the arrays `names` (or the first pair of `candidates` present). Stored members are read
    /// in place from the mapped archive; deflated members are inflated into memory.
    public init(npz path: String, names: (images: String, labels: String)? = nil, candidates: [(images: String, labels: String)] = [],
                channelsFirst: Bool = false, limit: Int? = nil, scaling: InputScaling) throws {
        let archive: ZipArchive
        do { archive = try ZipArchive(path: path, kind: "NumPy .npz archive") } catch let error as ZipError {
            throw DataError(file: path, problem: error.entry.isEmpty ? error.problem : "\(error.entry): \(error.problem)")
        }
        let arrays = archive.entries.map(\.name).filter { $0.hasSuffix(".npy") }.map { String($0.dropLast(4)) }
        let tried = names.map { [$0] } ?? candidates
        guard let pair = tried.first(where: { arrays.contains($0.images) && arrays.contains($0.labels) }) else {
            let wanted = tried.map { "\($0.images)/\($0.labels)" }.joined(separator: " or ")
            throw DataError(file: path, problem: "has no arrays \(wanted) (it holds \(arrays.isEmpty ? "no arrays" : arrays.joined(separator: ", "))); name them with --arrays IMAGES,LABELS")
        }
        try self.init(images: try NumPyArray(archive: archive, member: archive.entry(pair.images + ".npy")!),
                      labels: try NumPyArray(archive: archive, member: archive.entry(pair.labels + ".npy")!),
                      files: [path], channelsFirst: channelsFirst, limit: limit, scaling: scaling)
    }

    init(images: NumPyArray, labels labelArray: NumPyArray, files: [String], channelsFirst: Bool, limit: Int?, scaling: InputScaling) throws {
        let imagePath = images.path, labelPath = labelArray.path
        guard images.dtype == .uint8 || images.dtype == .float32 else {
            throw DataError(file: imagePath, problem: "holds \(images.dtype.rawValue) images; gmtool reads '|u1' (uint8) or '<f4' (float32)")
        }
        guard images.shape.count == 4 else {
            throw DataError(file: imagePath, problem: "has shape \(images.shape); images are (N, height, width, channels)\(channelsFirst ? " with --channels-first: (N, channels, height, width)" : "")")
        }
        let s = images.shape
        let shape = channelsFirst ? [s[2], s[3], s[1]] : [s[1], s[2], s[3]]
        guard shape.allSatisfy({ $0 > 0 }), s[0] > 0 else { throw DataError(file: imagePath, problem: "holds no images (shape \(s))") }
        let n = s[0]
        var labels = [Int32](repeating: 0, count: n)
        var oneHot: Int?
        let ls = labelArray.shape
        switch (labelArray.dtype, ls.count) {
        case (.float32, 2) where ls[0] == n && ls[1] > 1:
            oneHot = ls[1]
            for i in 0..<n {
                var hot = -1
                for k in 0..<ls[1] {
                    let v = labelArray.data.loadUnaligned(fromByteOffset: (i * ls[1] + k) * 4, as: Float.self)
                    guard v == 0 || v == 1, v == 0 || hot < 0 else {
                        throw DataError(file: labelPath, problem: "row \(i) is not one-hot (values other than a single 1 and 0s)")
                    }
                    if v == 1 { hot = k }
                }
                guard hot >= 0 else { throw DataError(file: labelPath, problem: "row \(i) is not one-hot (no 1)") }
                labels[i] = Int32(hot)
            }
        case (.float32, _):
            throw DataError(file: labelPath, problem: "holds float32 labels of shape \(ls); float labels must be one-hot, shape (\(n), classes)")
        case (_, 1) where ls[0] == n, (_, 2) where ls[0] == n && ls[1] == 1:
            for i in 0..<n {
                let label: Int64
                switch labelArray.dtype {
                case .uint8: label = Int64(labelArray.data.load(fromByteOffset: i, as: UInt8.self))
                case .int32: label = Int64(labelArray.data.loadUnaligned(fromByteOffset: i * 4, as: Int32.self))
                default: label = labelArray.data.loadUnaligned(fromByteOffset: i * 8, as: Int64.self)
                }
                guard label >= 0, label <= Int64(Int32.max) else {
                    throw DataError(file: labelPath, problem: "label \(i) is \(label), not a class index")
                }
                labels[i] = Int32(label)
            }
        default:
            throw DataError(file: labelPath, problem: "has shape \(ls); labels for \(imagePath)'s \(n) images are shape (\(n),), (\(n), 1) or one-hot (\(n), classes)")
        }
        let used = min(n, limit ?? n)
        self.images = images
        self.labels = Array(labels[0..<used])
        count = used
        sourceFiles = files
        self.scaling = scaling
        imageShape = shape
        self.channelsFirst = channelsFirst
        oneHotClasses = oneHot
        largestLabel = Int(labels.max() ?? 0)
        table = scaling.table(channels: shape[2])
    }

    public func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        try forEachBatch(size: size, from: 0, body)
    }

    /// The arrays are mapped: the images before `first` are not touched.
    public func forEachBatch(size: Int, from first: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        precondition(first >= 0 && first % size == 0, "batches must start on a batch boundary")
        let (h, w, c) = (imageShape[0], imageShape[1], imageShape[2])
        let floats = h * w * c
        let size = max(1, min(size, count))
        var batch = [Float](repeating: 0, count: size * floats)
        let sources = (0..<c).map { scaling.sourceChannel($0, of: c) }
        var start = first
        while start < count {
            let n = min(size, count - start)
            batch.withUnsafeMutableBufferPointer { out in
                for i in 0..<n {
                    let destination = out.baseAddress! + i * floats
                    let image = start + i
                    for p in 0..<(h * w) {
                        for k in 0..<c {
                            // NHWC: element (p, k); NCHW: element (k, p).
                            let element = image * floats + (channelsFirst ? sources[k] * h * w + p : p * c + sources[k])
                            switch images.dtype {
                            case .uint8: destination[p * c + k] = table[k][Int(images.data.load(fromByteOffset: element, as: UInt8.self))]
                            default: destination[p * c + k] = scaling.value(images.data.loadUnaligned(fromByteOffset: element * 4, as: Float.self), channel: k)
                            }
                        }
                    }
                }
            }
            try labels.withUnsafeBufferPointer { try body(batch, $0.baseAddress! + start, n) }
            start += n
        }
    }
}

extension NumPyDataset: TrainingImageSource {
    public var imageFloats: Int { imageShape.reduce(1, *) }

    /// Fills NHWC floats and labels for the images at `indices`. With `augment`, the same
    /// augmentation as CIFARTrainingSet's at any size: a crop of the 4-pixel reflect-padded image
    /// at a random offset, flipped with probability 1/2 (the draws in the same order).
    public func fill(indices: ArraySlice<Int>, images out: UnsafeMutablePointer<Float>, labels outLabels: UnsafeMutablePointer<Int32>,
                     augment: Bool, random: inout SplitMix64) {
        let (h, w, c) = (imageShape[0], imageShape[1], imageShape[2])
        let floats = h * w * c
        let sources = (0..<c).map { scaling.sourceChannel($0, of: c) }
        func reflect(_ i: Int, _ n: Int) -> Int { i < 0 ? min(-i, n - 1) : (i > n - 1 ? max(2 * (n - 1) - i, 0) : i) }
        for (slot, image) in indices.enumerated() {
            outLabels[slot] = labels[image]
            let (dx, dy, flip) = cropAndFlip(augment: augment, random: &random)
            let destination = out + slot * floats
            for y in 0..<h {
                let sy = reflect(y + dy - 4, h)
                for x in 0..<w {
                    let sx = reflect(x + dx - 4, w)
                    let tx = flip ? w - 1 - x : x
                    for k in 0..<c {
                        let p = sy * w + sx
                        let element = image * floats + (channelsFirst ? sources[k] * h * w + p : p * c + sources[k])
                        let value: Float
                        switch images.dtype {
                        case .uint8: value = table[k][Int(images.data.load(fromByteOffset: element, as: UInt8.self))]
                        default: value = scaling.value(images.data.loadUnaligned(fromByteOffset: element * 4, as: Float.self), channel: k)
                        }
                        destination[(y * w + tx) * c + k] = value
                    }
                }
            }
        }
    }
}
