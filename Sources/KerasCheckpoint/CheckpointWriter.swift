import Foundation
import HDF5

/// Changes to make when writing a checkpoint: new values for some weights, masks to store, and
/// provenance attributes for the mask group. Everything else in the file is carried over as is.
public struct CheckpointEdits {
    public var weights: [CheckpointWeight: [Float]] = [:]
    public var masks: [CheckpointWeight: Mask] = [:]
    /// Written as string attributes of the `/gmtool_masks` group.
    public var maskAttributes: [String: String] = [:]
    /// Written as string attributes of each weight's mask dataset (the thresholds and counts of
    /// the pruning that made it).
    public var maskDatasetAttributes: [CheckpointWeight: [String: String]] = [:]
    /// Other float32 datasets of gmtool's own (e.g. optimizer state under `/gmtool_training`),
    /// absolute paths; an existing dataset there is replaced.
    public var extraDatasets: [(path: String, shape: [Int], values: [Float])] = []
    /// String attributes on groups of gmtool's own, by group path (created when missing).
    public var extraAttributes: [String: [String: String]] = [:]
    public init() {}
}

/// Writes a file atomically: `body` fills a temporary path in the destination's folder, which is
/// flushed to disk and then renamed over the destination, so a crash or a full disk never leaves
/// half a file behind. A destination that is a symbolic link is written through: the temporary
/// goes in the folder of the link's target and replaces the target, and the link stays a link
/// (as `cp` and the shell's `>` write through links). The temporary is registered with
/// `Temporaries`, so a signal removes it, and the next write to the folder removes one a killed
/// process left behind. A replaced file's permission bits carry over to the new one.
public func writeAtomically(to destination: String, _ body: (String) throws -> Void) throws {
    let target = try checkOutput(destination)
    Temporaries.removeStaleFiles(in: URL(fileURLWithPath: target).deletingLastPathComponent().path)
    let temporary = Temporaries.file(beside: target)
    let slot = Temporaries.register(temporary)
    // After the rename the name is gone and this only forgets it.
    defer { Temporaries.remove(file: temporary, slot: slot) }
    do { try body(temporary) } catch let error as HDF5Error { throw writeFailure(error, output: destination) }
    try syncToDisk(temporary, reportedAs: destination)
    // A file that is replaced keeps its permission bits (`--in-place` on a read-only-for-others
    // or group-writable checkpoint leaves it so); a new one gets 0666 less the umask.
    var existing = stat()
    if stat(target, &existing) == 0, chmod(temporary, existing.st_mode & 0o7777) != 0 {
        throw CheckpointError(file: destination, problem: "cannot be given the permissions of the file it replaces (\(String(cString: strerror(errno))))")
    }
    guard rename(temporary, target) == 0 else {
        throw CheckpointError(file: destination, problem: "cannot be replaced (\(String(cString: strerror(errno))))")
    }
}

/// One line for a write that failed inside libhdf5. A full disk or `ulimit -f`: its file driver
/// names the system's reason ("errno = 27, error message = 'File too large'"), said as for
/// gmtool's own writes instead of libhdf5's stack.
func writeFailure(_ error: HDF5Error, output: String) -> CheckpointError {
    if let range = error.detail.range(of: #"error message = '[^']*'"#, options: .regularExpression) {
        let reason = error.detail[range].dropFirst("error message = '".count).dropLast()
        return CheckpointError(file: output, problem: "cannot be written (\(reason))")
    }
    return CheckpointError(file: output, object: error.path,
                           problem: "write failed (\(error.detail.split(whereSeparator: \.isNewline).joined(separator: " ")))")
}

/// Writes `data` to `destination` atomically (see `writeAtomically(to:_:)`).
public func writeAtomically(_ data: Data, to destination: String) throws {
    try writeAtomically(to: destination) { temporary in
        let output = try createFile(temporary, reportedAs: destination)
        defer { close(output) }
        try data.withUnsafeBytes { try writeAll(output, $0, reportedAs: destination) }
    }
}

