internal import CZlib
import Foundation
import HDF5

/// A Keras 3 `.keras` file: a zip of `metadata.json`, `config.json` and `model.weights.h5`.
/// Reading extracts `model.weights.h5` to a private temporary file (libhdf5 opens files by path);
/// writing copies every other entry byte for byte and replaces the weights.
final class KerasArchive {
    struct Entry {
        var name: String
        var method: UInt16  // 0 stored, 8 deflate
        var crc32: UInt32
        var compressedSize: Int
        var uncompressedSize: Int
        var localHeaderOffset: Int
        var dataOffset: Int
    }

    let path: String
    let data: Data
    let entries: [Entry]
    let metadata: JSONValue?
    /// The extracted `model.weights.h5`, removed when the archive is released (or on a signal).
    let weightsFilePath: String
    private let scratch: Temporaries.ScratchFolder?

    static func looksLikeZip(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let magic = (try? handle.read(upToCount: 4)) ?? Data()
        return magic == Data([0x50, 0x4B, 0x03, 0x04])
    }

    init(path: String, extractWeights: Bool = true) throws {
        self.path = path
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw CheckpointError(file: path, problem: "cannot be read")
        }
        entries = try Self.readDirectory(data, path: path)
        scratch = extractWeights ? try Temporaries.ScratchFolder(holding: "model.weights.h5", for: path) : nil
        weightsFilePath = scratch?.file ?? ""
        // Only keras_version is taken from metadata.json, so one that is not JSON is ignored; one
        // that breaks the archive's limits is not.
        if let entry = Self.entry("metadata.json", in: entries) {
            let text = String(decoding: try Self.contents(of: entry, in: data, path: path), as: UTF8.self)
            metadata = try? JSONValue.parse(text)
        } else {
            metadata = nil
        }
        if extractWeights {
            try Self.extract("model.weights.h5", from: data, entries: entries, path: path, to: weightsFilePath)
        }
    }

    deinit { scratch?.remove() }

    func text(_ name: String) throws -> String {
        guard let entry = Self.entry(name, in: entries) else {
            throw CheckpointError(file: path, object: name, problem: "missing from the .keras archive")
        }
        return String(decoding: try Self.contents(of: entry, in: data, path: path), as: UTF8.self)
    }

    // MARK: Reading

    private static func entry(_ name: String, in entries: [Entry]) -> Entry? { entries.first { $0.name == name } }

    private static func readDirectory(_ data: Data, path: String) throws -> [Entry] {
        func bad(_ problem: String) -> CheckpointError { CheckpointError(file: path, problem: "is not a valid .keras archive (\(problem))") }
        let bytes = data  // indexed in place (from 0, as read): a copy would double the archive in memory
        func u16(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 }
        func u32(_ at: Int) -> Int { u16(at) | u16(at + 2) << 16 }
        // End of central directory: last occurrence of PK\5\6 within the final 64 KB + 22 bytes.
        guard bytes.count >= 22 else { throw bad("too short") }
        var end = -1
        var position = bytes.count - 22
        while position >= max(0, bytes.count - 65_557) {
            if bytes[position] == 0x50, bytes[position + 1] == 0x4B, bytes[position + 2] == 5, bytes[position + 3] == 6 {
                end = position
                break
            }
            position -= 1
        }
        guard end >= 0 else { throw bad("no central directory; truncated?") }
        let count = u16(end + 10)
        var offset = u32(end + 16)
        var entries: [Entry] = []
        var names = Set<String>()
        for _ in 0..<count {
            guard offset + 46 <= bytes.count, u32(offset) == 0x0201_4B50 else { throw bad("corrupt central directory") }
            let nameLength = u16(offset + 28), extraLength = u16(offset + 30), commentLength = u16(offset + 32)
            guard offset + 46 + nameLength <= bytes.count else { throw bad("corrupt central directory") }
            let name = String(decoding: bytes[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
            // Every other entry is copied byte for byte into the archives gmtool writes, where an
            // unzip would place it: refuse names that land outside the folder or collide rather
            // than pass them on.
            if let problem = nameProblem(name) { throw bad("entry name '\(name)' \(problem)") }
            guard names.insert(name).inserted else { throw bad("entry '\(name)' appears twice") }
            let local = u32(offset + 42)
            guard local + 30 <= bytes.count, u32(local) == 0x0403_4B50 else { throw bad("corrupt local header for \(name)") }
            let dataOffset = local + 30 + u16(local + 26) + u16(local + 28)
            let entry = Entry(name: name, method: UInt16(u16(offset + 10)), crc32: UInt32(u32(offset + 16)),
                              compressedSize: u32(offset + 20), uncompressedSize: u32(offset + 24),
                              localHeaderOffset: local, dataOffset: dataOffset)
            guard entry.compressedSize != 0xFFFF_FFFF, entry.uncompressedSize != 0xFFFF_FFFF else { throw bad("zip64 is not supported") }
            guard dataOffset + entry.compressedSize <= bytes.count else { throw bad("\(name) is truncated") }
            entries.append(entry)
            offset += 46 + nameLength + extraLength + commentLength
        }
        return entries
    }

    /// Why an entry name is unsafe to pass on, or nil: absolute names (a leading slash or
    /// backslash, a drive letter) and `..` components, with either slash as the separator.
    private static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.hasPrefix("/") || name.hasPrefix("\\") || name.first?.isLetter == true && name.dropFirst().hasPrefix(":") {
            return "is absolute"
        }
        if name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).contains("..") { return "climbs out of the archive with '..'" }
        return nil
    }

    // MARK: Limits

    /// config.json and metadata.json are text: Keras' largest applications models write under
    /// 1 MiB of config, so 64 MiB is generous and still keeps a bomb from filling memory (these
    /// entries are held in memory and parsed).
    static let jsonLimit = 64 << 20

    /// model.weights.h5 is streamed to disk, but every weight in it is then read into memory
    /// (eval, prune and train hold them all), so a weights file larger than this machine's
    /// memory could never be used; the zip format without zip64 (refused above) caps an entry
    /// below 4 GiB anyway.
    static var weightsLimit: Int { min(MachineMemory.bytes, 0xFFFF_FFFF) }

    /// The largest compression ratio accepted for an entry that inflates past `ratioFloor`.
    /// Deflate tops out near 1032:1, reached only by long runs of one byte; trained float32
    /// weights deflate about 1.1:1, a 99%-pruned model's file about 100:1, JSON 5-20:1, while a
    /// zip bomb sits near the ceiling.
    static let ratioLimit = 200
    /// Entries that inflate to less than this are never bombs, whatever their ratio (a small
    /// config of repeated text can compress far).
    static let ratioFloor = 1 << 20

    /// The limit on what `name` may inflate to.
    private static func sizeLimit(for name: String) -> Int { name == "model.weights.h5" ? weightsLimit : jsonLimit }

    /// Checks an entry's declared sizes against the limits, before a byte is inflated. Inflating
    /// then stops at the declared size, so declared sizes that lie cannot get past the limits.
    private static func checkDeclaredSizes(_ entry: Entry, path: String) throws {
        func refuse(_ problem: String) -> CheckpointError { CheckpointError(file: path, object: entry.name, problem: problem) }
        let size = entry.uncompressedSize, limit = sizeLimit(for: entry.name)
        if size > limit {
            throw refuse("declares \(size) bytes uncompressed (\(describeBytes(size))), over gmtool's \(describeBytes(limit)) limit for this entry")
        }
        if entry.method == 0 && entry.compressedSize != size {
            throw refuse("is stored uncompressed but declares \(entry.compressedSize) bytes stored and \(size) uncompressed: the archive is corrupt")
        }
        if size > ratioFloor && size / max(entry.compressedSize, 1) > ratioLimit {
            throw refuse("declares a compression ratio of \(size / max(entry.compressedSize, 1)):1 (\(describeBytes(entry.compressedSize)) inflating to \(describeBytes(size))), over gmtool's \(ratioLimit):1 limit")
        }
    }

    // MARK: Inflating

    /// An entry held in memory (the JSON entries, within `jsonLimit`).
    private static func contents(of entry: Entry, in data: Data, path: String) throws -> Data {
        var output = Data()
        try inflate(entry, in: data, path: path) { output.append(contentsOf: $0) }
        return output
    }

    /// Extracts an entry to a new file at `destination`, a piece at a time.
    private static func extract(_ name: String, from data: Data, entries: [Entry], path: String, to destination: String) throws {
        guard let entry = entry(name, in: entries) else {
            throw CheckpointError(file: path, object: name, problem: "missing from the .keras archive")
        }
        func failed(_ cause: String) -> CheckpointError {
            CheckpointError(file: path, problem: "cannot extract \(name) to \(destination) (\(cause))")
        }
        let descriptor = open(destination, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw failed(String(cString: strerror(errno))) }
        do {
            try inflate(entry, in: data, path: path) { piece in
                var written = 0
                while written < piece.count {
                    let result = Glibc.write(descriptor, piece.baseAddress! + written, piece.count - written)
                    guard result > 0 else { throw failed(String(cString: strerror(errno))) }
                    written += result
                }
            }
        } catch {
            close(descriptor)
            throw error
        }
        guard close(descriptor) == 0 else { throw failed(String(cString: strerror(errno))) }
    }

    /// Hands `sink` the entry's uncompressed bytes, a megabyte at a time, after checking its
    /// declared sizes; stops with an error the moment the output passes the declared size, and
    /// checks the CRC at the end.
    private static func inflate(_ entry: Entry, in data: Data, path: String, into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        func corrupt(_ problem: String) -> CheckpointError { CheckpointError(file: path, object: entry.name, problem: problem) }
        try checkDeclaredSizes(entry, path: path)
        var crc = CZlib.crc32(0, nil, 0)
        var produced = 0
        try data.withUnsafeBytes { (archive: UnsafeRawBufferPointer) in
            let input = UnsafeRawBufferPointer(rebasing: archive[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
            func emit(_ piece: UnsafeRawBufferPointer) throws {
                produced += piece.count
                guard produced <= entry.uncompressedSize else {
                    throw corrupt("inflates past its declared \(entry.uncompressedSize) bytes: the archive is corrupt")
                }
                crc = CZlib.crc32(crc, piece.bindMemory(to: Bytef.self).baseAddress, uInt(piece.count))
                try sink(piece)
            }
            switch entry.method {
            case 0:
                var start = 0
                while start < input.count {
                    let end = min(input.count, start + pieceSize)
                    try emit(UnsafeRawBufferPointer(rebasing: input[start..<end]))
                    start = end
                }
            case 8:
                try inflateDeflate(input, entry: entry, path: path, emit)
            default:
                throw corrupt("uses zip compression method \(entry.method); only stored and deflate are supported")
            }
        }
        guard produced == entry.uncompressedSize else {
            throw corrupt("inflates to \(produced) bytes, not the declared \(entry.uncompressedSize): the archive is corrupt")
        }
        guard UInt32(crc) == entry.crc32 else {
            throw corrupt("CRC mismatch: the archive is corrupt")
        }
    }

    /// How much is inflated (or copied) between two hand-offs to the sink.
    private static let pieceSize = 1 << 20

    private static func inflateDeflate(_ input: UnsafeRawBufferPointer, entry: Entry, path: String,
                                       _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        func corrupt() -> CheckpointError { CheckpointError(file: path, object: entry.name, problem: "deflate data is corrupt") }
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CheckpointError(file: path, object: entry.name, problem: "cannot start decompression")
        }
        defer { inflateEnd(&stream) }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: pieceSize, alignment: 16)
        defer { output.deallocate() }
        stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.avail_in = uInt(input.count)
        var status = Z_OK
        while status != Z_STREAM_END {
            stream.next_out = output.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(pieceSize)
            status = CZlib.inflate(&stream, Z_NO_FLUSH)
            // Z_BUF_ERROR: no progress possible, the input ended before the stream did.
            guard status == Z_OK || status == Z_STREAM_END else { throw corrupt() }
            try emit(UnsafeRawBufferPointer(rebasing: output[0..<(pieceSize - Int(stream.avail_out))]))
        }
    }

    static func crc32Of(_ data: Data) -> UInt32 {
        data.withUnsafeBytes { buffer in
            UInt32(CZlib.crc32(0, buffer.bindMemory(to: Bytef.self).baseAddress, uInt(buffer.count)))
        }
    }

    // MARK: Writing

    /// Writes a copy of the archive to `destination` with `model.weights.h5` taken from
    /// `weightsFile`. Other entries keep their bytes and compression; the new weights are stored
    /// uncompressed, as Keras itself stores them.
    func write(to destination: URL, weightsFile: String) throws {
        let newWeights = try Data(contentsOf: URL(fileURLWithPath: weightsFile))
        var out = Data()
        var central = Data()
        func put16(_ d: inout Data, _ v: Int) { d.append(UInt8(v & 0xFF)); d.append(UInt8((v >> 8) & 0xFF)) }
        func put32(_ d: inout Data, _ v: Int) { put16(&d, v & 0xFFFF); put16(&d, (v >> 16) & 0xFFFF) }
        for entry in entries {
            let isWeights = entry.name == "model.weights.h5"
            let payload = isWeights ? newWeights
                : data.subdata(in: (data.startIndex + entry.dataOffset)..<(data.startIndex + entry.dataOffset + entry.compressedSize))
            let method = isWeights ? 0 : Int(entry.method)
            let crc = isWeights ? Int(Self.crc32Of(newWeights)) : Int(entry.crc32)
            let uncompressed = isWeights ? newWeights.count : entry.uncompressedSize
            guard out.count < 0xFFFF_FFFF, payload.count < 0xFFFF_FFFF else {
                throw CheckpointError(file: destination.path, problem: "archive over 4 GB (zip64) is not supported")
            }
            let name = Data(entry.name.utf8)
            let localOffset = out.count
            put32(&out, 0x0403_4B50); put16(&out, 20); put16(&out, 0); put16(&out, method)
            put16(&out, 0); put16(&out, 0x21)  // time, date: 1980-01-01 00:00, as Python's zipfile writes for a fixed stamp
            put32(&out, crc); put32(&out, payload.count); put32(&out, uncompressed)
            put16(&out, name.count); put16(&out, 0)
            out.append(name)
            out.append(payload)
            put32(&central, 0x0201_4B50); put16(&central, 20); put16(&central, 20); put16(&central, 0); put16(&central, method)
            put16(&central, 0); put16(&central, 0x21)
            put32(&central, crc); put32(&central, payload.count); put32(&central, uncompressed)
            put16(&central, name.count); put16(&central, 0); put16(&central, 0); put16(&central, 0); put16(&central, 0)
            put32(&central, 0); put32(&central, localOffset)
            central.append(name)
        }
        let centralOffset = out.count
        out.append(central)
        put32(&out, 0x0605_4B50); put16(&out, 0); put16(&out, 0)
        put16(&out, entries.count); put16(&out, entries.count)
        put32(&out, central.count); put32(&out, centralOffset); put16(&out, 0)
        try out.write(to: destination)
    }
}
