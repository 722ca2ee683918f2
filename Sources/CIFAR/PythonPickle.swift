import Foundation

/// The subset of Python's pickle format that CIFAR's "python version" batches use, read without
/// running anything: protocol 2 (Python 2's cPickle, the files as published and as keras.datasets
/// caches them) and protocols 3-4 (the same dict re-pickled by Python 3). Dicts, lists, tuples,
/// ints, bools, None, byte and text strings, and NumPy arrays and dtypes rebuilt through the
/// reduce of numpy.core.multiarray._reconstruct. Every other global (anything that could run
/// code) and every other opcode is refused, naming it.
enum PickleValue {
    case none
    case bool(Bool)
    case int(Int)
    case bytes([UInt8])
    case text(String)
    case list([PickleValue])
    case tuple([PickleValue])
    case dict([(PickleValue, PickleValue)])
    case global(String)
    /// A NumPy array: dtype descr ("|u1", "<i8" ...), shape, C order, raw bytes.
    case array(dtype: String, shape: [Int], fortran: Bool, data: [UInt8])
    case dtype(String)
    case mark

    /// Text or byte-string keys (keras reads the files with encoding="bytes") as Swift strings.
    var key: String? {
        switch self {
        case .bytes(let b): return String(decoding: b, as: UTF8.self)
        case .text(let t): return t
        default: return nil
        }
    }

    subscript(key: String) -> PickleValue? {
        guard case .dict(let items) = self else { return nil }
        return items.first { $0.0.key == key }?.1
    }
}

struct PickleReader {
    static let reconstruct: Set<String> = ["numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"]
    static let allowedGlobals: Set<String> = reconstruct.union(["numpy.ndarray", "numpy.dtype", "_codecs.encode"])

