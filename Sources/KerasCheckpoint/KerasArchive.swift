import Foundation
import HDF5
import Zip

/// A Keras 3 `.keras` file: a zip of `metadata.json`, `config.json` and `model.weights.h5`.
/// Reading extracts `model.weights.h5` to a private temporary file (libhdf5 opens files by path);
/// writing copies every other entry byte for byte and replaces the weights. The zip itself is
/// read by `ZipArchive` (the Zip module, shared with NumPy's .npz); the limits below are the
/// checkpoint's policy.
final class KerasArchive {
    let path: String
    let zip: ZipArchive
    let metadata: JSONValue?
    /// The extracted `model.weights.h5`, removed when the archive is released (or on a signal).
    let weightsFilePath: String
    private let scratch: Temporaries.ScratchFolder?

    static func looksLikeZip(_ path: String) -> Bool { ZipArchive.looksLikeZip(path) }

    init(path: String, extractWeights: Bool = true) throws {
        self.path = path
        zip = try Self.checked { try ZipArchive(path: path, kind: ".keras archive") }
        scratch = extractWeights ? try Temporaries.ScratchFolder(holding: "model.weights.h5", for: path) : nil
        weightsFilePath = scratch?.file ?? ""
        // Only keras_version is taken from metadata.json, so one that is not JSON is ignored; one
        // that breaks the archive's limits is not.
        if let entry = zip.entry("metadata.json") {
            let text = String(decoding: try Self.contents(of: entry, in: zip), as: UTF8.self)
            metadata = try? JSONValue.parse(text)
        } else {
            metadata = nil
        }
        if extractWeights {
            try Self.extract("model.weights.h5", from: zip, to: weightsFilePath)
        }
    }

    deinit { scratch?.remove() }

    func text(_ name: String) throws -> String {
        guard let entry = zip.entry(name) else {
            throw CheckpointError(file: path, object: name, problem: "missing from the .keras archive")
        }
        return String(decoding: try Self.contents(of: entry, in: zip), as: UTF8.self)
    }

    /// Runs `body`, reporting a zip problem as a checkpoint problem.
    private static func checked<T>(_ body: () throws -> T) throws -> T {
        do { return try body() } catch let error as ZipError {
            throw CheckpointError(file: error.file, object: error.entry, problem: error.problem)
        }
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
    private static func checkDeclaredSizes(_ entry: ZipArchive.Entry, path: String) throws {
        func refuse(_ problem: String) -> CheckpointError { CheckpointError(file: path, object: entry.name, problem: problem) }
        let size = entry.uncompressedSize, limit = sizeLimit(for: entry.name)
        if size > limit {
            throw refuse("declares \(size) bytes uncompressed (\(describeBytes(size))), over gmtool's \(describeBytes(limit)) limit for this entry")
        }
        if size > ratioFloor && size / max(entry.compressedSize, 1) > ratioLimit {
            throw refuse("declares a compression ratio of \(size / max(entry.compressedSize, 1)):1 (\(describeBytes(entry.compressedSize)) inflating to \(describeBytes(size))), over gmtool's \(ratioLimit):1 limit")
        }
    }

    // MARK: Inflating

    /// An entry held in memory (the JSON entries, within `jsonLimit`).
    private static func contents(of entry: ZipArchive.Entry, in zip: ZipArchive) throws -> Data {
        try checkDeclaredSizes(entry, path: zip.path)
        return try checked { try zip.contents(of: entry) }
    }

    /// Extracts an entry to a new file at `destination`, a piece at a time.
    private static func extract(_ name: String, from zip: ZipArchive, to destination: String) throws {
        guard let entry = zip.entry(name) else {
            throw CheckpointError(file: zip.path, object: name, problem: "missing from the .keras archive")
        }
        func failed(_ cause: String) -> CheckpointError {
            CheckpointError(file: zip.path, problem: "cannot extract \(name) to \(destination) (\(cause))")
        }
        try checkDeclaredSizes(entry, path: zip.path)
        let descriptor = open(destination, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard descriptor >= 0 else { throw failed(String(cString: strerror(errno))) }
        do {
            try checked {
                try zip.inflate(entry) { piece in
                    var written = 0
                    while written < piece.count {
                        let result = Glibc.write(descriptor, piece.baseAddress! + written, piece.count - written)
                        guard result > 0 else { throw failed(String(cString: strerror(errno))) }
                        written += result
                    }
                }
            }
        } catch {
            close(descriptor)
            throw error
        }
        guard close(descriptor) == 0 else { throw failed(String(cString: strerror(errno))) }
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
        for entry in zip.entries {
            let isWeights = entry.name == "model.weights.h5"
            let payload = isWeights ? newWeights
                : Data(zip.payload(of: entry))
            let method = isWeights ? 0 : Int(entry.method)
            let crc = isWeights ? Int(newWeights.withUnsafeBytes { ZipArchive.crc32(of: $0) }) : Int(entry.crc32)
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
        put16(&out, zip.entries.count); put16(&out, zip.entries.count)
        put32(&out, central.count); put32(&out, centralOffset); put16(&out, 0)
        try out.write(to: destination)
    }
}
