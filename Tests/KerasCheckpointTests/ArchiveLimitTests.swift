import Engine
import CZlib
import Foundation
import HDF5
import Testing
@testable import KerasCheckpoint

/// One entry of a zip the tests write, with what its headers declare (which may lie).
struct ZipEntry {
    var name: String
    /// The bytes stored in the archive (already deflated when `method` is 8).
    var payload: Data
    var method: Int = 0
    var crc: UInt32
    var declaredSize: Int

    /// An entry stored as is, declaring the truth.
    static func stored(_ name: String, _ contents: Data) -> ZipEntry {
        ZipEntry(name: name, payload: contents, crc: crc32(contents), declaredSize: contents.count)
    }

    /// An entry deflated at `level`, declaring its true size unless told otherwise.
    static func deflated(_ name: String, _ contents: Data, level: Int32 = 6, declaring size: Int? = nil) -> ZipEntry {
        ZipEntry(name: name, payload: deflate(contents, level: level), method: 8, crc: crc32(contents), declaredSize: size ?? contents.count)
    }
}

func crc32(_ data: Data) -> UInt32 {
    data.withUnsafeBytes { UInt32(CZlib.crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt($0.count))) }
}

/// Raw deflate (no zlib header), as zip stores it.
func deflate(_ data: Data, level: Int32) -> Data {
    var stream = z_stream()
    precondition(deflateInit2_(&stream, level, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK)
    defer { deflateEnd(&stream) }
    var output = Data(count: Int(deflateBound(&stream, uLong(data.count))))
    var input = data
    let produced: Int = input.withUnsafeMutableBytes { source in
        output.withUnsafeMutableBytes { destination in
            stream.next_in = source.bindMemory(to: Bytef.self).baseAddress
            stream.avail_in = uInt(source.count)
            stream.next_out = destination.bindMemory(to: Bytef.self).baseAddress
            stream.avail_out = uInt(destination.count)
            precondition(CZlib.deflate(&stream, Z_FINISH) == Z_STREAM_END)
            return Int(stream.total_out)
        }
    }
    return output.prefix(produced)
}

/// A zip of `entries`: local headers, payloads, central directory, end record.
func zip(_ entries: [ZipEntry]) -> Data {
    var out = Data(), central = Data()
    func put16(_ d: inout Data, _ v: Int) { d.append(UInt8(v & 0xFF)); d.append(UInt8((v >> 8) & 0xFF)) }
    func put32(_ d: inout Data, _ v: Int) { put16(&d, v & 0xFFFF); put16(&d, (v >> 16) & 0xFFFF) }
    for entry in entries {
        let name = Data(entry.name.utf8), offset = out.count
        put32(&out, 0x0403_4B50); put16(&out, 20); put16(&out, 0); put16(&out, entry.method); put16(&out, 0); put16(&out, 0x21)
        put32(&out, Int(entry.crc)); put32(&out, entry.payload.count); put32(&out, entry.declaredSize)
        put16(&out, name.count); put16(&out, 0)
        out.append(name)
        out.append(entry.payload)
        put32(&central, 0x0201_4B50); put16(&central, 20); put16(&central, 20); put16(&central, 0); put16(&central, entry.method)
        put16(&central, 0); put16(&central, 0x21)
        put32(&central, Int(entry.crc)); put32(&central, entry.payload.count); put32(&central, entry.declaredSize)
        put16(&central, name.count); put16(&central, 0); put16(&central, 0); put16(&central, 0); put16(&central, 0)
        put32(&central, 0); put32(&central, offset)
        central.append(name)
    }
    let centralOffset = out.count
    out.append(central)
    put32(&out, 0x0605_4B50); put16(&out, 0); put16(&out, 0); put16(&out, entries.count); put16(&out, entries.count)
    put32(&out, central.count); put32(&out, centralOffset); put16(&out, 0)
    return out
}

/// The limits on what a `.keras` archive may inflate to, and the names it may hold.
@Suite struct ArchiveLimitTests {
    let scratch = try! ScratchFolder()
    /// The three entries of fixtures/seqcnn_k3.keras.
    let metadata: Data, config: Data, weights: Data

    init() throws {
        let archive = try KerasArchive(path: Fixtures.path("seqcnn_k3.keras"))
        metadata = Data(try archive.text("metadata.json").utf8)
        config = Data(try archive.text("config.json").utf8)
        weights = try Data(contentsOf: URL(fileURLWithPath: archive.weightsFilePath))
    }

    /// The fixture's entries with `config.json` and `model.weights.h5` replaced where given, plus `extra`.
    func archive(config: ZipEntry? = nil, weights: ZipEntry? = nil, extra: [ZipEntry] = []) throws -> String {
        let path = scratch.path("\(UUID().uuidString).keras")
        let entries = [.stored("metadata.json", metadata), config ?? .stored("config.json", self.config),
                       weights ?? .stored("model.weights.h5", self.weights)] + extra
        try zip(entries).write(to: URL(fileURLWithPath: path))
        return path
    }

    func openMessage(_ path: String) -> String? {
        message { _ = try Checkpoint.open(path) }.map { $0.replacingOccurrences(of: path, with: "FILE") }
    }

    @Test func deflatedEntriesWithinTheLimitsRead() throws {
        let path = try archive(config: .deflated("config.json", config), weights: .deflated("model.weights.h5", weights, level: 9))
        let checkpoint = try Checkpoint.open(path)
        let reference = try Checkpoint.open(Fixtures.path("seqcnn_k3.keras"))
        #expect(try checkpoint.statistics().totalParameters == reference.statistics().totalParameters)
        for (a, b) in zip(checkpoint.weights, reference.weights) {
            #expect(try checkpoint.read(a).map(\.bitPattern) == reference.read(b).map(\.bitPattern))
        }
    }

    @Test func entryNamesThatEscapeOrRepeatAreRefused() throws {
        let note = Data("x".utf8)
        for (name, problem) in [("../evil.txt", "climbs out of the archive with '..'"), ("assets/../../evil.txt", "climbs out of the archive with '..'"),
                                ("assets\\..\\evil.txt", "climbs out of the archive with '..'"), ("/etc/evil", "is absolute"),
                                ("\\evil", "is absolute"), ("C:evil", "is absolute"), ("", "is empty")] {
            #expect(openMessage(try archive(extra: [.stored(name, note)]))
                == "FILE: is not a valid .keras archive (entry name '\(name)' \(problem))")
        }
        #expect(openMessage(try archive(extra: [.stored("config.json", config)]))
            == "FILE: is not a valid .keras archive (entry 'config.json' appears twice)")
        // Ordinary folders are fine.
        _ = try Checkpoint.open(try archive(extra: [.stored("assets/notes..txt", note)]))
    }

    @Test func declaredSizesOverTheLimitsAreRefusedBeforeInflating() throws {
        // config.json claiming 2 GiB (from a few bytes: nothing is inflated to find out).
        #expect(openMessage(try archive(config: .deflated("config.json", config, declaring: 1 << 31)))
            == "FILE: config.json: declares 2147483648 bytes uncompressed (2.0 GiB), over gmtool's 64.0 MiB limit for this entry")
        // A zip bomb: 64 MiB of zeros deflate to about 64 KiB and say so.
        let bomb = ZipEntry.deflated("model.weights.h5", Data(count: 64 << 20), level: 9)
        let ratio = (64 << 20) / bomb.payload.count
        #expect(ratio > 200)
        #expect(openMessage(try archive(weights: bomb))
            == "FILE: model.weights.h5: declares a compression ratio of \(ratio):1 (\(describeBytes(bomb.payload.count)) inflating to 64.0 MiB), over gmtool's 200:1 limit")
        var stored = ZipEntry.stored("model.weights.h5", weights)
        stored.declaredSize += 1
        #expect(openMessage(try archive(weights: stored))
            == "FILE: model.weights.h5: is stored uncompressed but declares \(weights.count) bytes stored and \(weights.count + 1) uncompressed: the archive is corrupt")
    }

    @Test func inflatingStopsAtTheDeclaredSize() throws {
        // Declared sizes lie: 16 MiB of zeros (16 KiB deflated) declared as 64 KiB.
        let start = Date()
        #expect(openMessage(try archive(weights: .deflated("model.weights.h5", Data(count: 16 << 20), declaring: 1 << 16)))
            == "FILE: model.weights.h5: inflates past its declared 65536 bytes: the archive is corrupt")
        #expect(Date().timeIntervalSince(start) < 2)
        #expect(openMessage(try archive(config: .deflated("config.json", config, declaring: config.count + 10)))
            == "FILE: config.json: inflates to \(config.count) bytes, not the declared \(config.count + 10): the archive is corrupt")
        var corrupt = ZipEntry.deflated("model.weights.h5", weights)
        corrupt.crc ^= 1
        #expect(openMessage(try archive(weights: corrupt)) == "FILE: model.weights.h5: CRC mismatch: the archive is corrupt")
        var truncated = ZipEntry.deflated("model.weights.h5", weights)
        truncated.payload = truncated.payload.prefix(truncated.payload.count / 2)
        #expect(openMessage(try archive(weights: truncated)) == "FILE: model.weights.h5: deflate data is corrupt")
    }
}
