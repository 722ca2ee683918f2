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

    @Option(name: .long, help: ArgumentHelp(
        "For a sparse export: which kernels its convolution and Dense layers run: auto (sparse where a cost model predicts it faster, per layer; the default), sparse or dense.",
        valueName: "auto|sparse|dense"))
    var kernels: KernelChoice?

    @Flag(name: .long, help: "Also print each sparse-stored layer's size, density and the kernel it runs.")
    var verbose = false

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
        let isExport = model.checkpoint.layout == .sparseExport
        if let kernels, !isExport {
            throw CommandError("\(model.path): --kernels \(kernels.rawValue) applies only to a sparse export (this is a \(model.checkpoint.layout.rawValue) checkpoint, run dense anyway)")
        }
        let choice = isExport ? kernels ?? .auto : .dense
        let network = try dataOptions.network(model, for: dataset, kernels: choice)
        let layers = network.sparseLayers(batch: min(dataOptions.batchSize, max(1, dataset.count)))
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
                                     sparsity: model.sparsity, kernels: isExport ? choice.rawValue : nil,
                                     sparseLayers: isExport ? layers.map { SparseLayerOutput(layer: $0.node, sparse: $0.runsSparse) } : nil))
            return
        }
        print("model:       \(model.path)")
        print("data:        \(dataset.files.map { "\($0.path) (\($0.records))" }.joined(separator: ", "))")
        print("scaling:     \(dataset.scaling)")
        if isExport {
            let sparse = layers.filter(\.runsSparse).count
            print("kernels:     \(choice.rawValue): \(sparse) of \(layers.count) sparse-stored layers run sparse (CSR), the rest dense")
        }
        if verbose && isExport {
            print("layer                                rows   inputs  outputs  density  kernel  (predicted us: sparse / dense)")
            for layer in layers {
                let name = layer.node.count > 34 ? String(layer.node.prefix(34)) : layer.node
                print(name.padding(toLength: 34, withPad: " ", startingAt: 0)
                      + String(format: "%8d %8d %8d %7.1f%%  %@  (%.1f / %.1f)", layer.rows, layer.inputs, layer.outputs,
                               100 * layer.density, layer.runsSparse ? "sparse" : "dense ", layer.predictedSparse * 1e6,
                               layer.predictedDense * 1e6))
            }
        }
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
    /// For a sparse export: the --kernels mode and what each sparse-stored layer runs.
    var kernels: String?
    var sparseLayers: [SparseLayerOutput]?

    enum CodingKeys: String, CodingKey {
        case scaling, data, totalParameters = "total_parameters", nonzeroParameters = "nonzero_parameters", sparsity
        case kernels, sparseLayers = "sparse_layers"
    }

    func encode(to encoder: Encoder) throws {
        try report.encode(to: encoder)
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(scaling, forKey: .scaling)
        try container.encode(data, forKey: .data)
        try container.encode(totalParameters, forKey: .totalParameters)
        try container.encode(nonzeroParameters, forKey: .nonzeroParameters)
        try container.encode(sparsity, forKey: .sparsity)
        try container.encodeIfPresent(kernels, forKey: .kernels)
        try container.encodeIfPresent(sparseLayers, forKey: .sparseLayers)
    }
}

struct SparseLayerOutput: Encodable {
    var layer: String
    var sparse: Bool
}

extension KernelChoice: ExpressibleByArgument {}
