internal import CZlib
import Foundation
import HDF5

/// A shard file written by `gmtool grad --shard`, `gmtool eval --shard` or `gmtool sweep --shard`:
/// one contiguous range of a pass's images, as partial sums that `gmtool merge` adds, in a fixed
/// order, into exactly what the single pass gives; for a sweep, one contiguous range of the grid's
/// points ("images" and "units" are then points), their outcomes as JSON bytes in `/sweep/shard.json`
/// (docs/SCALE.md).
///
/// Layout: root attributes (the `Header`: marker `gmtool_shard` = kind, the shard's K/N, its
/// image and unit range, the pass's image count and batching, the weights digest, the data files'
/// digests, scaling, the text provenance the merged file repeats, the gmtool version); per-batch
/// totals `/batches/{images,loss_sum,top1,top5}` (the loss in float64, as the pass sums it);
/// for gradients, per piece (batch groups a-b, `Engine.GroupTree`), `/groups/<a>-<b>/<weight path>`:
/// float64 d(sum of losses)/dw over those groups' images, the weight's shape. Every dataset carries a `digest` attribute (CRC-32
/// of its bytes, zlib's: several times faster than FNV-1a on these sizes), so a changed byte is
/// caught on merge, not added in. A sweep shard has no per-batch totals; its `grid` attribute
/// describes the whole grid and every setting the points depend on. Written atomically.
public enum ShardFile {
    public static let marker = "gmtool_shard"
    public enum Kind: String, Sendable { case gradients, evaluation, sweep }

    public struct Header: Sendable {
        public var kind: Kind
        /// K (0-based) of N.
        public var index: Int
        public var count: Int
        /// Images of the whole pass, and this shard's.
        public var totalImages: Int
        public var images: Range<Int>
        /// Units (batch groups for gradients, batches for evaluations) of this shard.
        public var units: Range<Int>
        public var batchSize: Int
        public var unitBatches: Int
        public var weightsDigest: String
        /// Each data file's name, images used, size and content digest.
        public var dataDigest: String
        /// Text the merged file repeats: model path, data paths, scaling; and the gmtool that made it.
        public var model: String
        public var data: String
        public var scaling: String
        public var tool: String
        /// Gradients: each trainable weight's dataset path and shape, in checkpoint order.
        public var weights: [(path: String, shape: [Int])]
        /// Sweeps: the whole grid and the settings its points depend on (empty for passes).
        public var grid: String

        public init(kind: Kind, index: Int, count: Int, totalImages: Int, images: Range<Int>, units: Range<Int>,
                    batchSize: Int, unitBatches: Int, weightsDigest: String, dataDigest: String, model: String,
                    data: String, scaling: String, tool: String, weights: [(path: String, shape: [Int])], grid: String = "") {
            self.kind = kind; self.index = index; self.count = count; self.totalImages = totalImages
            self.images = images; self.units = units; self.batchSize = batchSize; self.unitBatches = unitBatches
            self.weightsDigest = weightsDigest; self.dataDigest = dataDigest; self.model = model; self.data = data
            self.scaling = scaling; self.tool = tool; self.weights = weights; self.grid = grid
        }

        /// "shard 2/4" (K 0-based).
        public var label: String { "shard \(index)/\(count)" }
        /// What the ranges count: "images" of a pass, "points" of a sweep.
        public var noun: String { kind == .sweep ? "points" : "images" }
    }

    /// Per-batch totals of a shard, in batch order.
    public struct Batches: Sendable {
        public var images: [Int64] = []
        public var lossSum: [Double] = []
        public var top1: [Int64] = []
        public var top5: [Int64] = []
        public init() {}
    }

