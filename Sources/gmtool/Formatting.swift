import Foundation

/// 3239114 -> "3,239,114".
func grouped(_ value: Int) -> String {
    let digits = String(abs(value))
    var out = ""
    for (index, character) in digits.enumerated() {
        if index > 0 && (digits.count - index) % 3 == 0 { out.append(",") }
        out.append(character)
    }
    return value < 0 ? "-" + out : out
}

/// 0.8912 -> "89.12%".
func percent(_ fraction: Double, digits: Int = 2) -> String {
    String(format: "%.\(digits)f%%", fraction * 100)
}

/// 12960000 -> "12.96 MB" (decimal units, as file managers show them).
func byteSize(_ bytes: Int) -> String {
    let units = ["B", "kB", "MB", "GB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
    return unit == 0 ? "\(bytes) B" : String(format: "%.2f %@", value, units[unit])
}

/// A plain-text table: columns padded to their widest cell; `rightAligned` columns are numbers.
struct TextTable {
    var headers: [String]
    var rightAligned: Set<Int>
    var rows: [[String]] = []

    func render() -> String {
        var widths = headers.map(\.count)
        for row in rows { for (index, cell) in row.enumerated() { widths[index] = max(widths[index], cell.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { index, cell in
                let pad = String(repeating: " ", count: widths[index] - cell.count)
                return rightAligned.contains(index) ? pad + cell : cell + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression)
        }
        var out = [line(headers), line(widths.map { String(repeating: "-", count: $0) })]
        out += rows.map(line)
        return out.joined(separator: "\n")
    }
}

func shapeDescription(_ shape: [Int]) -> String {
    "(" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",)" : ")")
}

/// "3.16x smaller" or "1.04x larger" for a file of `before` bytes that became `after`; no ratio
/// against zero.
func sizeChange(from before: Int, to after: Int) -> String {
    guard before > 0, after > 0 else { return "size unknown" }
    if after == before { return "same size" }
    return after < before ? String(format: "%.2fx smaller", Double(before) / Double(after))
                          : String(format: "%.2fx larger", Double(after) / Double(before))
}
