internal import CHDF5
import Foundation

// Every call into libhdf5 goes through this file, and every call's status is checked: a failure
// becomes an HDF5Error naming the operation, the object and libhdf5's own explanation. Objects
// that outlive a call (files, groups, datasets, attributes) are owned by small final classes that
// close them in deinit; short-lived ones (datatypes, dataspaces, property lists, attributes being
// written) live inside `withTemporary`, which checks their close as well. Nothing from CHDF5
// appears in the public API.

/// libhdf5 is not thread-safe in its serial build: every call goes through this lock.
private let hdf5Lock = NSRecursiveLock()

@inline(__always)
private func locked<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    // Thread-safe builds of libhdf5 keep error settings per thread: silence printing on
    // whichever thread this is (a pointer store, checked once in `librarySetUp`; failing here
    // could only let libhdf5 print, and the call that follows still reports its own failure).
    _ = gm_silence_errors()
    return try body()
}

/// Initialises libhdf5 and silences its stderr printing, once, before the first file is opened
/// or created; the status is checked by each of those.
private let librarySetUp: herr_t = {
    let status = H5open()
    return status < 0 ? status : gm_silence_errors()
}()

private func stackDetail() -> String {
    var summary = gm_error_summary_t()
    let count = gm_error_summary(&summary)
    guard count > 0 else { return "" }
    let top = withUnsafeBytes(of: summary.top) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    let bottom = withUnsafeBytes(of: summary.bottom) { String(cString: $0.bindMemory(to: CChar.self).baseAddress!) }
    if top == bottom || bottom.isEmpty { return top }
    return "\(top): \(bottom)"
}

/// The error for a libhdf5 call that just failed, with the stack's explanation.
private func failure(_ operation: String, _ path: String) -> HDF5Error {
    HDF5Error(operation: operation, path: path, detail: stackDetail())
}

private func check(_ status: herr_t, _ operation: String, _ path: @autoclosure () -> String) throws {
    if status < 0 { throw failure(operation, path()) }
}

private func check(_ id: hid_t, _ operation: String, _ path: @autoclosure () -> String) throws -> hid_t {
    if id < 0 { throw failure(operation, path()) }
    return id
}

/// Hands a short-lived libhdf5 object (`id`, the result of the call that made it) to `body` and
/// closes it. Failing to make it or to close it is an error like any other call's; when `body`
/// fails, its error is the one reported.
private func withTemporary<R>(
    _ id: hid_t, _ operation: String, _ path: @autoclosure () -> String, close: (hid_t) -> herr_t,
    closing what: String, _ body: (hid_t) throws -> R
) throws -> R {
    let id = try check(id, operation, path())
    let result: R
    do { result = try body(id) } catch {
        _ = close(id)
        throw error
    }
    try check(close(id), "close \(what)", path())
    return result
}

private func withDatatype<R>(_ id: hid_t, _ operation: String, _ path: @autoclosure () -> String,
                             _ body: (hid_t) throws -> R) throws -> R {
    try withTemporary(id, operation, path(), close: H5Tclose, closing: "datatype", body)
}

private func withDataspace<R>(_ id: hid_t, _ operation: String, _ path: @autoclosure () -> String,
                              _ body: (hid_t) throws -> R) throws -> R {
    try withTemporary(id, operation, path(), close: H5Sclose, closing: "dataspace", body)
}

private func withPropertyList<R>(_ id: hid_t, _ operation: String, _ path: @autoclosure () -> String,
                                 _ body: (hid_t) throws -> R) throws -> R {
    try withTemporary(id, operation, path(), close: H5Pclose, closing: "property list", body)
}

/// A new dataspace for `shape`; [] is a scalar.
private func createDataspace(_ shape: [Int]) -> hid_t {
    if shape.isEmpty { return H5Screate(H5S_SCALAR) }
    var dimensions = shape.map { hsize_t($0) }
    return H5Screate_simple(Int32(shape.count), &dimensions, nil)
}

/// Owns one HDF5 identifier and closes it with the matching H5?close. The close status is not
/// checked because deinit cannot throw: the writers flush (checked) before letting go of a file,
/// so nothing is left for a close to lose, and readers have nothing to lose.
final class Handle {
    let id: hid_t
    private let close: (hid_t) -> herr_t
    init(_ id: hid_t, close: @escaping (hid_t) -> herr_t) {
        self.id = id
        self.close = close
    }
    deinit { locked { _ = close(id) } }
}

private func decodeNulTerminated(_ buffer: [CChar]) -> String {
    let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
    return String(decoding: bytes, as: UTF8.self)
}

