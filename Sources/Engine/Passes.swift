import Foundation
import CIFAR
import KerasCheckpoint

/// What `gmtool eval` reports.
public struct EvaluationReport: Codable, Sendable {
    public var images: Int
    public var top1Accuracy: Double
    public var top5Accuracy: Double
    public var meanLoss: Double
    public var seconds: Double
    public var imagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case images, top1Accuracy = "top1_accuracy", top5Accuracy = "top5_accuracy", meanLoss = "mean_loss"
        case seconds, imagesPerSecond = "images_per_second"
    }
}

/// The gradient of the mean loss over a set of images, per trainable weight.
public struct GradientReport {
    public var images: Int
    public var meanLoss: Double
    public var top1Accuracy: Double
    public var seconds: Double
    /// In checkpoint order.
    public var gradients: [(weight: CheckpointWeight, values: [Float])]
}

extension Network {
    /// Top-1/top-5 accuracy and mean loss over every image of `source`. `progress(done)` is
    /// called after each batch.
    public func evaluate(_ source: ImageBatchSource, batchSize: Int = 100,
                         progress: (Int) -> Void = { _ in }) throws -> EvaluationReport {
        try checkClasses(source)
        try checkMemory(batch: min(batchSize, source.count), gradients: false)
        let start = Date()
        var totals = PassTotals()
        try source.forEachBatch(size: batchSize) { images, labels, n in
            totals = totals + pass(images: images, labels: labels, count: n, accumulateGradients: false)
            progress(totals.images)
        }
        let seconds = Date().timeIntervalSince(start)
        return EvaluationReport(images: totals.images, top1Accuracy: totals.top1Accuracy, top5Accuracy: totals.top5Accuracy,
                                meanLoss: totals.meanLoss, seconds: seconds,
                                imagesPerSecond: seconds > 0 ? Double(totals.images) / seconds : 0)
    }

    /// Batches per batch group. A gradient pass commits its chunks' float accumulators into
    /// one float64 sum per group (chunk 0 + chunk 1 + ...), which depends on the group's own
    /// images alone; the groups' sums are then added in the fixed shape of a `GroupTree`. That
    /// is what lets `gmtool grad --shard` compute groups apart and `gmtool merge` add them into
    /// the single pass's bits (docs/SCALE.md). Ten batches keep the commits near 1% of a pass.
    public static let gradientGroupBatches = 10

    /// Batch groups of a gradient pass over `images` images.
    public static func gradientGroupCount(images: Int, batchSize: Int) -> Int {
        (images + batchSize * gradientGroupBatches - 1) / (batchSize * gradientGroupBatches)
    }

    /// dC/dw for every trainable weight, C the mean categorical cross-entropy over all images of
    /// `source` (BatchNorm in inference mode, dropout off).
    public func gradients(_ source: ImageBatchSource, batchSize: Int = 100,
                          progress: (Int) -> Void = { _ in }) throws -> GradientReport {
        try checkClasses(source)
        try checkMemory(batch: min(batchSize, source.count), gradients: true)
        let start = Date()
        let sizes = trainableParameters.map(\.weight.elementCount)
        var total = sizes.map { [Double](repeating: 0, count: $0) }
        let groups = Self.gradientGroupCount(images: source.count, batchSize: batchSize)
        var totals = PassTotals()
        try gradientGroups(source, batchSize: batchSize, tree: GroupTree(totalUnits: groups), units: 0..<groups, progress: progress,
                           afterGroup: { totals = $0.reduce(totals, +) }) { _, block in
            // The blocks onto 0, in order.
            for (slot, sums) in block.enumerated() {
                total[slot].withUnsafeMutableBufferPointer { t in for i in t.indices { t[i] = t[i] + sums[i] } }
            }
        }
        let gradients = zip(trainableParameters, total).map { parameter, sum in
            (parameter.weight, sum.withUnsafeBufferPointer { meanGradient($0, imageCount: totals.images) })
        }
        return GradientReport(images: totals.images, meanLoss: totals.meanLoss, top1Accuracy: totals.top1Accuracy,
                              seconds: Date().timeIntervalSince(start), gradients: gradients)
    }

    /// The gradient pass over `source`, whose batch groups (`gradientGroupBatches` batches; the
    /// last may be shorter) are `units` of `tree`: after each group the accumulators are
    /// committed as the group's own sum, `afterGroup` gets the group's per-batch totals, and a
    /// `GroupReducer` folds the sums up the tree, handing `emit` every largest node inside
    /// `units` as it completes (the blocks for a whole pass, the pieces for a shard). A source's
    /// first batch is its largest, so the workspaces are made before anything accumulates and no
    /// commit falls inside a group.
    func gradientGroups(_ source: ImageBatchSource, batchSize: Int, tree: GroupTree, units: Range<Int>, progress: (Int) -> Void,
                        afterGroup: ([PassTotals]) throws -> Void,
                        emit: @escaping (GroupTree.Node, [UnsafeBufferPointer<Double>]) throws -> Void) throws {
        precondition(units.count == Self.gradientGroupCount(images: source.count, batchSize: batchSize))
        resetGradients()
        defer { resetGradients() }
        let reducer = GroupReducer(tree: tree, units: units, sizes: trainableParameters.map(\.weight.elementCount), emit: emit)
        var group: [PassTotals] = []
        var done = 0
        func endGroup() throws {
            commitGradients(storing: true)
            try afterGroup(group)
            try withGradientTotals { try reducer.add($0) }
            group = []
        }
        try source.forEachBatch(size: batchSize) { images, labels, n in
            group.append(pass(images: images, labels: labels, count: n, accumulateGradients: true))
            done += n
            progress(done)
            if group.count == Self.gradientGroupBatches { try endGroup() }
        }
        if !group.isEmpty { try endGroup() }
        reducer.finish()
    }

    func checkClasses(_ source: ImageBatchSource) throws {
        guard source.count > 0 else { throw CheckpointError(file: checkpoint.path, problem: "no images to run on") }
    }
}
