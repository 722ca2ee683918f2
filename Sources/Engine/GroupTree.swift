/// The fixed shape in which a gradient pass adds its batch groups' float64 partial sums, so that
/// a shard can fold its own groups before writing them and `gmtool merge` still gets the single
/// pass's bits (docs/SCALE.md, "Why the merge is exact").
///
/// The U groups of a pass are cut into blocks of `blockGroups` (the last may be shorter). A
/// block's sum is a fixed binary tree over its groups: a node of r > 1 groups is the sum of its
/// first p groups and its other r - p, p the largest power of two below r (left + right). The
/// pass's total is `((0 + B_0) + B_1) + ...` over the blocks in order. Floating-point addition is
/// commutative but not associative, so the tree's shape, not the order in which a program visits
/// it, decides the bits: the single pass, a shard and the merge evaluate the same tree.
///
/// A shard of groups `a..<b` computes every node inside its range and writes the largest ones
/// (`pieces`): at most about 2 log2(blockGroups) + (b - a) / blockGroups of them instead of b - a
/// groups. Memory stays flat in the number of images: at most log2(blockGroups) + 1 partial sums
/// are held at once (`GroupReducer`).
public struct GroupTree: Sendable, Equatable {
    /// Groups per block: 8 (8,000 images at batch 100). Larger blocks cut the shard files further
    /// (a shard writes about one piece per block) but hold more partial sums in memory.
    public static let blockGroups = 8
    /// Partial sums a `GroupReducer` holds at most (one per tree level below a block, plus one).
    public static let maxHeld = blockGroups.trailingZeroBitCount + 1

    /// Groups `first ..< first + count`.
    public struct Node: Hashable, Sendable, CustomStringConvertible {
        public let first: Int
        public let count: Int
        public init(first: Int, count: Int) { self.first = first; self.count = count }
        public var units: Range<Int> { first..<(first + count) }
        public var description: String { count == 1 ? "group \(first)" : "groups \(first)-\(first + count - 1)" }
    }

    public let totalUnits: Int

    public init(totalUnits: Int) {
        precondition(totalUnits > 0)
        self.totalUnits = totalUnits
    }

    /// The blocks, in order: their sums are added onto 0 in this order.
    public var blocks: [Node] {
        stride(from: 0, to: totalUnits, by: Self.blockGroups).map { Node(first: $0, count: min(Self.blockGroups, totalUnits - $0)) }
    }

    /// A node's two halves (left, right), or nil for a single group.
    public func children(_ node: Node) -> (left: Node, right: Node)? {
        guard node.count > 1 else { return nil }
        var p = 1
        while p * 2 < node.count { p *= 2 }
        return (Node(first: node.first, count: p), Node(first: node.first + p, count: node.count - p))
    }

    /// The node whose half `node` is, or nil for a block.
    public func parent(_ node: Node) -> Node? {
        let start = node.first - node.first % Self.blockGroups
        var current = Node(first: start, count: min(Self.blockGroups, totalUnits - start))
        while current != node {
            guard let (left, right) = children(current) else { preconditionFailure("\(node) is not a node of the tree") }
            if left == node || right == node { return current }
            current = node.first < right.first ? left : right
        }
        return nil
    }

    /// The largest nodes inside `units`, in order: what a shard of those groups writes.
    public func pieces(_ units: Range<Int>) -> [Node] {
        func cover(_ node: Node) -> [Node] {
            if units.contains(node.first) && units.contains(node.first + node.count - 1) { return [node] }
            guard node.units.overlaps(units), let (left, right) = children(node) else { return [] }
            return cover(left) + cover(right)
        }
        return blocks.filter { $0.units.overlaps(units) }.flatMap(cover)
    }
}

/// Folds the groups of `units` (given in order, one at a time) up the `GroupTree`, and hands
/// each largest node inside `units` to `emit` as soon as it is complete, in order: for a whole
/// pass those are the blocks, for a shard its pieces. A node is the sum of its halves,
/// `left[i] + right[i]`, element by element in float64.
final class GroupReducer {
    private let tree: GroupTree
    private let units: Range<Int>
    private let sizes: [Int]
    private let emit: (GroupTree.Node, [UnsafeBufferPointer<Double>]) throws -> Void
    private var held: [(node: GroupTree.Node, sums: [UnsafeMutableBufferPointer<Double>])] = []
    private var spare: [[UnsafeMutableBufferPointer<Double>]] = []
    private var next: Int

    /// `sizes`: elements of each tensor (one per trainable parameter).
    init(tree: GroupTree, units: Range<Int>, sizes: [Int], emit: @escaping (GroupTree.Node, [UnsafeBufferPointer<Double>]) throws -> Void) {
        self.tree = tree
        self.units = units
        self.sizes = sizes
        self.emit = emit
        next = units.lowerBound
    }

    deinit {
        for sums in held.map(\.sums) + spare { sums.forEach { $0.baseAddress?.deallocate() } }
    }

    /// Whether every group under `node`'s parent is in `units` (so the parent will complete here).
    private func parentCompletesHere(_ node: GroupTree.Node) -> Bool {
        guard let parent = tree.parent(node) else { return false }
        return units.contains(parent.first) && units.contains(parent.first + parent.count - 1)
    }

    /// The next group's sums (copied).
    func add(_ group: [UnsafeBufferPointer<Double>]) throws {
        precondition(units.contains(next) && group.count == sizes.count, "a group outside the reducer's range")
        // Buffers of exactly the tensors' sizes (a view of at least one element's allocation).
        let sums = spare.popLast() ?? sizes.map {
            UnsafeMutableBufferPointer(rebasing: UnsafeMutableBufferPointer<Double>.allocate(capacity: max(1, $0))[0..<$0])
        }
        for (target, source) in zip(sums, group) { _ = target.update(fromContentsOf: source) }
        held.append((GroupTree.Node(first: next, count: 1), sums))
        next += 1
        while let top = held.last {
            if held.count >= 2, let parent = tree.parent(top.node), tree.parent(held[held.count - 2].node) == parent {
                let left = held[held.count - 2].sums
                for (l, r) in zip(left, top.sums) {
                    for i in 0..<l.count { l[i] = l[i] + r[i] }
                }
                spare.append(top.sums)
                held.removeLast()
                held[held.count - 1].node = parent
            } else if !parentCompletesHere(top.node) {
                try emit(top.node, top.sums.map { UnsafeBufferPointer($0) })
                spare.append(top.sums)
                held.removeLast()
            } else {
                break
            }
        }
        precondition(held.count <= GroupTree.maxHeld)
    }

    /// Checks that every group of `units` was added and emitted.
    func finish() {
        precondition(next == units.upperBound && held.isEmpty, "the reducer got \(next - units.lowerBound) of \(units.count) groups")
    }
}