private func shapeDescription<Dimension: BinaryInteger>(_ shape: [Dimension]) -> String {
    "(" + shape.map { "\($0)" }.joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
}

// MARK: - Element types

/// The kind of numbers (or strings) an HDF5 dataset or attribute holds on disk.
public enum HDF5ElementType: Equatable, Sendable, CustomStringConvertible {
    case float(bits: Int)
    case integer(bits: Int, signed: Bool)
    case string(variableLength: Bool)
    case other(String)

    public var isFloat: Bool { if case .float = self { return true } else { return false } }
    public var isInteger: Bool { if case .integer = self { return true } else { return false } }

    public var description: String {
        switch self {
        case .float(let bits): return "float\(bits)"
        case .integer(let bits, let signed): return signed ? "int\(bits)" : "uint\(bits)"
        case .string(let variable): return variable ? "variable-length string" : "fixed-length string"
        case .other(let name): return name
        }
    }

    /// Bytes per element of a number type; nil for strings and other types.
    var numberSize: Int? {
        switch self {
        case .float(let bits), .integer(let bits, _): return bits / 8
        default: return nil
        }
    }
}

/// A Swift number type with a native HDF5 memory type. Reads convert from the on-disk type to
/// this type inside libhdf5 (as h5py does: the destination decides the memory type).
public protocol HDF5Scalar: Numeric, Sendable {
    /// The HDF5 element type files get when an array of this type is written.
    static var hdf5ElementType: HDF5ElementType { get }
}
extension Float: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .float(bits: 32) } }
extension Double: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .float(bits: 64) } }
extension Int8: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 8, signed: true) } }
extension UInt8: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 8, signed: false) } }
extension Int16: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 16, signed: true) } }
extension UInt16: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 16, signed: false) } }
extension Int32: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 32, signed: true) } }
extension UInt32: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 32, signed: false) } }
extension Int64: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 64, signed: true) } }
extension UInt64: HDF5Scalar { public static var hdf5ElementType: HDF5ElementType { .integer(bits: 64, signed: false) } }

private func nativeType(_ type: HDF5ElementType) -> hid_t {
    switch type {
    case .float(32): return gm_H5T_NATIVE_FLOAT()
    case .float(64): return gm_H5T_NATIVE_DOUBLE()
    case .integer(8, true): return gm_H5T_NATIVE_INT8()
    case .integer(8, false): return gm_H5T_NATIVE_UINT8()
    case .integer(16, true): return gm_H5T_NATIVE_INT16()
    case .integer(16, false): return gm_H5T_NATIVE_UINT16()
    case .integer(32, true): return gm_H5T_NATIVE_INT32()
    case .integer(32, false): return gm_H5T_NATIVE_UINT32()
    case .integer(64, true): return gm_H5T_NATIVE_INT64()
    case .integer(64, false): return gm_H5T_NATIVE_UINT64()
    default: preconditionFailure("no native HDF5 type for \(type)")
    }
}

private func describe(typeID: hid_t, _ path: @autoclosure () -> String) throws -> HDF5ElementType {
    let typeClass = H5Tget_class(typeID)
    let size = Int(H5Tget_size(typeID))
    guard typeClass != H5T_NO_CLASS, size > 0 else { throw failure("read datatype", path()) }
    switch typeClass {
    case H5T_FLOAT: return .float(bits: size * 8)
    case H5T_INTEGER:
        let sign = H5Tget_sign(typeID)
        guard sign != H5T_SGN_ERROR else { throw failure("read datatype", path()) }
        return .integer(bits: size * 8, signed: sign != H5T_SGN_NONE)
    case H5T_STRING:
        let variable = H5Tis_variable_str(typeID)
        guard variable >= 0 else { throw failure("read datatype", path()) }
        return .string(variableLength: variable > 0)
    case H5T_COMPOUND: return .other("compound")
    case H5T_ENUM: return .other("enum")
    case H5T_ARRAY: return .other("array")
    case H5T_OPAQUE: return .other("opaque")
    case H5T_REFERENCE: return .other("reference")
    case H5T_VLEN: return .other("vlen")
    case H5T_BITFIELD: return .other("bitfield")
    default: return .other("unknown")
    }
}

