import Foundation
import CIFAR
import KerasCheckpoint

/// Which contiguous part of a pass shard K of N computes. A pass is cut into units, never
/// inside one: batch groups (`Network.gradientGroupBatches` batches) for gradients, batches for
/// evaluations; for a sweep the "images" are the grid's points, each its own unit (batch size 1).
/// The units are shared out in N contiguous near-equal runs (shard K gets units
/// K*U/N ..< (K+1)*U/N), so every shard's images start on a unit boundary and are batched
/// exactly as the single pass batches them (docs/SCALE.md).
public struct ShardPlan: Sendable {
    public let index: Int
    public let count: Int
    public let totalImages: Int
    public let batchSize: Int
    public let unitBatches: Int

    /// Refuses more shards than the pass has units.
    public init(index: Int, count: Int, totalImages: Int, batchSize: Int, kind: ShardFile.Kind) throws {
        precondition(index >= 0 && index < count && totalImages > 0 && batchSize > 0)
        self.index = index
        self.count = count
        self.totalImages = totalImages
        self.batchSize = batchSize
        unitBatches = kind == .gradients ? Network.gradientGroupBatches : 1
        guard count <= unitCount else {
            if kind == .sweep {
                throw CheckpointError(file: "--shard \(index)/\(count)", problem: "the grid has only \(totalImages) points; use at most \(totalImages) shards")
            }
            let unit = kind == .gradients ? "batch groups (\(unitBatches) batches of \(batchSize) images)" : "batches of \(batchSize) images"
            throw CheckpointError(file: "--shard \(index)/\(count)",
                                  problem: "\(totalImages) images are only \(unitCount) \(unit); use at most \(unitCount) shards or a smaller --batch-size")
        }
    }

    public var unitImages: Int { batchSize * unitBatches }
    public var unitCount: Int { (totalImages + unitImages - 1) / unitImages }
    public var units: Range<Int> { (index * unitCount / count)..<((index + 1) * unitCount / count) }
    public var images: Range<Int> { (units.lowerBound * unitImages)..<min(units.upperBound * unitImages, totalImages) }
    /// The shape in which the pass adds its batch groups (gradient shards).
    public var tree: GroupTree { GroupTree(totalUnits: unitCount) }
}

/// What a shard records about where its numbers come from (the merged file repeats the text).
public struct ShardProvenance: Sendable {
    public var weightsDigest: String
    public var dataDigest: String
    public var model: String
    public var data: String
    public var scaling: String
    public var tool: String
    public init(weightsDigest: String, dataDigest: String, model: String, data: String, scaling: String, tool: String) {
        self.weightsDigest = weightsDigest; self.dataDigest = dataDigest; self.model = model
        self.data = data; self.scaling = scaling; self.tool = tool
    }
}

extension Network {
    /// Shard `plan.index` of a gradient pass over `source`, written atomically to `path`: the
    /// largest `GroupTree` nodes inside the shard's batch groups (`GroupTree.pieces`), each the
    /// float64 sum of d(loss)/dw over its groups, written as it completes (memory stays flat),
    /// and every batch's totals. Returns the shard's totals.
    public func gradientShard(_ source: ImageBatchSource, plan: ShardPlan, provenance: ShardProvenance, to path: String,
                              progress: (Int) -> Void = { _ in }) throws -> PassTotals {
        try checkClasses(source)
        try checkMemory(batch: min(plan.batchSize, source.count), gradients: true)
        let header = shardHeader(.gradients, plan, provenance)
        var batches: [PassTotals] = []
        var written: [GroupTree.Node] = []
        try ShardFile.write(to: path, header: header, body: { writer in
            try gradientGroups(ImageRangeSource(base: source, range: plan.images), batchSize: plan.batchSize, tree: plan.tree,
                               units: plan.units, progress: progress, afterGroup: { batches += $0 }) { node, sums in
                try writer.addPiece(node.units, sums)
                written.append(node)
            }
        }, batches: { shardBatches(batches) })
        precondition(written == plan.tree.pieces(plan.units), "a shard wrote \(written), its plan has \(plan.tree.pieces(plan.units))")
        return batches.reduce(PassTotals(), +)
    }

