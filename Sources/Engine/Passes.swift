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

    /// Batches per batch group. A gradient pass commits its chunks' float accumulators into the
    /// Double totals after every group: total + (chunk 0 + chunk 1 + ...) per group, groups in
    /// order. A group's sum depends on its own images alone, which is what lets `gmtool grad
    /// --shard` compute groups apart and `gmtool merge` add them in the same order, bit for bit
    /// (docs/SCALE.md). Ten batches keep the commits near 1% of a pass.
    public static let gradientGroupBatches = 10

    /// dC/dw for every trainable weight, C the mean categorical cross-entropy over all images of
    /// `source` (BatchNorm in inference mode, dropout off).
    public func gradients(_ source: ImageBatchSource, batchSize: Int = 100,
                          progress: (Int) -> Void = { _ in }) throws -> GradientReport {
        try checkClasses(source)
        try checkMemory(batch: min(batchSize, source.count), gradients: true)
        let start = Date()
        resetGradients()
        var totals = PassTotals()
        try gradientGroups(source, batchSize: batchSize, storing: false, progress: progress) { batches in
            totals = batches.reduce(totals, +)
        }
        let gradients = takeGradients(imageCount: totals.images).map { ($0.parameter.weight, $0.gradient) }
        return GradientReport(images: totals.images, meanLoss: totals.meanLoss, top1Accuracy: totals.top1Accuracy,
                              seconds: Date().timeIntervalSince(start), gradients: gradients)
    }

    /// The gradient pass over `source`, batch group by batch group (`gradientGroupBatches`; the
    /// last may be shorter): after each group the accumulators are committed and `afterGroup`
    /// gets the group's per-batch totals. `storing`: the Double totals become the group's own
    /// sum (`withGradientTotals` reads it) instead of adding it. A source's first batch is its
    /// largest, so the workspaces are made before anything accumulates and no commit falls
    /// inside a group.
    func gradientGroups(_ source: ImageBatchSource, batchSize: Int, storing: Bool, progress: (Int) -> Void,
                        afterGroup: ([PassTotals]) throws -> Void) throws {
        var group: [PassTotals] = []
        var done = 0
        try source.forEachBatch(size: batchSize) { images, labels, n in
            group.append(pass(images: images, labels: labels, count: n, accumulateGradients: true))
            done += n
            progress(done)
            if group.count == Self.gradientGroupBatches {
                commitGradients(storing: storing)
                try afterGroup(group)
                group = []
            }
        }
        if !group.isEmpty {
            commitGradients(storing: storing)
            try afterGroup(group)
        }
    }

    func checkClasses(_ source: ImageBatchSource) throws {
        guard source.count > 0 else { throw CheckpointError(file: checkpoint.path, problem: "no images to run on") }
    }
}