/// The dimensions of a dataspace: [] for a scalar, [0] for an empty (null) one. A dimension or an
/// element count that an Int cannot hold is an error here, so every shape handed out multiplies
/// safely.
private func dims(ofSpace space: hid_t, _ path: @autoclosure () -> String) throws -> [Int] {
    switch H5Sget_simple_extent_type(space) {
    case H5S_SCALAR: return []
    case H5S_NULL: return [0]
    case H5S_SIMPLE: break
    default: throw failure("read dataspace", path())
    }
    let rank = H5Sget_simple_extent_ndims(space)
    guard rank >= 0 else { throw failure("read dataspace", path()) }
    var dimensions = [hsize_t](repeating: 0, count: Int(rank))
    guard H5Sget_simple_extent_dims(space, &dimensions, nil) >= 0 else { throw failure("read dataspace", path()) }
    let shape = dimensions.map { Int(exactly: $0) ?? -1 }
    guard !shape.contains(-1), checkedProduct(shape) != nil else {
        throw HDF5Error(operation: "read dataspace", path: path(),
                        detail: "shape \(shapeDescription(dimensions)) has more elements than a 64-bit count holds")
    }
    return shape
}

// MARK: - File

/// An open HDF5 file. Objects opened from it keep it alive.
public final class HDF5File {
    public enum Mode: Sendable { case readOnly, readWrite }

    let handle: Handle
    /// The path the file was opened with.
    public let path: String

    private init(handle: Handle, path: String) {
        self.handle = handle
        self.path = path
    }

    /// Opens an existing file. Wraps `H5Fopen`.
    public static func open(_ path: String, mode: Mode = .readOnly) throws -> HDF5File {
        // libhdf5 reports a missing or unreadable file as a stack of driver errors; the system's
        // own reason ("Permission denied") is the part worth showing.
        guard let stream = fopen(path, mode == .readOnly ? "rb" : "r+b") else {
            throw HDF5Error(operation: "open file", path: path, detail: String(cString: strerror(errno)))
        }
        fclose(stream)
        return try locked {
            try check(librarySetUp, "initialise libhdf5", path)
            let signature = H5Fis_hdf5(path)
            if signature < 0 { throw failure("open file", path) }
            if signature == 0 { throw HDF5Error(operation: "open file", path: path, detail: "not an HDF5 file") }
            let flags = mode == .readOnly ? gm_H5F_ACC_RDONLY() : gm_H5F_ACC_RDWR()
            let id = try check(H5Fopen(path, flags, gm_H5P_DEFAULT()), "open file", path)
            return HDF5File(handle: Handle(id, close: H5Fclose), path: path)
        }
    }

    /// Creates a new file, replacing any file at `path`. Wraps `H5Fcreate`. `compact` writes
    /// the HDF5 1.8 object format (smaller headers, compact groups), which HDF5 1.8+ and h5py read
    /// but Keras' own writer never produces; the default keeps the oldest format.
    public static func create(_ path: String, compact: Bool = false) throws -> HDF5File {
        try locked {
            try check(librarySetUp, "initialise libhdf5", path)
            return try withPropertyList(H5Pcreate(gm_H5P_FILE_ACCESS()), "create file access properties", path) { access in
                if compact {
                    try check(H5Pset_libver_bounds(access, H5F_LIBVER_V110, H5F_LIBVER_V110), "set the file format version", path)
                }
                return try withPropertyList(H5Pcreate(gm_H5P_FILE_CREATE()), "create file properties", path) { creation in
                    // No creation time in the root group's header: the same content gives the same bytes.
                    try check(H5Pset_obj_track_times(creation, false), "set file properties", path)
                    let id = try check(H5Fcreate(path, gm_H5F_ACC_TRUNC(), creation, access), "create file", path)
                    return HDF5File(handle: Handle(id, close: H5Fclose), path: path)
                }
            }
        }
    }

    /// The root group "/".
    public var root: HDF5Group { HDF5Group(file: self, handle: handle, path: "/") }

    /// Writes buffered data to disk. Wraps `H5Fflush`.
    public func flush() throws {
        try locked { try check(H5Fflush(handle.id, H5F_SCOPE_GLOBAL), "flush file", path) }
    }
}


// MARK: - Objects with attributes

/// A group or dataset: something with a path and attributes.
public protocol HDF5Object {
    var file: HDF5File { get }
    /// Absolute path inside the file, e.g. "/model_weights/conv1".
    var path: String { get }
}

extension HDF5Object {
    var objectID: hid_t {
        (self as? HDF5Group)?.handle.id ?? (self as! HDF5Dataset).handle.id
    }

    /// "file.h5:/path" for messages.
    public var location: String { "\(file.path):\(path)" }