    /// Shard `plan.index` of an evaluation over `source`: every batch's totals, written atomically.
    public func evaluationShard(_ source: ImageBatchSource, plan: ShardPlan, provenance: ShardProvenance, to path: String,
                                progress: (Int) -> Void = { _ in }) throws -> PassTotals {
        try checkClasses(source)
        try checkMemory(batch: min(plan.batchSize, source.count), gradients: false)
        var batches: [PassTotals] = []
        var done = 0
        try ShardFile.write(to: path, header: shardHeader(.evaluation, plan, provenance), body: { _ in
            try ImageRangeSource(base: source, range: plan.images).forEachBatch(size: plan.batchSize) { images, labels, n in
                batches.append(pass(images: images, labels: labels, count: n, accumulateGradients: false))
                done += n
                progress(done)
            }
        }, batches: { shardBatches(batches) })
        return batches.reduce(PassTotals(), +)
    }

    private func shardHeader(_ kind: ShardFile.Kind, _ plan: ShardPlan, _ p: ShardProvenance) -> ShardFile.Header {
        ShardFile.Header(kind: kind, index: plan.index, count: plan.count, totalImages: plan.totalImages, images: plan.images,
                         units: plan.units, batchSize: plan.batchSize, unitBatches: plan.unitBatches,
                         weightsDigest: p.weightsDigest, dataDigest: p.dataDigest, model: p.model, data: p.data,
                         scaling: p.scaling, tool: p.tool,
                         weights: kind == .gradients ? trainableParameters.map { ($0.weight.datasetPath, $0.weight.shape) } : [])
    }
}

private func shardBatches(_ batches: [PassTotals]) -> ShardFile.Batches {
    var result = ShardFile.Batches()
    result.images = batches.map { Int64($0.images) }
    result.lossSum = batches.map(\.lossSum)
    result.top1 = batches.map { Int64($0.top1Correct) }
    result.top5 = batches.map { Int64($0.top5Correct) }
    return result
}

/// Opens shard files for `gmtool merge` and checks that together they are one pass, before any
/// partial sum is read: every file a complete shard; all of the same kind, made by `tool`, on the
/// same weights, data, scaling and batching; no range given twice or overlapping another; no
/// image missing. Each refusal names the shard and the reason. Returns them in image order.
public func openShards(_ paths: [String], tool: String) throws -> [ShardFile.Reader] {
    let readers = try paths.map(ShardFile.Reader.init)
    guard let first = readers.first else { throw CheckpointError(file: "merge", problem: "no shard files given") }
    let a = first.header
    for reader in readers {
        let h = reader.header
        func refuse(_ problem: String) -> CheckpointError { CheckpointError(file: reader.path, problem: problem) }
        if h.kind != a.kind { throw refuse("is a \(h.kind.rawValue) shard, \(first.path) a \(a.kind.rawValue) shard") }
        if h.grid != a.grid { throw refuse("is part of another sweep (\(h.grid); \(first.path): \(a.grid))") }
        if h.tool != tool { throw refuse("was made by \(h.tool); this is \(tool): merge with the gmtool that made the shards") }
        if h.weightsDigest != a.weightsDigest {
            throw refuse("was taken on another model (weights digest \(h.weightsDigest), \(first.path)'s is \(a.weightsDigest))")
        }
        if h.dataDigest != a.dataDigest { throw refuse("was taken on other data (\(h.dataDigest); \(first.path): \(a.dataDigest))") }
        if h.totalImages != a.totalImages { throw refuse("is part of a pass over \(h.totalImages) \(h.noun), \(first.path) of \(a.totalImages)") }
        if h.scaling != a.scaling { throw refuse("scales its inputs \(h.scaling), \(first.path) \(a.scaling)") }
        if h.batchSize != a.batchSize || h.unitBatches != a.unitBatches {
            throw refuse("was run with --batch-size \(h.batchSize), \(first.path) with \(a.batchSize)")
        }
        if h.weights.map(\.path) != a.weights.map(\.path) || h.weights.map(\.shape) != a.weights.map(\.shape) {
            throw refuse("holds other weights than \(first.path)")
        }
        let unitImages = h.batchSize * h.unitBatches
        guard h.images == (h.units.lowerBound * unitImages)..<min(h.units.upperBound * unitImages, h.totalImages) else {
            throw refuse("is not a valid shard (\(h.noun) \(h.images.lowerBound)-\(h.images.upperBound - 1) are not its units \(h.units.lowerBound)-\(h.units.upperBound - 1))")
        }
    }
    let sorted = readers.sorted { ($0.header.images.lowerBound, $0.header.images.upperBound) < ($1.header.images.lowerBound, $1.header.images.upperBound) }
    func images(_ r: Range<Int>) -> String { "\(a.noun) \(r.lowerBound)-\(r.upperBound - 1)" }
    for (previous, next) in zip(sorted, sorted.dropFirst()) {
        let (p, n) = (previous.header, next.header)
        if n.images == p.images {
            throw CheckpointError(file: next.path, problem: "duplicates \(previous.path) (both \(n.label), \(images(n.images)))")
        }
        if n.images.lowerBound < p.images.upperBound {
            throw CheckpointError(file: next.path, problem: "\(n.label) (\(images(n.images))) overlaps \(previous.path) (\(p.label), \(images(p.images)))")
        }
    }
    // Gaps: name the missing shards when every file agrees on N.
    let count = Set(readers.map(\.header.count)).count == 1 ? a.count : nil
    var expected = 0
    for range in sorted.map(\.header.images) + [a.totalImages..<a.totalImages] {
        if range.lowerBound > expected {
            let gap = expected..<range.lowerBound
            if let count, let plans = try? (0..<count).map({ try ShardPlan(index: $0, count: count, totalImages: a.totalImages, batchSize: a.batchSize, kind: a.kind) }) {
                let missing = plans.filter { $0.images.overlaps(gap) }.map { "\($0.index)/\(count)" }
                throw CheckpointError(file: "shard \(missing.joined(separator: ", "))", problem: "missing (\(images(gap)) are in none of the files given)")
            }
            throw CheckpointError(file: images(gap), problem: "missing (in none of the shard files given)")
        }
        expected = range.upperBound
    }
    return sorted
}

