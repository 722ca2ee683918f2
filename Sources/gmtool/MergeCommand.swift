import Analysis
import ArgumentParser
import Engine
import Foundation
import KerasCheckpoint

struct MergeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "merge",
        abstract: "Combine the shard files of `grad`, `eval` or `sweep --shard` into the single run's result.",
        discussion: """
            Gradient shards: writes (-o) exactly the file `gmtool grad` writes without --shard, bit \
            for bit, adding the shards' float64 partial sums in the single run's order, one tensor \
            at a time. Evaluation shards: prints the report `eval` prints for images, top-1, top-5 \
            and mean loss. Sweep shards: writes (-o) the folder `gmtool sweep` writes without \
            --shard, the same files byte for byte but for the two timings in sweep.json. Refuses, \
            naming the shard, a missing, duplicated or overlapping shard, shards of another model, \
            other data or another grid, and a truncated or corrupt file.
            """
    )

    @Argument(help: "The shard files, in any order.")
    var shards: [String] = []

    @Option(name: [.short, .long], help: "The gradient file (gradient shards) or sweep folder (sweep shards) to write.")
    var output: String?

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if shards.isEmpty { throw ValidationError("give the shard files to merge") }
        if let output, let input = shards.first(where: { samePath($0, output) }) {
            throw ValidationError("the output would overwrite the shard \(input)")
        }
    }

    func run() throws {
        let readers = try openShards(shards, tool: "gmtool \(gmtoolVersion)")
        let kind = readers[0].header.kind
        if kind == .sweep {
            guard let output else { throw CommandError("\(readers[0].path): sweep shards merge into a sweep folder: give -o") }
            try checkOutputFolder(output, kind: "a previous sweep", isPrevious: isPreviousSweep)
            let result = try SweepShard.merge(readers)
            try writeFolderAtomically(to: output, files: try result.files(), kind: "a previous sweep", isPrevious: isPreviousSweep)
            if json { try printJSON(result); return }
            print("wrote \(output) (sweep.csv, layers.csv, sweep.json, 4 charts, report.html): \(result.points.count) points from \(readers.count) shards")
            if let command = result.command { print("reproduce: \(command)") }
            return
        }
        if kind == .gradients {
            guard let output else { throw CommandError("\(readers[0].path): gradient shards merge into a gradient file: give -o") }
            try checkOutput(output)
            let totals = try mergeGradientShards(readers, to: output) { header, totals in
                (gradientTextAttributes(model: header.model, data: header.data, dataDigest: header.dataDigest, scaling: header.scaling),
                 ["images": Double(totals.images), "loss": totals.meanLoss])
            }
            if json {
                try printJSON(MergeSummary(output: output, shards: readers.count, images: totals.images, meanLoss: totals.meanLoss,
                                           top1Accuracy: nil, top5Accuracy: nil))
                return
            }
            print("wrote \(output): \(readers[0].header.weights.count) gradients over \(grouped(totals.images)) images from \(readers.count) shards, "
                  + "mean loss \(String(format: "%.4f", totals.meanLoss))")
            return
        }
        if output != nil { throw CommandError("\(readers[0].path): evaluation shards merge into a report, not a file: leave out -o") }
        let totals = try mergedTotals(readers)
        if json {
            try printJSON(MergeSummary(output: nil, shards: readers.count, images: totals.images, meanLoss: totals.meanLoss,
                                       top1Accuracy: totals.top1Accuracy, top5Accuracy: totals.top5Accuracy))
            return
        }
        print("model:       \(readers[0].header.model)")
        print("data:        \(readers[0].header.data)")
        print("scaling:     \(readers[0].header.scaling)")
        print("shards:      \(readers.count)")
        print("images:      \(grouped(totals.images))")
        print("top-1:       \(percent(totals.top1Accuracy))")
        print("top-5:       \(percent(totals.top5Accuracy))")
        print("mean loss:   \(String(format: "%.4f", totals.meanLoss))")
    }
}

struct MergeSummary: Encodable {
    var output: String?
    var shards: Int
    var images: Int
    var meanLoss: Double
    var top1Accuracy: Double?
    var top5Accuracy: Double?

    enum CodingKeys: String, CodingKey {
        case output, shards, images, meanLoss = "mean_loss", top1Accuracy = "top1_accuracy", top5Accuracy = "top5_accuracy"
    }
}