    /// Names of the attributes on this object, in creation order where tracked, else by name.
    public var attributeNames: [String] {
        get throws {
            try locked {
                let count = gm_attribute_count(objectID)
                guard count >= 0 else { throw failure("list attributes", location) }
                var names: [String] = []
                for index in 0..<hsize_t(count) {
                    let length = H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, gm_H5P_DEFAULT())
                    guard length >= 0 else { throw failure("list attributes", location) }
                    var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                    guard H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count,
                                             gm_H5P_DEFAULT()) >= 0 else { throw failure("list attributes", location) }
                    names.append(decodeNulTerminated(buffer))
                }
                return names
            }
        }
    }

    public func hasAttribute(_ name: String) throws -> Bool {
        try locked {
            let exists = H5Aexists(objectID, name)
            guard exists >= 0 else { throw failure("look up attribute '\(name)'", location) }
            return exists > 0
        }
    }

    /// Opens the named attribute. Wraps `H5Aopen`.
    public func attribute(_ name: String) throws -> HDF5Attribute {
        try locked {
            let id = try check(H5Aopen(objectID, name, gm_H5P_DEFAULT()), "open attribute '\(name)'", location)
            return try HDF5Attribute(handle: Handle(id, close: H5Aclose), name: name, owner: location)
        }
    }

    /// Writes a string attribute (variable-length UTF-8, replacing any attribute of that name).
    public func setAttribute(_ name: String, string: String) throws {
        try setStringAttribute(name, [string], scalar: true)
    }

    /// Writes an array-of-strings attribute as variable-length UTF-8 strings.
    public func setAttribute(_ name: String, strings: [String]) throws {
        try setStringAttribute(name, strings, scalar: false)
    }

    private func setStringAttribute(_ name: String, _ values: [String], scalar: Bool) throws {
        try locked {
            try deleteAttributeIfPresent(name)
            try withDatatype(H5Tcopy(gm_H5T_C_S1()), "create string type", location) { type in
                try check(H5Tset_size(type, gm_H5T_VARIABLE()), "create string type", location)
                try check(H5Tset_cset(type, H5T_CSET_UTF8), "create string type", location)
                try withDataspace(createDataspace(scalar ? [] : [values.count]), "create dataspace", location) { space in
                    try withTemporary(H5Acreate2(objectID, name, type, space, gm_H5P_DEFAULT(), gm_H5P_DEFAULT()),
                                      "create attribute '\(name)'", location, close: H5Aclose, closing: "attribute '\(name)'") { attribute in
                        let cStrings = values.map { strdup($0) }
                        defer { cStrings.forEach { free($0) } }
                        var pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
                        try check(H5Awrite(attribute, type, &pointers), "write attribute '\(name)'", location)
                    }
                }
            }
        }
    }

    /// Writes a numeric attribute; a single value is stored as a scalar.
    public func setAttribute<T: HDF5Scalar>(_ name: String, values: [T], scalar: Bool = false) throws {
        try locked {
            try deleteAttributeIfPresent(name)
            let type = nativeType(T.hdf5ElementType)
            try withDataspace(createDataspace(scalar ? [] : [values.count]), "create dataspace", location) { space in
                try withTemporary(H5Acreate2(objectID, name, type, space, gm_H5P_DEFAULT(), gm_H5P_DEFAULT()),
                                  "create attribute '\(name)'", location, close: H5Aclose, closing: "attribute '\(name)'") { attribute in
                    try values.withUnsafeBytes { buffer in
                        try check(H5Awrite(attribute, type, buffer.baseAddress), "write attribute '\(name)'", location)
                    }
                }
            }
        }
    }

    private func deleteAttributeIfPresent(_ name: String) throws {
        if try hasAttribute(name) {
            try check(H5Adelete(objectID, name), "delete attribute '\(name)'", location)
        }
    }
}

// MARK: - Attribute

/// One attribute, opened for reading.
public final class HDF5Attribute {
    let handle: Handle
    public let name: String
    let owner: String
    /// The on-disk element type.
    public let elementType: HDF5ElementType
    /// The shape; [] for a scalar.
    public let shape: [Int]

    /// Reads the attribute's type and shape; call with the lock held.
    init(handle: Handle, name: String, owner: String) throws {
        self.handle = handle
        self.name = name
        self.owner = owner
        let place = "\(owner) attribute '\(name)'"
        elementType = try withDatatype(H5Aget_type(handle.id), "read attribute type", place) { try describe(typeID: $0, place) }
        shape = try withDataspace(H5Aget_space(handle.id), "read attribute shape", place) { try dims(ofSpace: $0, place) }
    }

    private var where_: String { "\(owner) attribute '\(name)'" }

    /// The element count (checked when the attribute was opened, so it cannot overflow).
    private var count: Int { shape.reduce(1, *) }

    private func checkMemory(elementSize: Int) throws {
        if let problem = MachineMemory.problem(count: count, elementSize: elementSize, noun: "\(elementType) values") {
            throw HDF5Error(operation: "read attribute", path: where_, detail: problem)
        }
    }

