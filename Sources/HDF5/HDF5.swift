internal import CHDF5
import Foundation

// Every call into libhdf5 goes through this file. Handles are owned by small final classes that
// close them in deinit; nothing from CHDF5 appears in the public API.

/// libhdf5 is not thread-safe in its serial build: every call goes through this lock.
private let hdf5Lock = NSRecursiveLock()

@inline(__always)
private func locked<T>(_ body: () throws -> T) rethrows -> T {
    hdf5Lock.lock()
    defer { hdf5Lock.unlock() }
    // Thread-safe builds of libhdf5 keep error settings per thread: silence printing on
    // whichever thread this is (a pointer store).
    gm_silence_errors()
    return try body()
}

/// Silences libhdf5's automatic stderr printing once, before the first call.
private let librarySetUp: Void = {
    H5open()
    gm_silence_errors()
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

private func check(_ status: herr_t, _ operation: String, _ path: @autoclosure () -> String) throws {
    if status < 0 { throw HDF5Error(operation: operation, path: path(), detail: stackDetail()) }
}

private func check(_ id: hid_t, _ operation: String, _ path: @autoclosure () -> String) throws -> hid_t {
    if id < 0 { throw HDF5Error(operation: operation, path: path(), detail: stackDetail()) }
    return id
}

/// Owns one HDF5 identifier and closes it with the matching H5?close.
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

// MARK: - Element types

/// The kind of numbers (or strings) an HDF5 dataset or attribute holds on disk.
public enum HDF5ElementType: Equatable, Sendable, CustomStringConvertible {
    case float(bits: Int)
    case integer(bits: Int, signed: Bool)
    case string(variableLength: Bool)
    case other(String)

    public var isFloat: Bool { if case .float = self { return true } else { return false } }

    public var description: String {
        switch self {
        case .float(let bits): return "float\(bits)"
        case .integer(let bits, let signed): return signed ? "int\(bits)" : "uint\(bits)"
        case .string(let variable): return variable ? "variable-length string" : "fixed-length string"
        case .other(let name): return name
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

private func describe(typeID: hid_t) -> HDF5ElementType {
    let size = Int(H5Tget_size(typeID))
    switch H5Tget_class(typeID) {
    case H5T_FLOAT: return .float(bits: size * 8)
    case H5T_INTEGER: return .integer(bits: size * 8, signed: H5Tget_sign(typeID) != H5T_SGN_NONE)
    case H5T_STRING: return .string(variableLength: H5Tis_variable_str(typeID) > 0)
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

private func dims(ofSpace space: hid_t) -> [Int] {
    let rank = Int(H5Sget_simple_extent_ndims(space))
    guard rank > 0 else { return [] }
    var d = [hsize_t](repeating: 0, count: rank)
    H5Sget_simple_extent_dims(space, &d, nil)
    return d.map { Int($0) }
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
        try locked {
            librarySetUp
            let flags = mode == .readOnly ? gm_H5F_ACC_RDONLY() : gm_H5F_ACC_RDWR()
            if H5Fis_hdf5(path) <= 0 {
                gm_clear_errors()
                throw HDF5Error(operation: "open file", path: path, detail: "not an HDF5 file")
            }
            let id = try check(H5Fopen(path, flags, gm_H5P_DEFAULT()), "open file", path)
            return HDF5File(handle: Handle(id, close: H5Fclose), path: path)
        }
    }

    /// Creates a new file, replacing any file at `path`. Wraps `H5Fcreate`. `compact` writes
    /// the HDF5 1.8 object format (smaller headers, compact groups), which HDF5 1.8+ and h5py read
    /// but Keras' own writer never produces; the default keeps the oldest format.
    public static func create(_ path: String, compact: Bool = false) throws -> HDF5File {
        try locked {
            librarySetUp
            let access = H5Pcreate(gm_H5P_FILE_ACCESS())
            defer { H5Pclose(access) }
            if compact { H5Pset_libver_bounds(access, H5F_LIBVER_V110, H5F_LIBVER_V110) }
            let creation = H5Pcreate(gm_H5P_FILE_CREATE())
            defer { H5Pclose(creation) }
            // No creation time in the root group's header: the same content gives the same bytes.
            H5Pset_obj_track_times(creation, false)
            let id = try check(H5Fcreate(path, gm_H5F_ACC_TRUNC(), creation, access),
                               "create file", path)
            return HDF5File(handle: Handle(id, close: H5Fclose), path: path)
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
        locked {
            let count = max(0, Int(gm_attribute_count(objectID)))
            var names: [String] = []
            for index in 0..<count {
                let length = H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(index), nil, 0, gm_H5P_DEFAULT())
                guard length >= 0 else { continue }
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                H5Aget_name_by_idx(objectID, ".", H5_INDEX_NAME, H5_ITER_INC, hsize_t(index), &buffer, buffer.count, gm_H5P_DEFAULT())
                names.append(decodeNulTerminated(buffer))
            }
            return names
        }
    }

    public func hasAttribute(_ name: String) -> Bool {
        locked { H5Aexists(objectID, name) > 0 }
    }

    /// Opens the named attribute. Wraps `H5Aopen`.
    public func attribute(_ name: String) throws -> HDF5Attribute {
        try locked {
            let id = try check(H5Aopen(objectID, name, gm_H5P_DEFAULT()), "open attribute '\(name)'", location)
            return HDF5Attribute(handle: Handle(id, close: H5Aclose), name: name, owner: location)
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
            let type = H5Tcopy(gm_H5T_C_S1())
            defer { H5Tclose(type) }
            H5Tset_size(type, gm_H5T_VARIABLE())
            H5Tset_cset(type, H5T_CSET_UTF8)
            var dimensions = [hsize_t(values.count)]
            let space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dimensions, nil)
            defer { H5Sclose(space) }
            let attr = try check(H5Acreate2(objectID, name, type, space, gm_H5P_DEFAULT(), gm_H5P_DEFAULT()),
                                 "create attribute '\(name)'", location)
            defer { H5Aclose(attr) }
            let cStrings = values.map { strdup($0) }
            defer { cStrings.forEach { free($0) } }
            var pointers: [UnsafePointer<CChar>?] = cStrings.map { UnsafePointer($0) }
            try check(H5Awrite(attr, type, &pointers), "write attribute '\(name)'", location)
        }
    }

    /// Writes a numeric attribute; a single value is stored as a scalar.
    public func setAttribute<T: HDF5Scalar>(_ name: String, values: [T], scalar: Bool = false) throws {
        try locked {
            try deleteAttributeIfPresent(name)
            var dimensions = [hsize_t(values.count)]
            let space = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dimensions, nil)
            defer { H5Sclose(space) }
            let type = nativeType(T.hdf5ElementType)
            let attr = try check(H5Acreate2(objectID, name, type, space, gm_H5P_DEFAULT(), gm_H5P_DEFAULT()),
                                 "create attribute '\(name)'", location)
            defer { H5Aclose(attr) }
            try values.withUnsafeBytes { buffer in
                try check(H5Awrite(attr, type, buffer.baseAddress), "write attribute '\(name)'", location)
            }
        }
    }

    private func deleteAttributeIfPresent(_ name: String) throws {
        if H5Aexists(objectID, name) > 0 {
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

    init(handle: Handle, name: String, owner: String) {
        self.handle = handle
        self.name = name
        self.owner = owner
    }

    private var where_: String { "\(owner) attribute '\(name)'" }

    /// The on-disk element type.
    public var elementType: HDF5ElementType {
        locked {
            let type = H5Aget_type(handle.id)
            defer { H5Tclose(type) }
            return describe(typeID: type)
        }
    }

    /// The shape; [] for a scalar.
    public var shape: [Int] {
        locked {
            let space = H5Aget_space(handle.id)
            defer { H5Sclose(space) }
            return dims(ofSpace: space)
        }
    }

    /// Reads a string or an array of strings, fixed- or variable-length, as Swift strings.
    /// Fixed-length strings lose their trailing NUL padding, as h5py does.
    public func readStrings() throws -> [String] {
        try locked {
            let fileType = H5Aget_type(handle.id)
            defer { H5Tclose(fileType) }
            let space = H5Aget_space(handle.id)
            defer { H5Sclose(space) }
            let count = Int(H5Sget_simple_extent_npoints(space))
            // An empty list is written by h5py/numpy as an empty float array: no strings.
            if count == 0 { return [] }
            guard H5Tget_class(fileType) == H5T_STRING else {
                throw HDF5Error(operation: "read as text", path: where_, detail: "holds \(describe(typeID: fileType)), not strings")
            }
            if H5Tis_variable_str(fileType) > 0 {
                let memType = H5Tcopy(gm_H5T_C_S1())
                defer { H5Tclose(memType) }
                H5Tset_size(memType, gm_H5T_VARIABLE())
                H5Tset_cset(memType, H5Tget_cset(fileType))
                var pointers = [UnsafeMutablePointer<CChar>?](repeating: nil, count: count)
                try check(H5Aread(handle.id, memType, &pointers), "read attribute", where_)
                defer { gm_free_vlen_strings(&pointers, count) }
                return pointers.map { $0.map { String(cString: $0) } ?? "" }
            } else {
                let size = Int(H5Tget_size(fileType))
                var bytes = [UInt8](repeating: 0, count: size * count)
                let memType = H5Tcopy(fileType)
                defer { H5Tclose(memType) }
                try check(H5Aread(handle.id, memType, &bytes), "read attribute", where_)
                return (0..<count).map { index in
                    var slice = bytes[(index * size)..<((index + 1) * size)]
                    while let last = slice.last, last == 0 || last == 0x20 && H5Tget_strpad(fileType) == H5T_STR_SPACEPAD {
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
        try locked {
            let fileType = H5Aget_type(handle.id)
            defer { H5Tclose(fileType) }
            let kind = describe(typeID: fileType)
            switch kind {
            case .float, .integer: break
            default: throw HDF5Error(operation: "read as numbers", path: where_, detail: "holds \(kind)")
            }
            let space = H5Aget_space(handle.id)
            defer { H5Sclose(space) }
            let count = Int(H5Sget_simple_extent_npoints(space))
            var values = [T](repeating: 0, count: count)
            try values.withUnsafeMutableBytes { buffer in
                try check(H5Aread(handle.id, nativeType(T.hdf5ElementType), buffer.baseAddress), "read attribute", where_)
            }
            return values
        }
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

    private func childPath(_ name: String) -> String { path == "/" ? "/\(name)" : "\(path)/\(name)" }

    /// Names of the links in this group, sorted by name. Wraps `H5Gget_info` and `H5Lget_name_by_idx`.
    public func childNames() throws -> [String] {
        try locked {
            var info = H5G_info_t()
            try check(H5Gget_info(handle.id, &info), "list group", location)
            var names: [String] = []
            for index in 0..<info.nlinks {
                let length = H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, nil, 0, gm_H5P_DEFAULT())
                guard length >= 0 else { throw HDF5Error(operation: "list group", path: location, detail: stackDetail()) }
                var buffer = [CChar](repeating: 0, count: Int(length) + 1)
                H5Lget_name_by_idx(handle.id, ".", H5_INDEX_NAME, H5_ITER_INC, index, &buffer, buffer.count, gm_H5P_DEFAULT())
                names.append(decodeNulTerminated(buffer))
            }
            return names
        }
    }

    /// What `name` (a relative path, may contain "/") refers to, or nil when nothing does.
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
            guard gm_object_kind(handle.id, name) == 0 else {
                gm_clear_errors()
                throw HDF5Error(operation: "open group", path: "\(file.path):\(childPath(name))", detail: "no such group")
            }
            let id = try check(H5Gopen2(handle.id, name, gm_H5P_DEFAULT()), "open group", "\(file.path):\(childPath(name))")
            return HDF5Group(file: file, handle: Handle(id, close: H5Gclose), path: childPath(name))
        }
    }

    /// Opens a dataset. Wraps `H5Dopen2`.
    public func dataset(_ name: String) throws -> HDF5Dataset {
        try locked {
            guard gm_object_kind(handle.id, name) == 1 else {
                gm_clear_errors()
                throw HDF5Error(operation: "open dataset", path: "\(file.path):\(childPath(name))", detail: "no such dataset")
            }
            let id = try check(H5Dopen2(handle.id, name, gm_H5P_DEFAULT()), "open dataset", "\(file.path):\(childPath(name))")
            return HDF5Dataset(file: file, handle: Handle(id, close: H5Dclose), path: childPath(name))
        }
    }

    /// Creates a subgroup (intermediate groups too). Wraps `H5Gcreate2`.
    public func createGroup(_ name: String) throws -> HDF5Group {
        try locked {
            let linkProperties = H5Pcreate(gm_H5P_LINK_CREATE())
            defer { H5Pclose(linkProperties) }
            H5Pset_create_intermediate_group(linkProperties, 1)
            let groupProperties = H5Pcreate(gm_H5P_GROUP_CREATE())
            defer { H5Pclose(groupProperties) }
            // No creation times in object headers: the same content gives the same bytes.
            H5Pset_obj_track_times(groupProperties, false)
            let id = try check(H5Gcreate2(handle.id, name, linkProperties, groupProperties, gm_H5P_DEFAULT()),
                               "create group", "\(file.path):\(childPath(name))")
            return HDF5Group(file: file, handle: Handle(id, close: H5Gclose), path: childPath(name))
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
            var dimensions = shape.map { hsize_t($0) }
            let space = shape.isEmpty ? H5Screate(H5S_SCALAR) : H5Screate_simple(Int32(shape.count), &dimensions, nil)
            defer { H5Sclose(space) }
            let properties = H5Pcreate(gm_H5P_DATASET_CREATE())
            defer { H5Pclose(properties) }
            // No creation times in object headers: the same content gives the same bytes.
            H5Pset_obj_track_times(properties, false)
            // Compression pays only past a few kilobytes: a chunk index costs more than it saves
            // on small tensors (biases, BatchNorm vectors).
            if let level = storage.deflateLevel, count * MemoryLayout<T>.size >= storage.minimumCompressedBytes, !shape.isEmpty {
                // One chunk for the whole array up to 1M elements along the first axis; small
                // tensors gain nothing from finer chunks and this keeps metadata tiny.
                var chunk = dimensions
                let rowElements = max(1, shape.dropFirst().reduce(1, *))
                chunk[0] = hsize_t(max(1, min(shape[0], (1 << 20) / rowElements)))
                H5Pset_chunk(properties, Int32(shape.count), &chunk)
                if storage.shuffle { H5Pset_shuffle(properties) }
                H5Pset_deflate(properties, UInt32(level))
            }
            let type = nativeType(T.hdf5ElementType)
            let linkProperties = H5Pcreate(gm_H5P_LINK_CREATE())
            defer { H5Pclose(linkProperties) }
            H5Pset_create_intermediate_group(linkProperties, 1)
            let id = try check(H5Dcreate2(handle.id, name, type, space, linkProperties, properties, gm_H5P_DEFAULT()),
                               "create dataset", "\(file.path):\(childPath(name))")
            let dataset = HDF5Dataset(file: file, handle: Handle(id, close: H5Dclose), path: childPath(name))
            if count > 0 {
                try values.withUnsafeBytes { buffer in
                    try check(H5Dwrite(id, type, gm_H5S_ALL(), gm_H5S_ALL(), gm_H5P_DEFAULT(), buffer.baseAddress),
                              "write dataset", dataset.location)
                }
            }
            return dataset
        }
    }
}

// MARK: - Dataset

public final class HDF5Dataset: HDF5Object {
    public let file: HDF5File
    let handle: Handle
    public let path: String

    init(file: HDF5File, handle: Handle, path: String) {
        self.file = file
        self.handle = handle
        self.path = path
    }

    /// The dataset's dimensions; [] for a scalar.
    public var shape: [Int] {
        locked {
            let space = H5Dget_space(handle.id)
            defer { H5Sclose(space) }
            return dims(ofSpace: space)
        }
    }

    /// Number of elements.
    public var elementCount: Int { shape.reduce(1, *) }

    /// The on-disk element type.
    public var elementType: HDF5ElementType {
        locked {
            let type = H5Dget_type(handle.id)
            defer { H5Tclose(type) }
            return describe(typeID: type)
        }
    }

    /// Bytes the data occupies in the file (after any compression). Wraps `H5Dget_storage_size`.
    public var storageSize: Int { locked { Int(H5Dget_storage_size(handle.id)) } }

    /// Reads every element, converted by libhdf5 from the on-disk type to `T`.
    public func read<T: HDF5Scalar>(as: T.Type = T.self) throws -> [T] {
        var values = [T](repeating: 0, count: elementCount)
        try values.withUnsafeMutableBufferPointer { try read(into: $0) }
        return values
    }

    /// Reads every element into `buffer`, which must hold exactly `elementCount` values.
    public func read<T: HDF5Scalar>(into buffer: UnsafeMutableBufferPointer<T>) throws {
        let kind = elementType
        switch kind {
        case .float, .integer: break
        default: throw HDF5Error(operation: "read as numbers", path: location, detail: "holds \(kind)")
        }
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