    /// Writes a shard atomically: the header, then whatever `body` adds through the writer
    /// (group partials as each group finishes, so memory stays flat), then `batches()` (a pass's
    /// shard; nil for a sweep's, which has none).
    public static func write(to path: String, header: Header, body: (Writer) throws -> Void, batches: (() -> Batches)?) throws {
        try writeAtomically(to: path) { temporary in
            do {
                let file = try HDF5File.create(temporary)
                let root = file.root
                let text: [String: String] = [
                    marker: header.kind.rawValue, "weights_digest": header.weightsDigest, "data_digest": header.dataDigest,
                    "model": header.model, "data": header.data, "scaling": header.scaling, "tool": header.tool, "grid": header.grid,
                    "weight_shapes": header.weights.map { $0.shape.map(String.init).joined(separator: ",") }.joined(separator: ";"),
                ]
                for (key, value) in text.sorted(by: { $0.key < $1.key }) { try root.setAttribute(key, string: value) }
                let numbers: [String: Int] = [
                    "shard": header.index, "shards": header.count, "total_images": header.totalImages,
                    "first_image": header.images.lowerBound, "end_image": header.images.upperBound,
                    "first_unit": header.units.lowerBound, "end_unit": header.units.upperBound,
                    "batch_size": header.batchSize, "unit_batches": header.unitBatches,
                ]
                for (key, value) in numbers.sorted(by: { $0.key < $1.key }) { try root.setAttribute(key, values: [Int64(value)], scalar: true) }
                try root.setAttribute("weight_paths", strings: header.weights.map(\.path).isEmpty ? [""] : header.weights.map(\.path))
                try body(Writer(file: file, header: header))
                if let totals = batches?() {
                    try checkedDataset(root, "batches/images", totals.images)
                    try checkedDataset(root, "batches/loss_sum", totals.lossSum)
                    try checkedDataset(root, "batches/top1", totals.top1)
                    try checkedDataset(root, "batches/top5", totals.top5)
                }
                try file.flush()
            } catch let error as HDF5Error {
                throw CheckpointError(file: path, object: error.path, problem: "write failed (\(error.detail))")
            }
        }
    }

    /// Adds group partials to a shard being written.
    public struct Writer {
        let file: HDF5File
        let header: Header
        /// The partial sums over batch groups `units` (a `GroupTree` piece), one buffer per weight
        /// in `header.weights` order.
        public func addPiece(_ units: Range<Int>, _ tensors: [UnsafeBufferPointer<Double>]) throws {
            precondition(tensors.count == header.weights.count)
            for (weight, values) in zip(header.weights, tensors) {
                try checkedDataset(file.root, ShardFile.piecePath(units, weight.path), Array(values), shape: weight.shape)
            }
        }

        /// Bytes (a sweep shard's JSON) at `name`, with their digest.
        public func addBytes(_ name: String, _ bytes: [UInt8]) throws {
            try checkedDataset(file.root, name, bytes)
        }
    }

    static func piecePath(_ units: Range<Int>, _ weightPath: String) -> String {
        "groups/\(String(format: "%06d-%06d", units.lowerBound, units.upperBound - 1))/\(weightPath.hasPrefix("/") ? String(weightPath.dropFirst()) : weightPath)"
    }

    private static func checkedDataset<T: HDF5Scalar>(_ root: HDF5Group, _ name: String, _ values: [T], shape: [Int]? = nil) throws {
        let dataset = try root.createDataset(name, shape: shape ?? [values.count], values: values)
        try dataset.setAttribute("digest", string: digest(values))
    }

    private static func digest<T>(_ values: [T]) -> String {
        values.withUnsafeBytes { crc32Hex(crc32(of: $0, after: 0)) }
    }

    /// An open shard file, its header checked to be complete.
    public final class Reader {
        public let path: String
        public let header: Header
        let file: HDF5File