    /// Reads a string or an array of strings, fixed- or variable-length, as Swift strings.
    /// Fixed-length strings lose their trailing NUL padding, as h5py does.
    public func readStrings() throws -> [String] {
        // An empty list is written by h5py/numpy as an empty float array: no strings.
        if count == 0 { return [] }
        guard case .string(let variableLength) = elementType else {
            throw HDF5Error(operation: "read as text", path: where_, detail: "holds \(elementType), not strings")
        }
        return try locked {
            try withDatatype(H5Aget_type(handle.id), "read attribute type", where_) { fileType in
                if variableLength {
                    try checkMemory(elementSize: MemoryLayout<UnsafeMutablePointer<CChar>?>.size)
                    return try withDatatype(H5Tcopy(gm_H5T_C_S1()), "create string type", where_) { memType in
                        let cset = H5Tget_cset(fileType)
                        guard cset != H5T_CSET_ERROR else { throw failure("read attribute type", where_) }
                        try check(H5Tset_size(memType, gm_H5T_VARIABLE()), "create string type", where_)
                        try check(H5Tset_cset(memType, cset), "create string type", where_)
                        var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
                        try check(H5Aread(handle.id, memType, &pointers), "read attribute", where_)
                        let strings = pointers.map { $0.map { String(cString: $0) } ?? "" }
                        try check(gm_free_vlen_strings(&pointers, count), "free strings read from attribute", where_)
                        return strings
                    }
                }
                let size = Int(H5Tget_size(fileType))
                let padding = H5Tget_strpad(fileType)
                guard size > 0, padding != H5T_STR_ERROR else { throw failure("read attribute type", where_) }
                try checkMemory(elementSize: size)
                var bytes = [UInt8](repeating: 0, count: size * count)
                try withDatatype(H5Tcopy(fileType), "copy string type", where_) { memType in
                    try check(H5Aread(handle.id, memType, &bytes), "read attribute", where_)
                }
                return (0..<count).map { index in
                    var slice = bytes[(index * size)..<((index + 1) * size)]
                    while let last = slice.last, last == 0 || last == 0x20 && padding == H5T_STR_SPACEPAD {
                        slice = slice.dropLast()
                    }
                    return String(decoding: slice, as: UTF8.self)
                }
            }
        }
    }

    /// Reads a single string (the first element of an array).
    public func readString() throws -> String {
        guard let first = try readStrings().first else {
            throw HDF5Error(operation: "read as text", path: where_, detail: "empty")
        }
        return first
    }

    /// Reads numbers, converted by libhdf5 to `T`.
    public func read<T: HDF5Scalar>(as: T.Type = T.self) throws -> [T] {
        guard elementType.numberSize != nil else {
            throw HDF5Error(operation: "read as numbers", path: where_, detail: "holds \(elementType)")
        }
        try checkMemory(elementSize: MemoryLayout<T>.stride)
        var values = [T](repeating: 0, count: count)
        try locked {
            try values.withUnsafeMutableBytes { buffer in
                try check(H5Aread(handle.id, nativeType(T.hdf5ElementType), buffer.baseAddress), "read attribute", where_)
            }
        }
        return values
    }
}

// MARK: - Group

/// What a name inside a group refers to.
public enum HDF5ObjectKind: Sendable { case group, dataset, other }

/// Dataset creation options.
public struct HDF5StorageOptions: Sendable {
    /// Deflate level 1-9, or nil for no compression. Compression implies chunking.
    public var deflateLevel: Int?
    /// Byte-shuffle before compressing (helps floats and wide integers).
    public var shuffle: Bool
    /// Datasets smaller than this are stored contiguous, uncompressed.
    public var minimumCompressedBytes: Int
    public init(deflateLevel: Int? = nil, shuffle: Bool = false, minimumCompressedBytes: Int = 1) {
        self.deflateLevel = deflateLevel
        self.shuffle = shuffle
        self.minimumCompressedBytes = minimumCompressedBytes
    }
    public static let contiguous = HDF5StorageOptions()
}

public final class HDF5Group: HDF5Object {
    public let file: HDF5File
    let handle: Handle
    public let path: String

    init(file: HDF5File, handle: Handle, path: String) {
        self.file = file
        self.handle = handle
        self.path = path
    }

    /// The absolute path of `name`, which libhdf5 takes from the file's root when it starts with "/".
    private func childPath(_ name: String) -> String {
        name.hasPrefix("/") ? name : path == "/" ? "/\(name)" : "\(path)/\(name)"
    }

