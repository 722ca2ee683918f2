import Engine
import Foundation
import Testing
@testable import KerasCheckpoint

/// A copy of a fixture whose prunable kernels are pruned to the given fractions in turn (0%, 50%,
/// 90%, 100%, ...), smallest magnitudes first, with masks; `masks: false` leaves no mask group.
func prunedCopy(_ name: String, fractions: [Double], masks: Bool, in scratch: ScratchFolder) throws -> Checkpoint {
    let checkpoint = try Fixtures.open(name)
    var edits = CheckpointEdits()
    for (index, weight) in checkpoint.weights.filter(\.prunable).enumerated() {
        var values = try checkpoint.read(weight)
        let fraction = fractions[index % fractions.count]
        let order = values.indices.sorted { abs(values[$0]) < abs(values[$1]) }
        var mask = [UInt8](repeating: 1, count: values.count)
        for i in order.prefix(Int((fraction * Double(values.count)).rounded())) {
            values[i] = 0
            mask[i] = 0
        }
        edits.weights[weight] = values
        if masks { edits.masks[weight] = Mask(mask) }
    }
    let path = scratch.path("pruned-" + name)
    try checkpoint.write(to: path, edits: edits)
    return try Checkpoint.open(path, config: try Fixtures.architecture(for: name))
}

@Suite struct SparseExportTests {
    @Test(arguments: [("mobilenet_k2.h5", true), ("rescnn_k3.keras", true), ("seqcnn_k2.h5", false)])
    func exportImportRoundTripIsExact(name: String, masks: Bool) throws {
        let scratch = try ScratchFolder()
        let source = try prunedCopy(name, fractions: [0, 0.5, 0.9, 1.0], masks: masks, in: scratch)
        for encoding in SparseEncoding.allCases {
            for compress in [true, false] {
                let exported = scratch.path("model-\(encoding.rawValue)-\(compress).h5")
                let reports = try source.exportSparse(to: exported, encoding: encoding, compress: compress)
                #expect(reports.count == source.weights.filter(\.prunable).count)
                let sparse = try Checkpoint.open(exported)
                #expect(sparse.layout == .sparseExport)
                let imported = scratch.path("dense-\(encoding.rawValue)-\(compress).h5")
                try sparse.writeDenseModel(to: imported)
                let restored = try Checkpoint.open(imported)
                #expect(restored.weights.count == source.weights.count)
                for (a, b) in zip(source.weights, restored.weights) {
                    #expect(a.shape == b.shape && a.role == b.role && a.layerName == b.layerName)
                    #expect(try source.read(a).map(\.bitPattern) == restored.read(b).map(\.bitPattern), "\(a.datasetPath)")
                    #expect(try source.mask(for: a) == restored.mask(for: b), "\(a.datasetPath)")
                    // The sparse file itself reads back the same values and masks.
                    #expect(try source.read(a).map(\.bitPattern) == sparse.read(a).map(\.bitPattern))
                }
                #expect(try sparse.statistics().nonzeroParameters == source.statistics().nonzeroParameters)
            }
        }
    }

    @Test func csrStructureIsValidAndRowsAreOutputChannels() throws {
        let scratch = try ScratchFolder()
        let source = try prunedCopy("mobilenet_k2.h5", fractions: [0.3, 0.95], masks: true, in: scratch)
        let path = scratch.path("m.csr.h5")
        _ = try source.exportSparse(to: path, encoding: .csr, compress: true)
        let sparse = try Checkpoint.open(path)
        for weight in sparse.weights where weight.prunable {
            let matrix = try #require(try sparse.sparseKernel(weight))
            #expect(matrix.structureProblem() == nil)
            let shape = KernelMatrixShape(role: weight.role, shape: weight.shape)
            #expect(matrix.rows == (weight.role == .depthwiseKernel ? weight.shape[2] * weight.shape[3] : weight.shape.last!))
            #expect(matrix.rows * matrix.columns == weight.elementCount)
            // Element (r, c) is kernel[c * rows + r].
            let dense = try source.read(weight)
            for r in 0..<min(matrix.rows, 4) {
                for k in matrix.rowOffsets[r]..<matrix.rowOffsets[r + 1] {
                    #expect(matrix.values[k] == dense[Int(matrix.columnIndices[k]) * shape.rows + r])
                }
            }
        }
    }

