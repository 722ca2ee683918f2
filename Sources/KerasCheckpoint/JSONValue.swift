import Foundation

/// A parsed JSON value. Keras configs are open-ended dictionaries; this keeps every field (so
/// nothing gmtool does not understand is lost) while letting the code ask for the few it needs.
public enum JSONValue: Sendable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses UTF-8 JSON text. Keras writes `NaN`/`Infinity` for some float fields, which plain
    /// JSON rejects; they are accepted here.
    public static func parse(_ text: String) throws -> JSONValue {
        try checkDepth(text)
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(
            positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
        return try decoder.decode(JSONValue.self, from: Data(text.utf8))
    }

    /// The deepest nesting of arrays and objects `parse` accepts (Foundation's decoder stops at
    /// 512; a Keras config, nested models included, needs a few dozen).
    public static let maximumDepth = 500

    /// A document nested deeper than `maximumDepth`.
    public struct TooDeep: Error { public var limit: Int }

    /// Refuses nesting beyond `maximumDepth`, so it is reported as such rather than as bad JSON.
    static func checkDepth(_ text: String) throws {
        var depth = 0, inString = false, escaped = false
        for byte in text.utf8 {
            if inString {
                if escaped { escaped = false } else if byte == UInt8(ascii: "\\") { escaped = true } else if byte == UInt8(ascii: "\"") { inString = false }
                continue
            }
            switch byte {
            case UInt8(ascii: "\""): inString = true
            case UInt8(ascii: "["), UInt8(ascii: "{"):
                depth += 1
                if depth > maximumDepth { throw TooDeep(limit: maximumDepth) }
            case UInt8(ascii: "]"), UInt8(ascii: "}"): depth -= 1
            default: break
            }
        }
    }

    public subscript(key: String) -> JSONValue? {
        if case .object(let dictionary) = self { return dictionary[key] }
        return nil
    }

    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
    public var double: Double? { if case .number(let n) = self { return n } else { return nil } }
    public var int: Int? {
        if case .number(let n) = self, n == n.rounded(), abs(n) < 1e15 { return Int(n) }
        return nil
    }
    public var array: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// An int, or a list of ints (Keras writes `kernel_size` as [3, 3], sometimes as 3).
    public var ints: [Int]? {
        if let single = int { return [single] }
        guard let items = array else { return nil }
        let values = items.compactMap(\.int)
        return values.count == items.count ? values : nil
    }
}

extension JSONValue: Codable {
    public init(from decoder: Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Each try? tries one JSON type; the last alternative reports what fits none.
        if container.decodeNil() { self = .null }
        else if let b = try? container.decode(Bool.self) { self = .bool(b) }
        else if let n = try? container.decode(Double.self) { self = .number(n) }
        else if let s = try? container.decode(String.self) { self = .string(s) }
        else if let a = try? container.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try container.decode([String: JSONValue].self)) }
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let b): try container.encode(b)
        case .number(let n): try container.encode(n)
        case .string(let s): try container.encode(s)
        case .array(let a): try container.encode(a)
        case .object(let o): try container.encode(o)
        }
    }
}