    /// Names of the links in this group, sorted by name. Wraps `H5Gget_info` and `H5Lget_name_by_idx`.
    public func childNames() throws -> [String] {
        try locked {
            var info = H5G_info_t()
            try check(H5Gget_info(handle.id, &info), "list group", location)
            var names: [String] = []
            for index in 0..<info.nlinks {
                let length = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, gm_H5P_DEFAULT())
                guard length >= 0 else { throw failure("list group", location) }
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                guard H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count,
                                         gm_H5P_DEFAULT()) >= 0 else { throw failure("list group", location) }
                names.append(decodeNulTerminated(buffer))
            }
            return names
        }
    }

    /// What `name` (a relative path, may contain "/") refers to, or nil when nothing does. A
    /// lookup libhdf5 fails to answer (a damaged file) is nil too: opening the object then
    /// reports why.
    public func kind(of name: String) -> HDF5ObjectKind? {
        locked {
            // H5Lexists fails (rather than answering no) when an intermediate group is missing,
            // so walk the path one component at a time.
            var prefix = ""
            let parts = name.split(separator: "/", omittingEmptySubsequences: true)
            guard !parts.isEmpty else { return nil }
            for (index, part) in parts.enumerated() {
                prefix = prefix.isEmpty ? String(part) : prefix + "/" + part
                let kind = gm_object_kind(handle.id, prefix)
                if kind < 0 { gm_clear_errors(); return nil }
                if index == parts.count - 1 {
                    return kind == 0 ? .group : kind == 1 ? .dataset : .other
                }
                if kind != 0 { return nil }
            }
            return nil
        }
    }

    /// Opens a subgroup. Wraps `H5Gopen2`.
    public func group(_ name: String) throws -> HDF5Group {
        try locked {
            let place = "\(file.path):\(childPath(name))"
            try expectKind(0, of: name, "open group", "no such group", place)
            let id = try check(H5Gopen2(handle.id, name, gm_H5P_DEFAULT()), "open group", place)
            return HDF5Group(file: file, handle: Handle(id, close: H5Gclose), path: childPath(name))
        }
    }

    /// Opens a dataset. Wraps `H5Dopen2`.
    public func dataset(_ name: String) throws -> HDF5Dataset {
        try locked {
            let place = "\(file.path):\(childPath(name))"
            try expectKind(1, of: name, "open dataset", "no such dataset", place)
            let id = try check(H5Dopen2(handle.id, name, gm_H5P_DEFAULT()), "open dataset", place)
            return try HDF5Dataset(file: file, handle: Handle(id, close: H5Dclose), path: childPath(name))
        }
    }

    /// Throws unless `name` is an object of the shim's `kind` (0 group, 1 dataset).
    private func expectKind(_ kind: Int32, of name: String, _ operation: String, _ missing: String, _ place: String) throws {
        let found = gm_object_kind(handle.id, name)
        if found == kind { return }
        if found == -2 { throw failure(operation, place) }
        throw HDF5Error(operation: operation, path: place, detail: missing)
    }

    /// Creates a subgroup (intermediate groups too). Wraps `H5Gcreate2`.
    public func createGroup(_ name: String) throws -> HDF5Group {
        try locked {
            let place = "\(file.path):\(childPath(name))"
            return try withLinkProperties(place) { linkProperties in
                try withPropertyList(H5Pcreate(gm_H5P_GROUP_CREATE()), "create group properties", place) { groupProperties in
                    // No creation times in object headers: the same content gives the same bytes.
                    try check(H5Pset_obj_track_times(groupProperties, false), "set group properties", place)
                    let id = try check(H5Gcreate2(handle.id, name, linkProperties, groupProperties, gm_H5P_DEFAULT()),
                                       "create group", place)
                    return HDF5Group(file: file, handle: Handle(id, close: H5Gclose), path: childPath(name))
                }
            }
        }
    }

    /// Link creation properties that create missing intermediate groups.
    private func withLinkProperties<R>(_ place: String, _ body: (hid_t) throws -> R) throws -> R {
        try withPropertyList(H5Pcreate(gm_H5P_LINK_CREATE()), "create link properties", place) { properties in
            try check(H5Pset_create_intermediate_group(properties, 1), "set link properties", place)
            return try body(properties)
        }
    }

    /// Opens the subgroup, creating it when missing.
    public func openOrCreateGroup(_ name: String) throws -> HDF5Group {
        kind(of: name) == .group ? try group(name) : try createGroup(name)
    }

    /// Removes the link `name` from this group. Wraps `H5Ldelete`.
    public func removeLink(_ name: String) throws {
        try locked { try check(H5Ldelete(handle.id, name, gm_H5P_DEFAULT()), "delete", "\(file.path):\(childPath(name))") }
    }

    /// Creates a dataset of `T` with the given shape and contents (row-major).
    public func createDataset<T: HDF5Scalar>(
        _ name: String, shape: [Int], values: [T], storage: HDF5StorageOptions = .contiguous
    ) throws -> HDF5Dataset {
        let count = shape.reduce(1, *)
        precondition(count == values.count, "createDataset: \(values.count) values for shape \(shape)")
        return try locked {
            let place = "\(file.path):\(childPath(name))"
            return try withDataspace(createDataspace(shape), "create dataspace", place) { space in
                try withPropertyList(H5Pcreate(gm_H5P_DATASET_CREATE()), "create dataset properties", place) { properties in
                    // No creation times in object headers: the same content gives the same bytes.
                    try check(H5Pset_obj_track_times(properties, false), "set dataset properties", place)
                    // Compression pays only past a few kilobytes: a chunk index costs more than it saves
                    // on small tensors (biases, BatchNorm vectors).
                    if let level = storage.deflateLevel, count * MemoryLayout<T>.size >= storage.minimumCompressedBytes, !shape.isEmpty {
                        // One chunk for the whole array up to 1M elements along the first axis; small
                        // tensors gain nothing from finer chunks and this keeps metadata tiny.
                        var chunk = shape.map { hsize_t($0) }
                        let rowElements = max(1, shape.dropFirst().reduce(1, *))
                        chunk[0] = hsize_t(max(1, min(shape[0], (1 << 20) / rowElements)))
                        try check(H5Pset_chunk(properties, Int32(shape.count), &chunk), "set chunking", place)
                        if storage.shuffle { try check(H5Pset_shuffle(properties), "set the shuffle filter", place) }
                        try check(H5Pset_deflate(properties, UInt32(level)), "set the deflate filter", place)
                    }
                    let type = nativeType(T.hdf5ElementType)
                    let dataset = try withLinkProperties(place) { linkProperties in
                        let id = try check(H5Dcreate2(handle.id, name, type, space, linkProperties, properties, gm_H5P_DEFAULT()),
                                           "create dataset", place)
                        return try HDF5Dataset(file: file, handle: Handle(id, close: H5Dclose), path: childPath(name))
                    }
                    if count > 0 {
                        try values.withUnsafeBytes { buffer in
                            try check(H5Dwrite(dataset.handle.id, type, gm_H5S_ALL(), gm_H5S_ALL(), gm_H5P_DEFAULT(), buffer.baseAddress),
                                      "write dataset", dataset.location)
                        }
                    }
                    return dataset
                }
            }
        }
    }
}

