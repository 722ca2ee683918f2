@testable import Engine
import Testing

/// The tree in which a gradient pass adds its groups: any contiguous range's pieces tile it with
/// the largest nodes inside it; a `GroupReducer` over a range emits exactly those pieces, in
/// order; and a pass's total evaluated from the pieces of any cut into shards has the bits of the
/// single pass's (the property `gmtool merge` relies on). The group sums are random doubles of
/// mixed signs and magnitudes, so a different order of additions would show in the bits.
@Suite struct GroupTreeTests {
    typealias Node = GroupTree.Node

    func inside(_ node: Node, _ units: Range<Int>) -> Bool {
        units.contains(node.first) && units.contains(node.first + node.count - 1)
    }

    @Test func piecesTileEveryRangeWithTheLargestNodesInside() {
        for total in 1...40 {
            let tree = GroupTree(totalUnits: total)
            #expect(tree.blocks.map(\.count).reduce(0, +) == total)
            for a in 0..<total {
                for b in (a + 1)...total {
                    let pieces = tree.pieces(a..<b)
                    var next = a
                    for piece in pieces {
                        #expect(piece.first == next && piece.count > 0, "\(total) \(a)..<\(b): \(pieces)")
                        next += piece.count
                        if let parent = tree.parent(piece) { #expect(!inside(parent, a..<b), "\(piece) is not the largest") }
                        if let (left, right) = tree.children(piece) {
                            #expect(tree.parent(left) == piece && tree.parent(right) == piece)
                            #expect(left.first == piece.first && right.first == left.first + left.count && left.count + right.count == piece.count)
                            // The left half is a power of two, at least half of the node.
                            #expect(left.count & (left.count - 1) == 0 && left.count >= right.count)
                        }
                    }
                    #expect(next == b)
                    // A whole pass's pieces are its blocks.
                    if a == 0 && b == total { #expect(pieces == tree.blocks) }
                }
            }
        }
    }

    /// Random group sums: `tensors` tensors of `size` elements per group.
    func groupSums(_ groups: Int, sizes: [Int], seed: UInt64) -> [[[Double]]] {
        var state = seed
        func next() -> Double {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let mantissa = Double(state >> 11) / Double(1 << 53) - 0.5
            return mantissa * Double(sign: .plus, exponent: Int((state >> 3) % 40) - 20, significand: 1)
        }
        return (0..<groups).map { _ in sizes.map { (0..<$0).map { _ in next() } } }
    }

    /// The reducer over `units`: the nodes and sums it emits.
    func reduce(_ tree: GroupTree, _ units: Range<Int>, _ sums: [[[Double]]], sizes: [Int]) throws -> [(Node, [[Double]])] {
        var emitted: [(Node, [[Double]])] = []
        let reducer = GroupReducer(tree: tree, units: units, sizes: sizes) { node, tensors in
            emitted.append((node, tensors.map { Array($0) }))
        }
        for g in units {
            try sums[g].withUnsafeBuffers { try reducer.add($0) }
        }
        reducer.finish()
        return emitted
    }

    @Test func anyCutIntoShardsGivesTheSinglePassBits() throws {
        let sizes = [1, 17, 5]
        for total in [1, 2, 7, 8, 9, 13, 16, 17, 31, 40] {
            let tree = GroupTree(totalUnits: total)
            let sums = groupSums(total, sizes: sizes, seed: UInt64(total))
            // The single pass: the blocks onto 0, in order.
            let single = try reduce(tree, 0..<total, sums, sizes: sizes)
            #expect(single.map(\.0) == tree.blocks)
            var expected = sizes.map { [Double](repeating: 0, count: $0) }
            for (_, block) in single {
                for t in expected.indices { for i in expected[t].indices { expected[t][i] = expected[t][i] + block[t][i] } }
            }
            // And it is not the plain left fold over the groups (which a merge of unfolded groups gives).
            var leftFold = sizes.map { [Double](repeating: 0, count: $0) }
            for g in 0..<total { for t in leftFold.indices { for i in leftFold[t].indices { leftFold[t][i] = leftFold[t][i] + sums[g][t][i] } } }
            if total > 2 { #expect(leftFold != expected, "the random sums do not tell the orders apart") }

            for shards in Set([1, 2, 3, 4, total]) where shards <= total {
                var owner: [Node: [[Double]]] = [:]
                for k in 0..<shards {
                    let units = (k * total / shards)..<((k + 1) * total / shards)
                    let emitted = try reduce(tree, units, sums, sizes: sizes)
                    #expect(emitted.map(\.0) == tree.pieces(units))
                    for (node, tensors) in emitted { owner[node] = tensors }
                }
                // The merge's evaluation: a piece as written, any other node left + right.
                func sum(_ node: Node) -> [[Double]] {
                    if let piece = owner[node] { return piece }
                    let (left, right) = tree.children(node)!
                    var l = sum(left)
                    let r = sum(right)
                    for t in l.indices { for i in l[t].indices { l[t][i] = l[t][i] + r[t][i] } }
                    return l
                }
                var merged = sizes.map { [Double](repeating: 0, count: $0) }
                for block in tree.blocks {
                    let b = sum(block)
                    for t in merged.indices { for i in merged[t].indices { merged[t][i] = merged[t][i] + b[t][i] } }
                }
                #expect(merged.map { $0.map(\.bitPattern) } == expected.map { $0.map(\.bitPattern) }, "\(total) groups, \(shards) shards")
            }
        }
    }
}

extension Array where Element == [Double] {
    /// Calls `body` with a buffer per inner array.
    func withUnsafeBuffers<T>(_ body: ([UnsafeBufferPointer<Double>]) throws -> T) rethrows -> T {
        func go(_ index: Int, _ done: [UnsafeBufferPointer<Double>]) throws -> T {
            if index == count { return try body(done) }
            return try self[index].withUnsafeBufferPointer { try go(index + 1, done + [$0]) }
        }
        return try go(0, [])
    }
}
