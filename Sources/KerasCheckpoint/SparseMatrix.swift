/// A compressed sparse row matrix in scipy's convention: the column indices of row r are
/// `columnIndices[rowOffsets[r]..<rowOffsets[r+1]]`, sorted, with `values` beside them.
public struct CSRMatrix: Equatable, Sendable {
    public var rows: Int
    public var columns: Int
    public var rowOffsets: [Int]
    public var columnIndices: [Int32]
    public var values: [Float]

    public init(rows: Int, columns: Int, rowOffsets: [Int], columnIndices: [Int32], values: [Float]) {
        self.rows = rows
        self.columns = columns
        self.rowOffsets = rowOffsets
        self.columnIndices = columnIndices
        self.values = values
    }

    public var storedCount: Int { values.count }

    /// What is wrong with a CSR matrix of `rows` x `columns` made of arrays of these lengths,
    /// or nil: indptr has one entry per row plus one, indices and data pair up, and there are no
    /// more entries than the matrix has places (nor columns than 32-bit indices address). Checked
    /// on the declared lengths before a file's arrays are read, and again by `structureProblem`.
    public static func sizeProblem(rows: Int, columns: Int, offsets: Int, indices: Int, values: Int) -> String? {
        guard offsets == rows + 1 else { return "indptr has \(offsets) entries for \(rows) rows (needs \(rows + 1))" }
        guard indices == values else { return "indices has \(indices) entries but data has \(values)" }
        guard columns <= Int(Int32.max) else { return "its \(columns) columns are more than 32-bit indices address" }
        let places = rows.multipliedReportingOverflow(by: columns)
        guard places.overflow || values <= places.partialValue else {
            return "data has \(values) entries, more than the \(rows)x\(columns) matrix has places"
        }
        return nil
    }

    /// scipy's `check_format`: the sizes above, then offsets start at 0, never decrease and end at
    /// the entry count; indices are in range and strictly increasing within a row. Returns the
    /// first problem, or nil: a matrix without one is safe to hand to the raw-pointer kernels.
    public func structureProblem() -> String? {
        if let problem = Self.sizeProblem(rows: rows, columns: columns, offsets: rowOffsets.count,
                                          indices: columnIndices.count, values: values.count) {
            return problem
        }
        guard rowOffsets[0] == 0 else { return "indptr starts at \(rowOffsets[0]), not 0" }
        guard rowOffsets[rows] == values.count else {
            return "indptr ends at \(rowOffsets[rows]), not at the \(values.count) stored entries"
        }
        // All of indptr before any row's columns: rising from 0 to the entry count, it can then
        // only index entries that exist.
        for r in 0..<rows where rowOffsets[r] > rowOffsets[r + 1] {
            return "indptr decreases at row \(r) (\(rowOffsets[r]) then \(rowOffsets[r + 1]))"
        }
        for r in 0..<rows {
            var previous: Int32 = -1
            for k in rowOffsets[r]..<rowOffsets[r + 1] {
                let c = columnIndices[k]
                guard c >= 0, Int(c) < columns else { return "row \(r) has column \(c), outside 0..<\(columns)" }
                guard c > previous else { return "row \(r) has column \(c) after \(previous): columns must increase" }
                previous = c
            }
        }
        return nil
    }
}

/// How a Keras kernel becomes a matrix with one row per output channel. Keras stores kernels with
/// the output axes last (conv (kh, kw, in, out), dense (in, out), depthwise (kh, kw, in, mult)),
/// so the flat kernel is a (columns x rows) row-major matrix: element (r, c) is `kernel[c * rows + r]`.
public struct KernelMatrixShape: Sendable, Equatable {
    public var rows: Int
    public var columns: Int
    /// How many trailing Keras axes make the rows.
    public var rowAxes: Int
    /// Human-readable axis order, recorded in the file.
    public var axisOrder: String

    public init(role: WeightRole, shape: [Int]) {
        let trailing = (role == .depthwiseKernel && shape.count == 4) ? 2 : 1
        rowAxes = min(trailing, shape.count)
        rows = shape.suffix(rowAxes).reduce(1, *)
        columns = shape.dropLast(rowAxes).reduce(1, *)
        let names: [String]
        switch (role, shape.count) {
        case (.depthwiseKernel, 4): names = ["kh", "kw", "in", "multiplier"]
        case (_, 4): names = ["kh", "kw", "in", "out"]
        case (_, 3): names = ["k", "in", "out"]
        case (_, 2): names = ["in", "out"]
        default: names = shape.indices.map { "axis\($0)" }
        }
        let rowNames = names.suffix(rowAxes).joined(separator: ", ")
        let columnNames = names.dropLast(rowAxes).joined(separator: ", ")
        axisOrder = "rows = (\(rowNames)), columns = (\(columnNames)), both row-major over the Keras axes"
    }