// MARK: - Dataset

public final class HDF5Dataset: HDF5Object {
    public let file: HDF5File
    let handle: Handle
    public let path: String
    /// The dataset's dimensions; [] for a scalar.
    public let shape: [Int]
    /// Number of elements (checked when the dataset was opened, so it cannot overflow).
    public let elementCount: Int
    /// The on-disk element type.
    public let elementType: HDF5ElementType

    /// Reads the dataset's shape and type; call with the lock held.
    init(file: HDF5File, handle: Handle, path: String) throws {
        self.file = file
        self.handle = handle
        self.path = path
        let place = "\(file.path):\(path)"
        shape = try withDataspace(H5Dget_space(handle.id), "read dataset shape", place) { try dims(ofSpace: $0, place) }
        elementCount = shape.reduce(1, *)
        elementType = try withDatatype(H5Dget_type(handle.id), "read dataset type", place) { try describe(typeID: $0, place) }
    }

    /// Bytes the data occupies in the file (after any compression); 0 when nothing is stored.
    /// Wraps `H5Dget_storage_size`, which has no error value.
    public var storageSize: Int { locked { Int(clamping: H5Dget_storage_size(handle.id)) } }

    /// Reads every element, converted by libhdf5 from the on-disk type to `T`.
    public func read<T: HDF5Scalar>(as: T.Type = T.self) throws -> [T] {
        try checkReadable(as: T.self)
        var values = [T](repeating: 0, count: elementCount)
        try values.withUnsafeMutableBufferPointer { try readChecked(into: $0) }
        return values
    }

    /// Reads every element into `buffer`, which must hold exactly `elementCount` values.
    public func read<T: HDF5Scalar>(into buffer: UnsafeMutableBufferPointer<T>) throws {
        try checkReadable(as: T.self)
        try readChecked(into: buffer)
    }