/// Checks that `destination` can be written: it is no folder, and its folder (the link target's
/// folder, for a symbolic link) exists and is writable. Returns the path the write will replace.
/// Commands call it before long work, so a bad `-o` fails at once.
@discardableResult
public func checkOutput(_ destination: String) throws -> String {
    guard !destination.isEmpty else { throw CheckpointError(file: "''", problem: "the output path is empty") }
    var target = destination
    var info = stat()
    if lstat(destination, &info) == 0, info.st_mode & S_IFMT == S_IFLNK {
        guard let resolved = realpath(destination, nil) else {
            throw CheckpointError(file: destination, problem: "is a symbolic link that cannot be followed (\(String(cString: strerror(errno))))")
        }
        target = String(cString: resolved)
        free(resolved)
    }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), isDirectory.boolValue {
        throw CheckpointError(file: destination, problem: "is a folder, not a file")
    }
    guard !destination.hasSuffix("/") else {
        throw CheckpointError(file: destination, problem: "ends in '/': give a file name, not a folder")
    }
    let folder = URL(fileURLWithPath: target).deletingLastPathComponent().path
    guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw CheckpointError(file: destination, problem: "output folder \(folder) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: folder) else {
        throw CheckpointError(file: destination, problem: "output folder \(folder) is not writable")
    }
    return target
}

/// Copies the contents of `source` (through any symbolic links: a copy of the link itself would
/// point the edits at the input) to a new file `copy`.
func copyContents(of source: String, to copy: String, reportedAs output: String) throws {
    let input = open(source, O_RDONLY | O_CLOEXEC)
    guard input >= 0 else { throw CheckpointError(file: source, problem: "cannot be read (\(String(cString: strerror(errno))))") }
    defer { close(input) }
    let destination = try createFile(copy, reportedAs: output)
    defer { close(destination) }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 16)
    defer { buffer.deallocate() }
    while true {
        let count = read(input, buffer.baseAddress, buffer.count)
        if count < 0 && errno == EINTR { continue }
        guard count >= 0 else { throw CheckpointError(file: source, problem: "cannot be read (\(String(cString: strerror(errno))))") }
        if count == 0 { return }
        try writeAll(destination, UnsafeRawBufferPointer(rebasing: buffer[..<count]), reportedAs: output)
    }
}

private func createFile(_ path: String, reportedAs output: String) throws -> Int32 {
    let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
    guard descriptor >= 0 else { throw CheckpointError(file: output, problem: "cannot be written (\(String(cString: strerror(errno))))") }
    return descriptor
}

/// Writes every byte; a full disk (ENOSPC) or `ulimit -f` (EFBIG, SIGXFSZ being ignored) is an error.
private func writeAll(_ descriptor: Int32, _ bytes: UnsafeRawBufferPointer, reportedAs output: String) throws {
    var offset = 0
    while offset < bytes.count {
        let written = write(descriptor, bytes.baseAddress! + offset, bytes.count - offset)
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { throw CheckpointError(file: output, problem: "cannot be written (\(String(cString: strerror(errno))))") }
        offset += written
    }
}

/// fsync: the rename must not land before the data, or a power cut could leave an empty file
/// under the destination's name; on some file systems a full disk only shows here.
private func syncToDisk(_ path: String, reportedAs output: String) throws {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    guard descriptor >= 0, fsync(descriptor) == 0 else {
        let problem = String(cString: strerror(errno))
        if descriptor >= 0 { close(descriptor) }
        throw CheckpointError(file: output, problem: "cannot be written (\(problem))")
    }
    close(descriptor)
}

/// The POSIX error under a Foundation file error ("File too large"), which Foundation's own
/// description hides behind "NSCocoaErrorDomain error 512".
private func posixReason(_ error: Error) -> String {
    guard let underlying = (error as NSError).userInfo[NSUnderlyingErrorKey] as? any Error,
          (underlying as NSError).domain == NSPOSIXErrorDomain else { return error.localizedDescription }
    return String(cString: strerror(Int32((underlying as NSError).code)))
}