        /// Opens `path`; refuses (naming the file) a file that is missing, not HDF5, truncated,
        /// not a shard, or lacks part of the header.
        public init(_ path: String) throws {
            self.path = path
            try checkInputFile(path, kind: "shard file")
            file = try Checkpoint.openHDF5(path, reportedAs: path)
            let root = file.root
            func text(_ name: String) throws -> String {
                guard (try? root.hasAttribute(name)) == true, let value = try? root.attribute(name).readString() else {
                    throw CheckpointError(file: path, problem: name == marker ? "is not a shard file written by `gmtool grad`, `eval` or `sweep --shard` (no \(marker) attribute)"
                                                                                 : "is not a complete shard file (attribute \(name) missing or unreadable)")
                }
                return value
            }
            func number(_ name: String) throws -> Int {
                guard (try? root.hasAttribute(name)) == true, let values = try? root.attribute(name).read(as: Int64.self),
                      values.count == 1, values[0] >= 0 else {
                    throw CheckpointError(file: path, problem: "is not a complete shard file (attribute \(name) missing or unreadable)")
                }
                return Int(values[0])
            }
            guard let kind = Kind(rawValue: try text(marker)) else {
                throw CheckpointError(file: path, problem: "is a shard of an unknown kind (\(marker) = \(try text(marker)))")
            }
            let paths = ((try? root.attribute("weight_paths").readStrings()) ?? []).filter { !$0.isEmpty }
            let shapesText = try text("weight_shapes")
            let shapes = shapesText.isEmpty ? [] : shapesText.split(separator: ";", omittingEmptySubsequences: false)
                .map { $0.split(separator: ",").compactMap { Int($0) } }
            guard paths.count == shapes.count else {
                throw CheckpointError(file: path, problem: "is not a complete shard file (\(paths.count) weight paths, \(shapes.count) shapes)")
            }
            let (first, end) = (try number("first_image"), try number("end_image"))
            let (firstUnit, endUnit) = (try number("first_unit"), try number("end_unit"))
            let (index, count) = (try number("shard"), try number("shards"))
            guard first < end, firstUnit < endUnit, index < count, try number("batch_size") > 0, try number("unit_batches") > 0 else {
                throw CheckpointError(file: path, problem: "is not a valid shard file (empty or inverted ranges)")
            }
            header = Header(kind: kind, index: index, count: count, totalImages: try number("total_images"),
                            images: first..<end, units: firstUnit..<endUnit, batchSize: try number("batch_size"),
                            unitBatches: try number("unit_batches"), weightsDigest: try text("weights_digest"),
                            dataDigest: try text("data_digest"), model: try text("model"), data: try text("data"),
                            scaling: try text("scaling"), tool: try text("tool"), weights: Array(zip(paths, shapes)),
                            grid: kind == .sweep ? try text("grid") : "")
        }

        /// The per-batch totals, checked (digests, lengths equal, one batch per batch of the range).
        public func batches() throws -> Batches {
            var totals = Batches()
            totals.images = try read("batches/images", as: Int64.self)
            totals.lossSum = try read("batches/loss_sum", as: Double.self)
            totals.top1 = try read("batches/top1", as: Int64.self)
            totals.top5 = try read("batches/top5", as: Int64.self)
            let expected = (header.images.count + header.batchSize - 1) / header.batchSize
            guard [totals.lossSum.count, totals.top1.count, totals.top5.count].allSatisfy({ $0 == totals.images.count }),
                  totals.images.count == expected, totals.images.reduce(0, +) == Int64(header.images.count) else {
                throw CheckpointError(file: path, object: "/batches", problem: "holds \(totals.images.count) batches totalling \(totals.images.reduce(0, +)) images; the shard's images \(header.images.lowerBound)-\(header.images.upperBound - 1) are \(expected) batches")
            }
            return totals
        }

        /// The bytes `Writer.addBytes` wrote at `name`, checked against their digest.
        public func bytes(_ name: String) throws -> [UInt8] { try read(name, as: UInt8.self) }

