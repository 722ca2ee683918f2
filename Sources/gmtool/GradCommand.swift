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
            --gradients` reuses the file for the same weights only.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions
    @OptionGroup var dataOptions: DataOptions

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
        let bar = ProgressBar(total: dataset.count, label: "grad", quiet: quiet || json)
        let report = try network.gradients(dataset, batchSize: dataOptions.batchSize, progress: bar.update)
        try GradientFile.write(
            to: output, gradients: report.gradients, weightsDigest: model.weightsDigest,
            textAttributes: ["model": model.path, "data": dataset.files.map(\.path).joined(separator: ","),
                             "scaling": dataset.scaling.description, "loss_function": "mean categorical cross-entropy",
                             "tool": "gmtool \(gmtoolVersion)"],
            numberAttributes: ["images": Double(report.images), "loss": report.meanLoss])
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