    /// Parses the pickle in `bytes`; `file` names it in errors.
    static func parse(_ bytes: [UInt8], file: String) throws -> PickleValue {
        func refuse(_ problem: String) -> DataError { DataError(file: file, problem: problem) }
        let notCIFAR = "; gmtool reads only the pickle subset of CIFAR's python batches"
        var position = 0
        var stack: [PickleValue] = []
        var memo: [Int: PickleValue] = [:]
        func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, position + n <= bytes.count else { throw refuse("is a truncated pickle (ends at byte \(bytes.count))") }
            defer { position += n }
            return bytes[position..<(position + n)]
        }
        func uint(_ n: Int) throws -> Int { try take(n).reversed().reduce(0) { $0 << 8 | Int($1) } }
        func pop() throws -> PickleValue {
            guard let top = stack.popLast() else { throw refuse("is a corrupt pickle (stack underflow at byte \(position))") }
            return top
        }
        func popToMark() throws -> [PickleValue] {
            guard let mark = stack.lastIndex(where: { if case .mark = $0 { return true }; return false }) else {
                throw refuse("is a corrupt pickle (no mark at byte \(position))")
            }
            let items = Array(stack[(mark + 1)...])
            stack.removeSubrange(mark...)
            return items
        }
        func line() throws -> String {
            guard let end = bytes[position...].firstIndex(of: 0x0A) else { throw refuse("is a truncated pickle") }
            defer { position = end + 1 }
            return String(decoding: bytes[position..<end], as: UTF8.self)
        }
        func global(_ module: String, _ name: String) throws -> PickleValue {
            let full = "\(module).\(name)"
            guard allowedGlobals.contains(full) else { throw refuse("is a pickle that refers to \(full), which a CIFAR batch does not\(notCIFAR)") }
            return .global(full)
        }
        func text(_ n: Int) throws -> PickleValue {
            guard let s = String(bytes: try take(n), encoding: .utf8) else { throw refuse("is a corrupt pickle (text that is not UTF-8)") }
            return .text(s)
        }
        func append(_ items: [PickleValue]) throws {
            guard case .list(var list) = try pop() else { throw refuse("is a corrupt pickle (append to a non-list)") }
            list.append(contentsOf: items)
            stack.append(.list(list))
        }
        func setItems(_ items: [PickleValue]) throws {
            guard items.count % 2 == 0, case .dict(var dict) = try pop() else { throw refuse("is a corrupt pickle (setitems on a non-dict)") }
            for i in stride(from: 0, to: items.count, by: 2) { dict.append((items[i], items[i + 1])) }
            stack.append(.dict(dict))
        }
        while true {
            let op = try take(1).first!
            switch op {
            case 0x80:
                let version = try uint(1)
                guard version >= 2 && version <= 4 else { throw refuse("is pickle protocol \(version)\(notCIFAR) (protocols 2-4)") }
            case 0x95: _ = try take(8)  // FRAME: a length hint
            case UInt8(ascii: "}"): stack.append(.dict([]))
            case UInt8(ascii: "]"): stack.append(.list([]))
            case UInt8(ascii: ")"): stack.append(.tuple([]))
            case UInt8(ascii: "("): stack.append(.mark)
            case UInt8(ascii: "q"): guard let top = stack.last else { throw refuse("is a corrupt pickle") }; memo[try uint(1)] = top
            case UInt8(ascii: "r"): guard let top = stack.last else { throw refuse("is a corrupt pickle") }; memo[try uint(4)] = top
            case 0x94: guard let top = stack.last else { throw refuse("is a corrupt pickle") }; memo[memo.count] = top
            case UInt8(ascii: "h"), UInt8(ascii: "j"):
                let index = try uint(op == UInt8(ascii: "h") ? 1 : 4)
                guard let value = memo[index] else { throw refuse("is a corrupt pickle (memo \(index) unset)") }
                stack.append(value)
            case UInt8(ascii: "U"), UInt8(ascii: "C"): stack.append(.bytes(Array(try take(try uint(1)))))
            case UInt8(ascii: "T"), UInt8(ascii: "B"): stack.append(.bytes(Array(try take(try uint(4)))))
            case UInt8(ascii: "X"): stack.append(try text(try uint(4)))
            case 0x8C: stack.append(try text(try uint(1)))
            case UInt8(ascii: "J"): stack.append(.int(Int(Int32(truncatingIfNeeded: try uint(4)))))
            case UInt8(ascii: "K"): stack.append(.int(try uint(1)))
            case UInt8(ascii: "M"): stack.append(.int(try uint(2)))
            case 0x8A:
                let n = try uint(1)
                guard n <= 8 else { throw refuse("holds an integer of \(n) bytes\(notCIFAR)") }
                let raw = try take(n)
                var value = raw.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                if n > 0 && n < 8 && raw.last! & 0x80 != 0 { value |= ~UInt64(0) << (8 * UInt64(n)) }
                stack.append(.int(Int(Int64(bitPattern: value))))
            case UInt8(ascii: "N"): stack.append(.none)
            case 0x88: stack.append(.bool(true))
            case 0x89: stack.append(.bool(false))
            case UInt8(ascii: "t"): stack.append(.tuple(try popToMark()))
            case 0x85: stack.append(.tuple([try pop()]))
            case 0x86: let b = try pop(), a = try pop(); stack.append(.tuple([a, b]))
            case 0x87: let c = try pop(), b = try pop(), a = try pop(); stack.append(.tuple([a, b, c]))
            case UInt8(ascii: "c"): let module = try line(); stack.append(try global(module, try line()))
            case 0x93:
                guard case .text(let name) = try pop(), case .text(let module) = try pop() else { throw refuse("is a corrupt pickle (stack_global)") }
                stack.append(try global(module, name))
            case UInt8(ascii: "R"):
                let args = try pop(), callable = try pop()
                stack.append(try reduce(callable, args, refuse))
            case UInt8(ascii: "b"):
                let state = try pop()
                stack.append(try build(try pop(), state, refuse))
            case UInt8(ascii: "a"): try append([try pop()])
            case UInt8(ascii: "e"): try append(try popToMark())
            case UInt8(ascii: "s"): let v = try pop(), k = try pop(); try setItems([k, v])
            case UInt8(ascii: "u"): try setItems(try popToMark())
            case UInt8(ascii: "."):
                guard stack.count == 1 else { throw refuse("is a corrupt pickle (\(stack.count) values at its end)") }
                return stack[0]
            default:
                throw refuse("is not a CIFAR python batch (pickle opcode 0x\(String(op, radix: 16)) at byte \(position - 1)\(notCIFAR))")
            }
        }
    }

    private static func reduce(_ callable: PickleValue, _ args: PickleValue, _ refuse: (String) -> DataError) throws -> PickleValue {
        guard case .global(let name) = callable, case .tuple(let a) = args else { throw refuse("is a corrupt pickle (reduce of a non-global)") }
        switch name {
        case _ where reconstruct.contains(name):
            guard a.count == 3, case .global("numpy.ndarray") = a[0] else { throw refuse("rebuilds a NumPy object other than an ndarray") }
            return .array(dtype: "", shape: [], fortran: false, data: [])
        case "numpy.dtype":
            guard let descr = a.first?.key else { throw refuse("holds a NumPy dtype gmtool cannot read") }
            return .dtype(descr)
        case "_codecs.encode":
            // Python 3's protocol 2 writes bytes as encode(text, "latin1").
            guard a.count == 2, case .text(let s) = a[0], a[1].key == "latin1" || a[1].key == "latin-1" else {
                throw refuse("calls _codecs.encode with arguments a CIFAR batch does not use")
            }
            var out: [UInt8] = []
            out.reserveCapacity(s.unicodeScalars.count)
            for scalar in s.unicodeScalars {
                guard scalar.value < 256 else { throw refuse("is a corrupt pickle (latin-1 text outside latin-1)") }
                out.append(UInt8(scalar.value))
            }
            return .bytes(out)
        default:
            throw refuse("calls \(name), which a CIFAR batch does not")
        }
    }

    private static func build(_ object: PickleValue, _ state: PickleValue, _ refuse: (String) -> DataError) throws -> PickleValue {
        switch (object, state) {
        case (.array, .tuple(let s)):
            // ndarray.__setstate__: (version, shape, dtype, is_fortran, raw data)
            guard s.count == 5, case .tuple(let shapeItems) = s[1], case .dtype(let descr) = s[2], case .bytes(let data) = s[4] else {
                throw refuse("holds a NumPy array gmtool cannot read (not raw bytes of a plain dtype)")
            }
            var shape: [Int] = []
            for item in shapeItems { guard case .int(let d) = item, d >= 0 else { throw refuse("holds a NumPy array with a bad shape") }; shape.append(d) }
            let fortran: Bool
            switch s[3] { case .bool(let b): fortran = b; case .int(let i): fortran = i != 0; default: fortran = false }
            return .array(dtype: descr, shape: shape, fortran: fortran, data: data)
        case (.dtype(let descr), .tuple(let s)):
            // dtype.__setstate__: (version, byte order, ...); '|' for bytes, '<' little-endian.
            let order = s.count > 1 ? (s[1].key ?? "|") : "|"
            guard order == "|" || order == "<" || order == "=" else { throw refuse("holds a big-endian NumPy array") }
            return .dtype((order == "=" ? "<" : order) + descr.drop { $0 == "<" || $0 == "|" })
        default:
            throw refuse("is a corrupt pickle (build on something that is not a NumPy array or dtype)")
        }
    }
}
