import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine

struct GradCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "grad",
        abstract: "Write dC/dw for every trainable weight to an HDF5 file.",
        discussion: """
            C is the mean categorical cross-entropy over the chosen images (BatchNorm in \
            inference mode, dropout off). Each gradient is a float32 dataset at the same HDF5 path \
            its weight has in the checkpoint; root attributes record the images, loss, data and \
            scaling, and the digest of the weights they were taken on (weights_digest). `gmtool prune \
            --gradients` reuses the file for the same weights only. With --shard K/N it computes \
            only the K-th of N contiguous image ranges and writes their partial sums; `gmtool merge` \
            combines the N shard files into the same file, bit for bit (docs/SCALE.md).
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var shardOptions: ShardOptions

    @Option(name: [.short, .long], help: "Output file.")
    var output: String

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    @Flag(name: .long, help: "Print a JSON summary instead of text.")
    var json = false

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if dataOptions.data.isEmpty { throw ValidationError("--data is required") }
        if samePath(output, checkpoint.model) {
            throw ValidationError("the output would overwrite the model")
        }
    }

    func run() throws {
        try checkOutput(output)
        let model = try checkpoint.openModel()
        let dataset = try dataOptions.dataset()
        let network = try dataOptions.network(model, for: dataset)
        if let plan = try shardOptions.plan(images: dataset.count, batchSize: dataOptions.batchSize, kind: .gradients) {
            let bar = ProgressBar(total: plan.images.count, label: "grad \(plan.index)/\(plan.count)", quiet: quiet || json)
            let start = Date()
            let totals = try network.gradientShard(dataset, plan: plan, provenance: try ShardOptions.provenance(model, dataset),
                                                   to: output, progress: bar.update)
            try printShard(output: output, plan: plan, totals: totals, seconds: Date().timeIntervalSince(start), json: json)
            return
        }
        let bar = ProgressBar(total: dataset.count, label: "grad", quiet: quiet || json)
        let report = try network.gradients(dataset, batchSize: dataOptions.batchSize, progress: bar.update)
        try GradientFile.write(
            to: output, tensors: report.gradients.map { ($0.weight.datasetPath, $0.weight.shape) }, weightsDigest: model.weightsDigest,
            textAttributes: gradientTextAttributes(model: model.path, data: dataset.files.map(\.path).joined(separator: ","),
                                                   dataDigest: try dataFilesDigest(dataset.files), scaling: dataset.scaling.description),
            numberAttributes: ["images": Double(report.images), "loss": report.meanLoss]) { report.gradients[$0].values }
        if json {
            try printJSON(GradSummary(output: output, gradients: report.gradients.count, images: report.images,
                                      meanLoss: report.meanLoss, seconds: report.seconds,
                                      imagesPerSecond: Double(report.images) / max(report.seconds, 1e-9)))
            return
        }
        print("wrote \(output): \(report.gradients.count) gradients over \(grouped(report.images)) images, "
              + "mean loss \(String(format: "%.4f", report.meanLoss)), \(String(format: "%.2f", report.seconds)) s "
              + "(\(String(format: "%.0f", Double(report.images) / max(report.seconds, 1e-9))) images/s)")
    }
}

/// The text attributes of a gradient file: the same for `grad` and for `merge`, which must write
/// the same bytes. `data_digest` (`dataFilesDigest`: each file's name, images used, size and
/// CRC-32) is what `train --prune-gradients-from` checks the file against.
func gradientTextAttributes(model: String, data: String, dataDigest: String, scaling: String) -> [String: String] {
    ["model": model, "data": data, "data_digest": dataDigest, "scaling": scaling, "loss_function": "mean categorical cross-entropy",
     "tool": "gmtool \(gmtoolVersion)"]
}

/// What `grad --shard` and `eval --shard` print.
func printShard(output: String, plan: ShardPlan, totals: PassTotals, seconds: Double, json: Bool) throws {
    if json {
        try printJSON(ShardSummary(output: output, shard: plan.index, shards: plan.count, firstImage: plan.images.lowerBound,
                                   endImage: plan.images.upperBound, images: totals.images, totalImages: plan.totalImages, seconds: seconds))
        return
    }
    print("wrote \(output): shard \(plan.index)/\(plan.count), images \(plan.images.lowerBound)-\(plan.images.upperBound - 1) "
          + "of \(grouped(plan.totalImages)), \(String(format: "%.2f", seconds)) s; combine the \(plan.count) shards with `gmtool merge`")
}

struct ShardSummary: Encodable {
    var output: String
    var shard: Int
    var shards: Int
    var firstImage: Int
    var endImage: Int
    var images: Int
    var totalImages: Int
    var seconds: Double

    enum CodingKeys: String, CodingKey {
        case output, shard, shards, firstImage = "first_image", endImage = "end_image", images, totalImages = "total_images", seconds
    }
}

struct GradSummary: Encodable {
    var output: String
    var gradients: Int
    var images: Int
    var meanLoss: Double
    var seconds: Double
    var imagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case output, gradients, images, meanLoss = "mean_loss", seconds, imagesPerSecond = "images_per_second"
    }
}
