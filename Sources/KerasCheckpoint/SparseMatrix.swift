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

    /// scipy's `check_format`: offsets start at 0, never decrease, end at the entry count; indices
    /// are in range and strictly increasing within a row. Returns the first problem, or nil.
    public func structureProblem() -> String? {
        guard rowOffsets.count == rows + 1 else { return "indptr has \(rowOffsets.count) entries for \(rows) rows" }
        guard rowOffsets.first == 0, rowOffsets.last == values.count, columnIndices.count == values.count else {
            return "indptr does not span the \(values.count) stored entries"
        }
        for r in 0..<rows {
            let begin = rowOffsets[r], end = rowOffsets[r + 1]
            guard begin <= end else { return "indptr decreases at row \(r)" }
            var previous: Int32 = -1
            for k in begin..<end {
                let c = columnIndices[k]
                guard c > previous, Int(c) < columns else { return "row \(r) has unsorted or out-of-range column \(c)" }
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

    /// The dense Keras kernel and the structure as a mask (1 where an entry is stored).
    public func dense(_ matrix: CSRMatrix) -> (kernel: [Float], structure: [UInt8]) {
        var kernel = [Float](repeating: 0, count: rows * columns)
        var structure = [UInt8](repeating: 0, count: rows * columns)
        for r in 0..<rows {
            for k in matrix.rowOffsets[r]..<matrix.rowOffsets[r + 1] {
                let index = Int(matrix.columnIndices[k]) * rows + r
                kernel[index] = matrix.values[k]
                structure[index] = 1
            }
        }
        return (kernel, structure)
    }

    /// Packed bits of the row-major (rows x columns) pattern, most significant bit first
    /// (NumPy's `packbits`), and the stored values in the same order.
    public func bitmask(of kernel: [Float], mask: [UInt8]?) -> (bits: [UInt8], values: [Float]) {
        var bits = [UInt8](repeating: 0, count: (rows * columns + 7) / 8)
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

    public func dense(bits: [UInt8], values: [Float]) -> (kernel: [Float], structure: [UInt8])? {
        var kernel = [Float](repeating: 0, count: rows * columns)
        var structure = [UInt8](repeating: 0, count: rows * columns)
        var position = 0, next = 0
        for r in 0..<rows {
            for c in 0..<columns {
                if bits[position >> 3] & (0x80 >> UInt8(position & 7)) != 0 {
                    guard next < values.count else { return nil }
                    kernel[c * rows + r] = values[next]
                    structure[c * rows + r] = 1
                    next += 1
                }
                position += 1
            }
        }
        return next == values.count ? (kernel, structure) : nil
    }
}