    /// CSR of the kernel: the stored entries are where `mask` is 1 (explicit zeros included, so
    /// the mask survives), or the non-zeros when there is no mask.
    public func csr(of kernel: [Float], mask: [UInt8]?) -> CSRMatrix {
        var offsets = [0]
        offsets.reserveCapacity(rows + 1)
        var indices: [Int32] = [], values: [Float] = []
        for r in 0..<rows {
            for c in 0..<columns {
                let index = c * rows + r
                let keep = mask.map { $0[index] != 0 } ?? (kernel[index] != 0)
                if keep {
                    indices.append(Int32(c))
                    values.append(kernel[index])
                }
            }
            offsets.append(values.count)
        }
        return CSRMatrix(rows: rows, columns: columns, rowOffsets: offsets, columnIndices: indices, values: values)
    }

    /// The dense Keras kernel of a matrix with no `structureProblem`.
    public func dense(_ matrix: CSRMatrix) -> [Float] {
        var kernel = [Float](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for k in matrix.rowOffsets[r]..<matrix.rowOffsets[r + 1] { kernel[Int(matrix.columnIndices[k]) * rows + r] = matrix.values[k] }
        }
        return kernel
    }

    /// The structure of a matrix with no `structureProblem` as a mask of the Keras kernel's
    /// shape: 1 where an entry is stored.
    public func structure(_ matrix: CSRMatrix) -> [UInt8] {
        var mask = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for k in matrix.rowOffsets[r]..<matrix.rowOffsets[r + 1] { mask[Int(matrix.columnIndices[k]) * rows + r] = 1 }
        }
        return mask
    }

    /// Packed bits of the row-major (rows x columns) pattern, most significant bit first
    /// (NumPy's `packbits`), and the stored values in the same order.
    public func bitmask(of kernel: [Float], mask: [UInt8]?) -> (bits: [UInt8], values: [Float]) {
        var bits = [UInt8](repeating: 0, count: bitmaskBytes)
        var values: [Float] = []
        var position = 0
        for r in 0..<rows {
            for c in 0..<columns {
                let index = c * rows + r
                if mask.map({ $0[index] != 0 }) ?? (kernel[index] != 0) {
                    bits[position >> 3] |= 0x80 >> UInt8(position & 7)
                    values.append(kernel[index])
                }
                position += 1
            }
        }
        return (bits, values)
    }

    /// Bytes of packed bits for this matrix.
    public var bitmaskBytes: Int { (rows * columns + 7) / 8 }

    /// Payload bytes (before HDF5 compression) of this kernel with `stored` entries as CSR:
    /// float32 data, int32 column indices, int32 row offsets (the export's narrower index type).
    public func csrPayloadBytes(stored: Int) -> Int { 8 * stored + 4 * (rows + 1) }

    /// Payload bytes of this kernel with `stored` entries as a bitmask: packed bits and float32 data.
    public func bitmaskPayloadBytes(stored: Int) -> Int { bitmaskBytes + 4 * stored }

    /// What is wrong with `bytes` bytes of packed bits for this matrix, or nil: exactly
    /// `bitmaskBytes`. Checked on the declared length before a file's bits are read.
    public func bitmaskSizeProblem(bytes: Int) -> String? {
        bytes == bitmaskBytes ? nil : "bits has \(bytes) bytes, the \(rows)x\(columns) matrix needs \(bitmaskBytes)"
    }

    /// What is wrong with packed bits and a value count for this matrix, or nil: the bits must
    /// have the right length and mark as many entries (padding bits aside) as there are values.
    public func bitmaskProblem(bits: [UInt8], valueCount: Int) -> String? {
        if let problem = bitmaskSizeProblem(bytes: bits.count) { return problem }
        let places = rows * columns
        var marked = 0
        for (index, byte) in bits.enumerated() {
            let padding = index == bits.count - 1 && places % 8 != 0 ? 8 - places % 8 : 0
            marked += (byte >> UInt8(padding)).nonzeroBitCount
        }
        return marked == valueCount ? nil : "bits mark \(marked) stored entries but data has \(valueCount)"
    }

    /// The CSR matrix of packed bits and their values, which have no `bitmaskProblem`.
    public func matrix(bits: [UInt8], values: [Float]) -> CSRMatrix {
        var offsets = [0]
        offsets.reserveCapacity(rows + 1)
        var indices: [Int32] = []
        indices.reserveCapacity(values.count)
        var position = 0
        for _ in 0..<rows {
            for c in 0..<columns {
                if bits[position >> 3] & (0x80 >> UInt8(position & 7)) != 0 { indices.append(Int32(c)) }
                position += 1
            }
            offsets.append(indices.count)
        }
        return CSRMatrix(rows: rows, columns: columns, rowOffsets: offsets, columnIndices: indices, values: values)
    }
}
