import Foundation

/// A problem with a sweep's or sensitivity analysis's request (a grid, a level, an output
/// folder), in one line.
public struct AnalysisError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The values of one grid axis, written as a comma-separated list whose items are numbers
/// (`inf` too) or ranges:
/// - `a:b:n` with an integer n: n evenly spaced values from a to b, both included;
/// - `a:b:n:log`: n values from a to b spaced evenly in log scale (a > 0);
/// - `a:b:s` with a decimal point in s: a, a + s, a + 2s, ... up to b (b included when it is on
///   the grid; Distiller's and NumPy's `arange` style, for sensitivity levels).
/// Values keep the order written; repeats are refused (a point would be measured twice).
public enum GridValues {
    public static func parse(_ text: String, name: String) throws -> [Double] {
        let items = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard !text.trimmingCharacters(in: .whitespaces).isEmpty, !items.contains(where: \.isEmpty) else {
            throw AnalysisError("\(name) '\(text)': empty value (give numbers or ranges a:b:n, separated by commas)")
        }
        var values: [Double] = []
        for item in items { values += try parseItem(item, name: name) }
        var seen = Set<Double>()
        for value in values where !seen.insert(value).inserted {
            throw AnalysisError("\(name) '\(text)': \(format(value)) appears twice")
        }
        return values
    }

    private static func number(_ text: Substring, _ item: String, _ name: String) throws -> Double {
        guard let value = Double(text.trimmingCharacters(in: .whitespaces)), !value.isNaN else {
            throw AnalysisError("\(name) '\(item)': '\(text)' is not a number")
        }
        return value
    }

    private static func parseItem(_ item: String, name: String) throws -> [Double] {
        let parts = item.split(separator: ":", omittingEmptySubsequences: false)
        if parts.count == 1 { return [try number(parts[0], item, name)] }
        guard parts.count == 3 || (parts.count == 4 && parts[3] == "log") else {
            throw AnalysisError("\(name) '\(item)': a range is a:b:n (n values), a:b:n:log or a:b:step")
        }
        let low = try number(parts[0], item, name), high = try number(parts[1], item, name)
        guard low.isFinite, high.isFinite else { throw AnalysisError("\(name) '\(item)': a range's ends must be finite") }
        guard low <= high else { throw AnalysisError("\(name) '\(item)': the range is inverted (\(format(low)) > \(format(high)))") }
        let third = parts[2].trimmingCharacters(in: .whitespaces)
        if parts.count == 3, third.contains(".") || third.contains("e") || third.contains("E") {
            // A step.
            let step = try number(parts[2], item, name)
            guard step > 0, step.isFinite else { throw AnalysisError("\(name) '\(item)': the step must be a positive number") }
            // The last index whose value is within b, allowing for the step's decimal not
            // being exact in binary (0.95 / 0.05 is 18.999999999999996): a relative 1e-9 is far
            // below any step a user writes and far above double rounding (about 1e-16).
            let last = Int(((high - low) / step * (1 + 1e-9)).rounded(.down))
            guard last < 1_000_000 else { throw AnalysisError("\(name) '\(item)': more than a million values") }
            // low + i * step, not repeated additions (whose errors add up), and the end itself
            // where it is on the grid.
            return (0...last).map { i in
                let value = low + Double(i) * step
                return abs(value - high) <= step * 1e-9 ? high : value
            }
        }
        guard let count = Int(third), count >= 0 else {
            throw AnalysisError("\(name) '\(item)': '\(third)' is not a count (an integer) or a step (with a decimal point)")
        }
        guard count > 0 else { throw AnalysisError("\(name) '\(item)': the range is empty (0 values)") }
        guard count <= 1_000_000 else { throw AnalysisError("\(name) '\(item)': more than a million values") }
        if count == 1 {
            guard low == high else { throw AnalysisError("\(name) '\(item)': 1 value cannot span \(format(low)) to \(format(high)); write the value, or n >= 2") }
            return [low]
        }
        guard low < high else { throw AnalysisError("\(name) '\(item)': \(count) values cannot be spaced in an empty range (\(format(low)) to \(format(high)))") }
        if parts.count == 4 {
            guard low > 0 else { throw AnalysisError("\(name) '\(item)': a log range needs a > 0") }
            let a = log10(low), b = log10(high)
            return (0..<count).map { i in i == 0 ? low : i == count - 1 ? high : pow(10, a + (b - a) * Double(i) / Double(count - 1)) }
        }
        return (0..<count).map { i in i == count - 1 ? high : low + (high - low) * Double(i) / Double(count - 1) }
    }

    /// A value as a user writes it: `inf`, or the shortest decimal.
    public static func format(_ value: Double) -> String { value.isInfinite ? (value > 0 ? "inf" : "-inf") : "\(value)" }
}