/// The whole pass's totals from shards in image order: every batch's totals added in batch order,
/// as the single pass adds them.
public func mergedTotals(_ shards: [ShardFile.Reader]) throws -> PassTotals {
    var totals = PassTotals()
    for shard in shards {
        let b = try shard.batches()
        for i in b.images.indices {
            var batch = PassTotals()
            batch.images = Int(b.images[i])
            batch.lossSum = b.lossSum[i]
            batch.top1Correct = Int(b.top1[i])
            batch.top5Correct = Int(b.top5[i])
            totals = totals + batch
        }
    }
    return totals
}

/// Merges gradient shards (from `openShards`) into the gradient file the single `gmtool grad`
/// writes, bit for bit: per weight, one at a time, every block of the `GroupTree` is evaluated
/// from the shards' pieces (a piece as read; any other node as its left half + its right half,
/// as the single pass adds them), the blocks are added in order onto a float64 total that
/// starts at 0, then `meanGradient`. `attributes(header of the first shard, totals)` gives the
/// file's provenance attributes.
public func mergeGradientShards(_ shards: [ShardFile.Reader], to output: String,
                                attributes: (ShardFile.Header, PassTotals) -> (text: [String: String], numbers: [String: Double])) throws -> PassTotals {
    guard let first = shards.first, first.header.kind == .gradients else {
        throw CheckpointError(file: shards.first?.path ?? "merge", problem: "is an evaluation shard: merge writes a gradient file from gradient shards only (leave out -o)")
    }
    let totals = try mergedTotals(shards)
    let (text, numbers) = attributes(first.header, totals)
    let unitImages = first.header.batchSize * first.header.unitBatches
    let tree = GroupTree(totalUnits: (first.header.totalImages + unitImages - 1) / unitImages)
    var owner: [GroupTree.Node: ShardFile.Reader] = [:]
    for shard in shards {
        for piece in tree.pieces(shard.header.units) { owner[piece] = shard }
    }
    try GradientFile.write(to: output, tensors: first.header.weights, weightsDigest: first.header.weightsDigest,
                           textAttributes: text, numberAttributes: numbers) { weight in
        func sum(_ node: GroupTree.Node) throws -> [Double] {
            if let shard = owner[node] { return try shard.piece(node.units, weight: weight) }
            guard let (left, right) = tree.children(node) else {
                throw CheckpointError(file: "merge", problem: "no shard holds \(node) (the shards do not tile the pass)")
            }
            var total = try sum(left)
            let other = try sum(right)
            for i in total.indices { total[i] = total[i] + other[i] }
            return total
        }
        var total = [Double](repeating: 0, count: first.header.weights[weight].shape.reduce(1, *))
        for block in tree.blocks {
            let partial = try sum(block)
            for i in total.indices { total[i] = total[i] + partial[i] }
        }
        return total.withUnsafeBufferPointer { meanGradient($0, imageCount: totals.images) }
    }
    return totals
}