    @Test func structureChecksCatchBrokenMatrices() {
        let good = CSRMatrix(rows: 2, columns: 3, rowOffsets: [0, 2, 3], columnIndices: [0, 2, 1], values: [1, 2, 3])
        #expect(good.structureProblem() == nil)
        var unsorted = good
        unsorted.columnIndices = [2, 0, 1]
        #expect(unsorted.structureProblem() == "row 0 has column 0 after 2: columns must increase")
        var decreasing = good
        decreasing.rowOffsets = [0, 3, 2]
        #expect(decreasing.structureProblem() == "indptr ends at 2, not at the 3 stored entries")
        decreasing.rowOffsets = [0, 4, 3]
        #expect(decreasing.structureProblem() == "indptr decreases at row 1 (4 then 3)")
        var outOfRange = good
        outOfRange.columnIndices = [0, 3, 1]
        #expect(outOfRange.structureProblem() == "row 0 has column 3, outside 0..<3")
        let wide = CSRMatrix(rows: 1, columns: 1 << 31, rowOffsets: [0, 0], columnIndices: [], values: [])
        #expect(wide.structureProblem() == "its 2147483648 columns are more than 32-bit indices address")
    }

    @Test func bitmaskPackingMatchesNumPyPackbits() {
        let shape = KernelMatrixShape(role: .kernel, shape: [3, 3])  // rows = 3 (out), columns = 3 (in)
        // kernel (in, out); matrix (out, in) row-major: m[r][c] = kernel[c * 3 + r].
        let kernel: [Float] = [1, 0, 0, 0, 2, 0, 0, 0, 3]  // diagonal
        let packed = shape.bitmask(of: kernel, mask: nil)
        // Pattern 100 010 001 -> bits 10001000 1(0000000): 0x88, 0x80.
        #expect(packed.bits == [0x88, 0x80])
        #expect(packed.values == [1, 2, 3])
        #expect(shape.bitmaskProblem(bits: packed.bits, valueCount: packed.values.count) == nil)
        #expect(shape.dense(shape.matrix(bits: packed.bits, values: packed.values)) == kernel)
    }

    @Test func sparseFilesAreReadOnlyCheckpoints() throws {
        let scratch = try ScratchFolder()
        let source = try prunedCopy("seqcnn_k2.h5", fractions: [0.5], masks: true, in: scratch)
        let path = scratch.path("s.h5")
        _ = try source.exportSparse(to: path, encoding: .csr, compress: true)
        #expect(throws: CheckpointError.self) { try Checkpoint.open(path).write(to: scratch.path("x.h5")) }
        // A weights-only file without its architecture cannot become a complete sparse model.
        let weightsOnly = try Checkpoint.open(Fixtures.path("seqcnn_k2_weights.h5"))
        #expect(throws: CheckpointError.self) { try weightsOnly.exportSparse(to: scratch.path("w.h5"), encoding: .csr, compress: true) }
        if let folder = ProcessInfo.processInfo.environment["GMTOOL_INTEROP_OUT"] {
            // For Tests/interop: scipy must rebuild every kernel of these exports.
            let destination = URL(fileURLWithPath: folder).appendingPathComponent("sparse")
            try FileManager.default.createDirectory(at: destination, withIntermediateDirectories: true)
            for (name, fractions) in [("mobilenet_k2.h5", [0, 0.5, 0.9, 1.0]), ("rescnn_k3.keras", [0.7])] {
                let pruned = try prunedCopy(name, fractions: fractions, masks: true, in: scratch)
                let stem = (name as NSString).deletingPathExtension
                try pruned.writeDenseModel(to: destination.appendingPathComponent("\(stem).dense.h5").path)
                _ = try pruned.exportSparse(to: destination.appendingPathComponent("\(stem).csr.h5").path, encoding: .csr, compress: true)
                _ = try pruned.exportSparse(to: destination.appendingPathComponent("\(stem).bitmask.h5").path, encoding: .bitmask, compress: true)
            }
        }
    }
}