extension Checkpoint {
    /// Writes a new checkpoint at `output`: this one with `edits` applied, in the same layout,
    /// every other object and attribute (optimizer state, configs) preserved. The input file is
    /// only read.
    public func write(to output: String, edits: CheckpointEdits = CheckpointEdits()) throws {
        guard layout != .sparseExport else {
            throw CheckpointError(file: path, problem: "is a sparse export; turn it back into a Keras checkpoint with `gmtool import` first")
        }
        let sourceHDF5 = archive?.weightsFilePath ?? path
        try writeAtomically(to: output) { temporary in
            guard let archive else {
                try copyContents(of: sourceHDF5, to: temporary, reportedAs: output)
                return try apply(edits, toHDF5At: temporary, reportedAs: output)
            }
            // The new model.weights.h5 is a second temporary beside the first, zipped into it.
            let folder = (temporary as NSString).deletingLastPathComponent
            let weights = Temporaries.file(beside: (folder as NSString).appendingPathComponent((output as NSString).lastPathComponent), kind: "weights")
            let slot = Temporaries.register(weights)
            defer { Temporaries.remove(file: weights, slot: slot) }
            try copyContents(of: sourceHDF5, to: weights, reportedAs: output)
            try apply(edits, toHDF5At: weights, reportedAs: output)
            do { try archive.write(to: URL(fileURLWithPath: temporary), weightsFile: weights) } catch let error as CheckpointError {
                throw error
            } catch {
                throw CheckpointError(file: output, problem: "cannot be written (\(posixReason(error)))")
            }
        }
    }

    /// Applies edits to an HDF5 copy; every handle is released before returning, so the file is
    /// closed and complete.
    private func apply(_ edits: CheckpointEdits, toHDF5At target: String, reportedAs output: String) throws {
        do {
            let file = try HDF5File.open(target, mode: .readWrite)
            let root = file.root
            for (weight, values) in edits.weights.sorted(by: { $0.key.datasetPath < $1.key.datasetPath }) {
                precondition(values.count == weight.elementCount, "new values for \(weight.datasetPath) have the wrong size")
                try root.dataset(weight.datasetPath).write(values)
            }
            if !edits.masks.isEmpty || !edits.maskAttributes.isEmpty {
                let group = try root.openOrCreateGroup(maskGroupName)
                for (key, value) in edits.maskAttributes.sorted(by: { $0.key < $1.key }) { try group.setAttribute(key, string: value) }
                for (weight, mask) in edits.masks.sorted(by: { $0.key.datasetPath < $1.key.datasetPath }) {
                    precondition(mask.count == weight.elementCount, "mask for \(weight.datasetPath) has the wrong size")
                    let relative = String(weight.datasetPath.dropFirst())
                    let dataset: HDF5Dataset
                    if group.kind(of: relative) == .dataset, try group.dataset(relative).shape == weight.shape {
                        dataset = try group.dataset(relative)
                        try dataset.write(mask.bits)
                    } else {
                        if group.kind(of: relative) == .dataset { try group.removeLink(relative) }
                        dataset = try group.createDataset(relative, shape: weight.shape, values: mask.bits,
                                                          storage: HDF5StorageOptions(deflateLevel: 4, shuffle: false))
                    }
                    for (key, value) in (edits.maskDatasetAttributes[weight] ?? [:]).sorted(by: { $0.key < $1.key }) {
                        try dataset.setAttribute(key, string: value)
                    }
                }
            }
            for (path, shape, values) in edits.extraDatasets {
                let relative = String(path.drop { $0 == "/" })
                if root.kind(of: relative) == .dataset {
                    let dataset = try root.dataset(relative)
                    if dataset.shape == shape && dataset.elementType == .float(bits: 32) {
                        try dataset.write(values)
                        continue
                    }
                    try root.removeLink(relative)
                }
                _ = try root.createDataset(relative, shape: shape, values: values,
                                           storage: HDF5StorageOptions(deflateLevel: 1, shuffle: true, minimumCompressedBytes: 4096))
            }
            for (groupPath, attributes) in edits.extraAttributes.sorted(by: { $0.key < $1.key }) {
                let group = try root.openOrCreateGroup(String(groupPath.drop { $0 == "/" }))
                for (key, value) in attributes.sorted(by: { $0.key < $1.key }) { try group.setAttribute(key, string: value) }
            }
            try file.flush()
        } catch let error as HDF5Error {
            throw writeFailure(error, output: output)
        }
    }
}

