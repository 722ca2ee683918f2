import CHDF5
import Foundation
import HDF5

// Files that lie about their sizes, built by the tests that need them (nothing is committed): a
// chunked dataset stores only the chunks written to it, so a declared shape costs nothing on
// disk. The HDF5 module writes only complete datasets, so these go to libhdf5 directly.

public struct MalformedFileError: Error, CustomStringConvertible {
    public var description: String
}

/// Creates dataset `path` (intermediate groups too) in the existing HDF5 file `file`: chunked
/// (one chunk = up to 1024 elements of the last axis), float32 or uint8, `deflate` compressed or
/// not, with only its first `writtenElements` elements written (a 1-D shape then), or stored in
/// the external raw file `external` instead of the file itself.
public func declareDataset(in file: String, at path: String, shape: [Int], uint8: Bool = false, deflate: Bool = false,
                           writtenElements: Int = 0, external: String? = nil) throws {
    func check(_ status: Int64, _ what: String) throws {
        if status < 0 { throw MalformedFileError(description: "libhdf5 failed to \(what) for \(file):\(path)") }
    }
    let fileID = H5Fopen(file, gm_H5F_ACC_RDWR(), gm_H5P_DEFAULT())
    try check(fileID, "open the file")
    defer { H5Fclose(fileID) }
    var dimensions = shape.map { hsize_t($0) }
    let space = H5Screate_simple(Int32(shape.count), &dimensions, nil)
    try check(space, "create the dataspace")
    defer { H5Sclose(space) }
    let creation = H5Pcreate(gm_H5P_DATASET_CREATE())
    try check(creation, "create dataset properties")
    defer { H5Pclose(creation) }
    if let external {
        let bytes = shape.reduce(1, *) * (uint8 ? 1 : 4)
        try check(Int64(H5Pset_external(creation, external, 0, hsize_t(bytes))), "set external storage")
    } else {
        var chunk = dimensions.map { _ in hsize_t(1) }
        chunk[chunk.count - 1] = min(dimensions[dimensions.count - 1], 1024)
        try check(Int64(H5Pset_chunk(creation, Int32(chunk.count), &chunk)), "set chunking")
        if deflate { try check(Int64(H5Pset_deflate(creation, 9)), "set deflate") }
    }
    let links = H5Pcreate(gm_H5P_LINK_CREATE())
    try check(links, "create link properties")
    defer { H5Pclose(links) }
    try check(Int64(H5Pset_create_intermediate_group(links, 1)), "set intermediate groups")
    let type = uint8 ? gm_H5T_NATIVE_UINT8() : gm_H5T_NATIVE_FLOAT()
    let dataset = H5Dcreate2(fileID, path, type, space, links, creation, gm_H5P_DEFAULT())
    try check(dataset, "create the dataset")
    defer { H5Dclose(dataset) }
    guard writtenElements > 0 else { return }
    var start = [hsize_t(0)], count = [hsize_t(writtenElements)]
    try check(Int64(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nil, &count, nil)), "select the written part")
    let memory = H5Screate_simple(1, &count, nil)
    try check(memory, "create the memory dataspace")
    defer { H5Sclose(memory) }
    let zeros = [Float](repeating: 0, count: writtenElements)
    try check(Int64(H5Dwrite(dataset, gm_H5T_NATIVE_FLOAT(), memory, space, gm_H5P_DEFAULT(), zeros)), "write")
}

/// A copy of the Keras 2 full model `source` whose Conv2D layer `layer` declares `filters`
/// filters: its model_config says so, and its kernel and bias are chunked datasets of the
/// declared shapes that were never written (the copy is about as small as the original).
public func copyDeclaringFilters(_ filters: Int, layer: String, of source: String, to destination: String) throws {
    try? FileManager.default.removeItem(atPath: destination)
    try FileManager.default.copyItem(atPath: source, toPath: destination)
    let group = "/model_weights/\(layer)/\(layer)"
    var kernelShape: [Int] = []
    do {
        let file = try HDF5File.open(destination, mode: .readWrite)
        let text = try file.root.attribute("model_config").readString()
        guard var config = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
              var inner = config["config"] as? [String: Any], var layers = inner["layers"] as? [[String: Any]],
              let index = layers.firstIndex(where: { ($0["config"] as? [String: Any])?["name"] as? String == layer }),
              var layerConfig = layers[index]["config"] as? [String: Any] else {
            throw MalformedFileError(description: "\(source) has no layer \(layer) in its model_config")
        }
        layerConfig["filters"] = filters
        layers[index]["config"] = layerConfig
        inner["layers"] = layers
        config["config"] = inner
        try file.root.setAttribute("model_config", string: String(decoding: try JSONSerialization.data(withJSONObject: config), as: UTF8.self))
        let weights = try file.root.group(group)
        kernelShape = Array(try weights.dataset("kernel:0").shape.dropLast()) + [filters]
        try weights.removeLink("kernel:0")
        try weights.removeLink("bias:0")
    }
    try declareDataset(in: destination, at: "\(group)/kernel:0", shape: kernelShape)
    try declareDataset(in: destination, at: "\(group)/bias:0", shape: [filters])
}