        /// The partial sums over batch groups `units` of weight `weight` (an index into `header.weights`).
        public func piece(_ units: Range<Int>, weight: Int) throws -> [Double] {
            let name = ShardFile.piecePath(units, header.weights[weight].path)
            let values = try read(name, as: Double.self)
            guard values.count == header.weights[weight].shape.reduce(1, *) else {
                throw CheckpointError(file: path, object: "/" + name, problem: "holds \(values.count) values, the weight has \(header.weights[weight].shape.reduce(1, *))")
            }
            return values
        }

        private func read<T: HDF5Scalar>(_ name: String, as: T.Type) throws -> [T] {
            let object = "/" + name
            guard file.root.kind(of: name) == .dataset else {
                throw CheckpointError(file: path, object: object, problem: "missing: the shard is incomplete")
            }
            do {
                let dataset = try file.root.dataset(name)
                guard dataset.elementType == T.hdf5ElementType else {
                    throw CheckpointError(file: path, object: object, problem: "has the wrong element type")
                }
                let values = try dataset.read(as: T.self)
                guard (try? dataset.attribute("digest").readString()) == ShardFile.digest(values) else {
                    throw CheckpointError(file: path, object: object, problem: "is corrupt (its contents do not match the digest written with them)")
                }
                return values
            } catch let error as HDF5Error {
                throw CheckpointError(file: path, object: object, problem: "cannot be read (\(error.detail)); the file may be truncated or corrupt")
            }
        }
    }
}

/// A CRC-32 (zlib) of bytes, continuing `crc`.
func crc32(of bytes: UnsafeRawBufferPointer, after crc: UInt) -> UInt {
    var crc = crc
    var rest = bytes[...]
    while !rest.isEmpty {  // uInt lengths: at most 1 GiB at a time
        let piece = UnsafeRawBufferPointer(rebasing: rest.prefix(1 << 30))
        crc = CZlib.crc32(crc, piece.bindMemory(to: Bytef.self).baseAddress, uInt(piece.count))
        rest = rest.dropFirst(piece.count)
    }
    return crc
}

func crc32Hex(_ crc: UInt) -> String {
    let digits = String(UInt32(truncatingIfNeeded: crc), radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}

/// The data files for a shard's provenance: each file's name (not its folder: nodes may mount
/// the data elsewhere), the images used from it, its size and the CRC-32 of its bytes (a check
/// against mix-ups, like the weights digest, not against forgery). A folder (an image folder's
/// entry) is digested as all its files, not hidden ones, in sorted order of their paths inside
/// it, each path's bytes then the file's.
public func dataFilesDigest(_ files: [(path: String, records: Int)]) throws -> String {
    try files.map { file in
        var crc = CZlib.crc32(0, nil, 0)
        var size = 0
        func add(_ path: String) throws {
            guard let handle = FileHandle(forReadingAtPath: path) else { throw CheckpointError(file: path, problem: "cannot be read") }
            defer { try? handle.close() }
            do {
                while let chunk = try handle.read(upToCount: 1 << 22), !chunk.isEmpty {
                    crc = chunk.withUnsafeBytes { crc32(of: $0, after: crc) }
                    size += chunk.count
                }
            } catch {
                throw CheckpointError(file: path, problem: "cannot be read (\(error.localizedDescription))")
            }
        }
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: file.path, isDirectory: &isFolder), isFolder.boolValue {
            let members = (FileManager.default.subpaths(atPath: file.path) ?? [])
                .filter { !$0.split(separator: "/").contains { $0.hasPrefix(".") } }.sorted()
            for member in members {
                let path = (file.path as NSString).appendingPathComponent(member)
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else { continue }
                crc = Array(member.utf8).withUnsafeBytes { crc32(of: $0, after: crc) }
                try add(path)
            }
        } else {
            try add(file.path)
        }
        return "\(URL(fileURLWithPath: file.path).lastPathComponent):\(file.records) images:\(size) bytes:crc32 \(crc32Hex(crc))"
    }.joined(separator: ";")
}