/// Checks that `destination` can become an output folder: it does not exist, or it is a folder
/// that `isPrevious` recognises as an earlier output of the same kind (which a write then
/// replaces whole); its parent exists and is writable. `kind` names it in the message ("a
/// previous sweep"). Commands call it before long work.
public func checkOutputFolder(_ destination: String, kind: String, isPrevious: (String) -> Bool) throws {
    let path = trimmedFolderPath(destination)
    guard !path.isEmpty else { throw CheckpointError(file: "''", problem: "the output path is empty") }
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else { throw CheckpointError(file: destination, problem: "exists and is not a folder") }
        guard isPrevious(path) else {
            throw CheckpointError(file: destination, problem: "exists and is not \(kind) (nothing is replaced; choose a new folder)")
        }
    }
    let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
    guard FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw CheckpointError(file: destination, problem: "output folder \(parent) does not exist")
    }
    guard FileManager.default.isWritableFile(atPath: parent) else {
        throw CheckpointError(file: destination, problem: "output folder \(parent) is not writable")
    }
}

/// Writes a folder of files atomically: they go to a temporary folder beside `destination`
/// (every file flushed to disk), which then takes the destination's name; an existing
/// destination (checked with `checkOutputFolder` first) is moved aside in the same folder and
/// removed after, so readers see the old folder or the new one, never half of either. A signal
/// before the rename removes the temporary folder and its files (`Temporaries`).
public func writeFolderAtomically(to destination: String, files: [(name: String, data: Data)], kind: String,
                                  isPrevious: (String) -> Bool) throws {
    try checkOutputFolder(destination, kind: kind, isPrevious: isPrevious)
    let path = trimmedFolderPath(destination)
    Temporaries.removeStaleFiles(in: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    let temporary = Temporaries.file(beside: path)
    let folderSlot = Temporaries.register(temporary, isFolder: true)
    var fileSlots: [(String, Int32)] = []
    defer {
        for (file, slot) in fileSlots { Temporaries.remove(file: file, slot: slot) }
        rmdir(temporary)
        Temporaries.forget(folderSlot)
    }
    guard mkdir(temporary, 0o777) == 0 else {
        throw CheckpointError(file: destination, problem: "cannot be written (\(String(cString: strerror(errno))))")
    }
    for (name, data) in files {
        precondition(!name.contains("/") && !name.hasPrefix("."), "an output folder's files are plain names")
        let file = temporary + "/" + name
        fileSlots.append((file, Temporaries.register(file)))
        let output = try createFile(file, reportedAs: destination + "/" + name)
        defer { close(output) }
        try data.withUnsafeBytes { try writeAll(output, $0, reportedAs: destination + "/" + name) }
        guard fsync(output) == 0 else { throw CheckpointError(file: destination + "/" + name, problem: "cannot be written (\(String(cString: strerror(errno))))") }
    }
    var isDirectory: ObjCBool = false
    let replacing = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
    let aside = Temporaries.file(beside: path, kind: "old")
    if replacing {
        guard rename(path, aside) == 0 else {
            throw CheckpointError(file: destination, problem: "cannot be replaced (\(String(cString: strerror(errno))))")
        }
    }
    guard rename(temporary, path) == 0 else {
        let problem = String(cString: strerror(errno))
        if replacing { rename(aside, path) }
        throw CheckpointError(file: destination, problem: "cannot be written (\(problem))")
    }
    // The files now live under the destination's name: nothing left to remove but the old folder.
    for (_, slot) in fileSlots { Temporaries.forget(slot) }
    fileSlots = []
    if replacing { try? FileManager.default.removeItem(atPath: aside) }
}

/// "out/" and "out" are the same folder.
private func trimmedFolderPath(_ path: String) -> String {
    var trimmed = path
    while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed.removeLast() }
    return trimmed
}
