/// A pruning mask: one byte per weight, 1 where the weight may be non-zero, 0 where it is pruned
/// and stays exactly zero. Stored in checkpoints as a uint8 dataset of the weight's shape under
/// `/gmtool_masks`; the one type every part of gmtool passes masks around as.
public struct Mask: Equatable, Sendable {
    public private(set) var bits: [UInt8]

    /// A mask that keeps every weight.
    public init(keepingAll count: Int) { bits = [UInt8](repeating: 1, count: count) }

    /// Any non-zero byte means "keep" (files may hold 0/1 or 0/255).
    public init(_ bytes: [UInt8]) { bits = bytes.map { $0 == 0 ? 0 : 1 } }

    public var count: Int { bits.count }
    public subscript(index: Int) -> Bool { bits[index] != 0 }
    /// Weights this mask prunes.
    public var prunedCount: Int { bits.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
}
