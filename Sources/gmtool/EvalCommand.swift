import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate top-1/top-5 accuracy and mean loss on labelled images.",
        discussion: """
            Runs the network gmtool builds from the checkpoint's model_config (BatchNorm in \
            inference mode, dropout off) over the images, in batches, on every core. With --shard \
            K/N and -o it evaluates only the K-th of N contiguous image ranges and writes its \
            per-batch totals; `gmtool merge` prints the whole set's report from the N shard files.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions
    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var shardOptions: ShardOptions

    @Option(name: [.short, .long], help: "With --shard: the shard file to write.")
    var output: String?

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    @Flag(name: .long, help: "For a sparse export: run its kernels dense instead of as CSR.")
    var denseKernels = false

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if dataOptions.data.isEmpty { throw ValidationError("--data is required") }
        if (shardOptions.shard == nil) != (output == nil) { throw ValidationError("--shard and -o/--output go together") }
        if let output, samePath(output, checkpoint.model) { throw ValidationError("the output would overwrite the model") }
    }

    func run() throws {
        if let output { try checkOutput(output) }
        let model = try checkpoint.openModel()
        let dataset = try dataOptions.dataset()
        if denseKernels && model.checkpoint.layout != .sparseExport {
            throw CommandError("\(model.path): --dense-kernels applies only to a sparse export (this is a \(model.checkpoint.layout.rawValue) checkpoint, run dense anyway)")
        }
        let sparse = model.checkpoint.layout == .sparseExport && !denseKernels
        let network = try dataOptions.network(model, for: dataset, sparseKernels: sparse)
        if let output, let plan = try shardOptions.plan(images: dataset.count, batchSize: dataOptions.batchSize, kind: .evaluation) {
            let bar = ProgressBar(total: plan.images.count, label: "eval \(plan.index)/\(plan.count)", quiet: quiet || json)
            let start = Date()
            let totals = try network.evaluationShard(dataset, plan: plan, provenance: try ShardOptions.provenance(model, dataset),
                                                     to: output, progress: bar.update)
            try printShard(output: output, plan: plan, totals: totals, seconds: Date().timeIntervalSince(start), json: json)
            return
        }
        let bar = ProgressBar(total: dataset.count, label: "eval", quiet: quiet || json)
        let report = try network.evaluate(dataset, batchSize: dataOptions.batchSize, progress: bar.update)
        if json {
            try printJSON(EvalOutput(report: report, scaling: dataset.scaling.description, data: dataset.files.map(\.path),
                                     totalParameters: model.totalParameters, nonzeroParameters: model.nonzeroParameters,
                                     sparsity: model.sparsity))
            return
        }
        print("model:       \(model.path)")
        print("data:        \(dataset.files.map { "\($0.path) (\($0.records))" }.joined(separator: ", "))")
        print("scaling:     \(dataset.scaling)")
        if model.checkpoint.layout == .sparseExport { print("kernels:     \(sparse ? "sparse (CSR) for convolutions and Dense" : "dense")") }
        print("images:      \(grouped(report.images))")
        print("top-1:       \(percent(report.top1Accuracy))")
        print("top-5:       \(percent(report.top5Accuracy))")
        print("mean loss:   \(String(format: "%.4f", report.meanLoss))")
        print("speed:       \(String(format: "%.0f", report.imagesPerSecond)) images/s (\(String(format: "%.2f", report.seconds)) s)")
        print("parameters:  \(grouped(model.totalParameters)) total, \(grouped(model.nonzeroParameters)) non-zero (\(percent(model.sparsity)) sparse)")
    }
}

struct EvalOutput: Encodable {
    var report: EvaluationReport
    var scaling: String
    var data: [String]
    var totalParameters: Int
    var nonzeroParameters: Int
    var sparsity: Double

    enum CodingKeys: String, CodingKey {
        case scaling, data, totalParameters = "total_parameters", nonzeroParameters = "nonzero_parameters", sparsity
    }

    func encode(to encoder: Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scaling, forKey: .scaling)
        try container.encode(data, forKey: .data)
        try container.encode(totalParameters, forKey: .totalParameters)
        try container.encode(nonzeroParameters, forKey: .nonzeroParameters)
        try container.encode(sparsity, forKey: .sparsity)
    }
}
