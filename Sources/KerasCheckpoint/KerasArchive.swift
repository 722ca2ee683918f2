internal import CZlib
import Foundation

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
        metadata = (try? Self.contents(of: "metadata.json", in: data, entries: entries, path: path))
            .flatMap { try? JSONValue.parse(String(decoding: $0, as: UTF8.self)) }
        if extractWeights {
            let weights = try Self.contents(of: "model.weights.h5", in: data, entries: entries, path: path)
            do { try weights.write(to: URL(fileURLWithPath: weightsFilePath)) } catch {
                throw CheckpointError(file: path, problem: "cannot extract model.weights.h5 to \(weightsFilePath)")
            }
        }
    }

    deinit { scratch?.remove() }

    func text(_ name: String) throws -> String {
        String(decoding: try Self.contents(of: name, in: data, entries: entries, path: path), as: UTF8.self)
    }

    // MARK: Reading

    private static func readDirectory(_ data: Data, path: String) throws -> [Entry] {
        func bad(_ problem: String) -> CheckpointError { CheckpointError(file: path, problem: "is not a valid .keras archive (\(problem))") }
        let bytes = [UInt8](data)
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
        for _ in 0..<count {
            guard offset + 46 <= bytes.count, u32(offset) == 0x0201_4B50 else { throw bad("corrupt central directory") }
            let nameLength = u16(offset + 28), extraLength = u16(offset + 30), commentLength = u16(offset + 32)
            guard offset + 46 + nameLength <= bytes.count else { throw bad("corrupt central directory") }
            let name = String(decoding: bytes[(offset + 46)..<(offset + 46 + nameLength)], as: UTF8.self)
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

    private static func contents(of name: String, in data: Data, entries: [Entry], path: String) throws -> Data {
        guard let entry = entries.first(where: { $0.name == name }) else {
            throw CheckpointError(file: path, object: name, problem: "missing from the .keras archive")
        }
        let raw = data.subdata(in: (data.startIndex + entry.dataOffset)..<(data.startIndex + entry.dataOffset + entry.compressedSize))
        let output: Data
        switch entry.method {
        case 0: output = raw
        case 8: output = try inflate(raw, expectedSize: entry.uncompressedSize, name: name, path: path)
        default: throw CheckpointError(file: path, object: name, problem: "uses zip compression method \(entry.method); only stored and deflate are supported")
        }
        guard crc32Of(output) == entry.crc32 else {
            throw CheckpointError(file: path, object: name, problem: "CRC mismatch: the archive is corrupt")
        }
        return output
    }

    private static func inflate(_ input: Data, expectedSize: Int, name: String, path: String) throws -> Data {
        var output = Data(count: expectedSize)
        var stream = z_stream()
        guard inflateInit2_(&stream, -MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw CheckpointError(file: path, object: name, problem: "cannot start decompression")
        }
        defer { inflateEnd(&stream) }
        var input = input
        let status: Int32 = input.withUnsafeMutableBytes { source in
            output.withUnsafeMutableBytes { destination in
                stream.next_in = source.bindMemory(to: Bytef.self).baseAddress
                stream.avail_in = uInt(source.count)
                stream.next_out = destination.bindMemory(to: Bytef.self).baseAddress
                stream.avail_out = uInt(destination.count)
                return CZlib.inflate(&stream, Z_FINISH)
            }
        }
        guard status == Z_STREAM_END, Int(stream.total_out) == expectedSize else {
            throw CheckpointError(file: path, object: name, problem: "deflate data is corrupt")
        }
        return output
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