    private func readChecked<T: HDF5Scalar>(into buffer: UnsafeMutableBufferPointer<T>) throws {
        guard buffer.count == elementCount else {
            throw HDF5Error(operation: "read dataset", path: location,
                            detail: "buffer holds \(buffer.count) values, dataset \(elementCount)")
        }
        if buffer.isEmpty { return }
        try locked {
            try check(H5Dread(handle.id, nativeType(T.hdf5ElementType), gm_H5S_ALL(), gm_H5S_ALL(), gm_H5P_DEFAULT(),
                              buffer.baseAddress), "read dataset", location)
        }
    }

    /// Deflate's largest possible compression ratio (zlib's technical notes: 1032:1).
    private static let deflateExpansion = 1032

    /// Refuses, before anything is allocated, a read of every element as `T` that cannot work:
    /// numbers from a non-number type, more than this machine's memory, or more data than the
    /// file stores for the dataset. The declared shape alone costs nothing on disk (a chunked
    /// dataset that was never written reads as fill values), so it is held against the stored
    /// bytes times what the dataset's filters can expand them to.
    private func checkReadable<T: HDF5Scalar>(as: T.Type) throws {
        guard let fileElementSize = elementType.numberSize else {
            throw HDF5Error(operation: "read as numbers", path: location, detail: "holds \(elementType)")
        }
        let noun = "\(elementType) values"
        if let problem = MachineMemory.problem(count: elementCount, elementSize: MemoryLayout<T>.stride, noun: noun) {
            throw HDF5Error(operation: "read dataset", path: location, detail: problem)
        }
        let declared = elementCount * fileElementSize  // below the memory size checked above, times at most 8
        guard declared > 0 else { return }
        let (stored, expansion) = try storageBound()
        guard let expansion else { return }
        let (bound, overflow) = stored.multipliedReportingOverflow(by: expansion)
        guard !overflow, declared > bound else { return }
        let declaration = "declares \(elementCount) \(noun) (\(describeBytes(declared)))"
        let problem: String
        if stored == 0 { problem = "\(declaration) but the file stores none of them" }
        else if expansion == 1 { problem = "\(declaration) but the file stores only \(describeBytes(stored)) for it" }
        else { problem = "\(declaration) but its \(describeBytes(stored)) of compressed data inflate to at most \(describeBytes(bound))" }
        throw HDF5Error(operation: "read dataset", path: location, detail: problem)
    }

    /// The bytes stored for this dataset and how far its filters can expand them (1 without
    /// compression; nil for a filter with no known bound: n-bit, scale-offset, szip, plugins).
    /// Data stored outside the file (external files, virtual datasets) is refused: it can come
    /// from anywhere on the machine.
    private func storageBound() throws -> (stored: Int, expansion: Int?) {
        try locked {
            try withPropertyList(H5Dget_create_plist(handle.id), "read dataset properties", location) { properties in
                let layout = H5Pget_layout(properties)
                let external = H5Pget_external_count(properties)
                let filters = H5Pget_nfilters(properties)
                guard layout != H5D_LAYOUT_ERROR, external >= 0, filters >= 0 else {
                    throw failure("read dataset properties", location)
                }
                if layout == H5D_VIRTUAL || external > 0 {
                    throw HDF5Error(operation: "read dataset", path: location,
                                    detail: "its data lives outside this file (\(layout == H5D_VIRTUAL ? "a virtual dataset" : "external storage")), which gmtool does not follow")
                }
                var expansion: Int? = 1
                for index in 0..<UInt32(filters) {
                    var flags: UInt32 = 0, parameterCount = 0, configuration: UInt32 = 0
                    let filter = H5Pget_filter2(properties, index, &flags, &parameterCount, nil, 0, nil, &configuration)
                    switch filter {
                    case H5Z_FILTER_DEFLATE: expansion = expansion.map { $0 * Self.deflateExpansion }
                    case H5Z_FILTER_SHUFFLE, H5Z_FILTER_FLETCHER32: break
                    case ..<0: throw failure("read dataset filters", location)
                    default: expansion = nil
                    }
                }
                return (Int(clamping: H5Dget_storage_size(handle.id)), expansion)
            }
        }
    }

    /// Overwrites every element; libhdf5 converts from `T` to the on-disk type.
    public func write<T: HDF5Scalar>(_ values: [T]) throws {
        guard values.count == elementCount else {
            throw HDF5Error(operation: "write dataset", path: location,
                            detail: "\(values.count) values for \(elementCount) elements")
        }
        if values.isEmpty { return }
        try locked {
            try values.withUnsafeBytes { buffer in
                try check(H5Dwrite(handle.id, nativeType(T.hdf5ElementType), gm_H5S_ALL(), gm_H5S_ALL(), gm_H5P_DEFAULT(),
                                   buffer.baseAddress), "write dataset", location)
            }
        }
    }
}
