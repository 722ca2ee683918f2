internal import CZlib
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A problem with a zip archive: the file, the entry (or empty), and what is wrong.
public struct ZipError: Error, CustomStringConvertible, Sendable {
    public var file: String
    public var entry: String
    public var problem: String
    public init(file: String, entry: String = "", problem: String) {
        self.file = file
        self.entry = entry
        self.problem = problem
    }
    public var description: String { entry.isEmpty ? "\(file): \(problem)" : "\(file): \(entry): \(problem)" }
}

/// A zip archive mapped read-only: the central directory parsed strictly (no zip64, no unsafe
/// or repeated names), entries stored or deflated. The mechanics only: what an entry may
/// inflate to is the caller's policy (`.keras` checkpoints and NumPy `.npz` archives differ), so
/// callers check an entry's declared sizes before inflating it; inflating then stops at the
/// declared size, since declared sizes can lie, and checks the CRC.
public final class ZipArchive: @unchecked Sendable {
    public struct Entry: Sendable {
        public var name: String
        public var method: UInt16  // 0 stored, 8 deflate
        public var crc32: UInt32
        public var compressedSize: Int
        public var uncompressedSize: Int
        public var localHeaderOffset: Int
        public var dataOffset: Int
    }

    public let path: String
    public let entries: [Entry]
    /// The whole file, mapped (an archive of a few GB is not read into memory).
    public let bytes: UnsafeRawBufferPointer
    private let mappedBytes: Int

    public static func looksLikeZip(_ path: String) -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        let magic = (try? handle.read(upToCount: 4)) ?? Data()
        return magic == Data([0x50, 0x4B, 0x03, 0x04])
    }

    /// `kind` names the archive in messages ("is not a valid .keras archive (...)").
    public init(path: String, kind: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ZipError(file: path, problem: "cannot be read") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { throw ZipError(file: path, problem: "cannot be read") }
        let size = Int(info.st_size)
        mappedBytes = max(size, 1)
        guard let mapped = mmap(nil, mappedBytes, PROT_READ, MAP_PRIVATE, fd, 0), mapped != MAP_FAILED else {
            throw ZipError(file: path, problem: "cannot be memory-mapped")
        }
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
        do { entries = try Self.readDirectory(bytes, path: path, kind: kind) } catch {
            munmap(mapped, mappedBytes)
            throw error
        }
    }

    deinit { munmap(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), mappedBytes) }

    public func entry(_ name: String) -> Entry? { entries.first { $0.name == name } }

    /// The entry's bytes as stored in the archive (compressed when its method is deflate).
    public func payload(of entry: Entry) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: bytes[entry.dataOffset..<(entry.dataOffset + entry.compressedSize)])
    }

    // MARK: Reading the directory

    private static func readDirectory(_ bytes: UnsafeRawBufferPointer, path: String, kind: String) throws -> [Entry] {
        func bad(_ problem: String) -> ZipError { ZipError(file: path, problem: "is not a valid \(kind) (\(problem))") }
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
            let name = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[(offset + 46)..<(offset + 46 + nameLength)]), as: UTF8.self)
            // gmtool copies entries byte for byte into the archives it writes, where an unzip
            // would place them: names that land outside the folder or collide are refused rather
            // than passed on.
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

    // MARK: Inflating

    /// How much is inflated (or copied) between two hand-offs to the sink.
    private static let pieceSize = 1 << 20

    /// Hands `sink` the entry's uncompressed bytes, a megabyte at a time; stops with an error the
    /// moment the output passes the declared size, and checks the size and CRC at the end. A
    /// stored entry must declare equal stored and uncompressed sizes.
    public func inflate(_ entry: Entry, into sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        func corrupt(_ problem: String) -> ZipError { ZipError(file: path, entry: entry.name, problem: problem) }
        if entry.method == 0 && entry.compressedSize != entry.uncompressedSize {
            throw corrupt("is stored uncompressed but declares \(entry.compressedSize) bytes stored and \(entry.uncompressedSize) uncompressed: the archive is corrupt")
        }
        var crc = CZlib.crc32(0, nil, 0)
        var produced = 0
        let input = payload(of: entry)
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
                let end = min(input.count, start + Self.pieceSize)
                try emit(UnsafeRawBufferPointer(rebasing: input[start..<end]))
                start = end
            }
        case 8:
            try inflateDeflate(input, entry: entry, emit)
        default:
            throw corrupt("uses zip compression method \(entry.method); only stored and deflate are supported")
        }
        guard produced == entry.uncompressedSize else {
            throw corrupt("inflates to \(produced) bytes, not the declared \(entry.uncompressedSize): the archive is corrupt")
        }
        guard UInt32(crc) == entry.crc32 else { throw corrupt("CRC mismatch: the archive is corrupt") }
    }

    /// An entry held in memory (the caller has checked its declared size).
    public func contents(of entry: Entry) throws -> Data {
        var output = Data()
        try inflate(entry) { output.append(contentsOf: $0) }
        return output
    }

    /// Checks a stored entry's CRC and returns its bytes in place (nothing copied).
    public func storedBytes(of entry: Entry) throws -> UnsafeRawBufferPointer {
        precondition(entry.method == 0)
        try inflate(entry) { _ in }
        return payload(of: entry)
    }

    private func inflateDeflate(_ input: UnsafeRawBufferPointer, entry: Entry, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        func corrupt() -> ZipError { ZipError(file: path, entry: entry.name, problem: "deflate data is corrupt") }
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw ZipError(file: path, entry: entry.name, problem: "cannot start decompression")
        }
        defer { inflateEnd(&stream) }
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.pieceSize, alignment: 16)
        defer { output.deallocate() }
        stream.next_in = UnsafeMutablePointer(mutating: input.bindMemory(to: Bytef.self).baseAddress)
        stream.avail_in = uInt(input.count)
        var status = Z_OK
        while status != Z_STREAM_END {
            stream.next_out = output.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(Self.pieceSize)
            status = CZlib.inflate(&stream, Z_NO_FLUSH)
            // Z_BUF_ERROR: no progress possible, the input ended before the stream did.
            guard status == Z_OK || status == Z_STREAM_END else { throw corrupt() }
            try emit(UnsafeRawBufferPointer(rebasing: output[0..<(Self.pieceSize - Int(stream.avail_out))]))
        }
    }

    public static func crc32(of buffer: UnsafeRawBufferPointer) -> UInt32 {
        UInt32(CZlib.crc32(0, buffer.bindMemory(to: Bytef.self).baseAddress, uInt(buffer.count)))
    }
}
