import ArgumentParser
import KerasCheckpoint

struct StatsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stats",
        abstract: "Print parameter counts, non-zeros and sparsity per weight and in total.",
        discussion: """
            Totals match Keras' model.count_params(). Prunable parameters are the kernels of \
            Conv2D, DepthwiseConv2D, SeparableConv2D and Dense layers. Weights that are entirely \
            zero are flagged. Masks written by gmtool are reported when present. Layers of a class \
            gmtool does not run are listed: their weights are counted as stored, none prunable.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        let statistics = try checkpoint.open().statistics()
        if json { try printJSON(statistics); return }
        print(render(statistics))
    }

    func render(_ s: ModelStatistics) -> String {
        let hasMasks = s.hasMasks
        // The thresholds each kernel was pruned with, when the masks record them.
        let hasThresholds = s.layers.contains { $0.pruning?["beta"] != nil }
        var table = TextTable(
            headers: ["layer", "type", "weight", "shape", "params", "nonzero", "sparsity", "bytes"] + (hasMasks ? ["masked"] : [])
                + (hasThresholds ? ["beta", "gamma"] : []) + [""],
            rightAligned: Set([4, 5, 6, 7] + (hasMasks ? [8] : [])))
        for row in s.layers {
            var flags: [String] = []
            if row.allZero { flags.append("ALL ZERO") }
            if row.prunable { flags.append("prunable") }
            if !row.trainable { flags.append("non-trainable") }
            table.rows.append(
                [row.layer, row.layerType, row.weight, shapeDescription(row.shape), grouped(row.parameters),
                 grouped(row.nonzero), percent(row.sparsity, digits: 1), grouped(row.bytes)]
                + (hasMasks ? [row.masked.map(grouped) ?? "-"] : [])
                + (hasThresholds ? [row.pruning?["beta"] ?? "-", row.pruning?["gamma"] ?? "-"] : []) + [flags.joined(separator: ", ")])
        }
        var lines = [table.render(), ""]
        lines.append("file:                    \(s.file) (\(s.layout)\(s.kerasVersion.map { ", Keras \($0)" } ?? ""), \(byteSize(s.fileBytes)))")
        lines.append("total parameters:        \(grouped(s.totalParameters))")
        lines.append("trainable parameters:    \(grouped(s.trainableParameters))")
        lines.append("non-trainable:           \(grouped(s.nonTrainableParameters))")
        lines.append("prunable parameters:     \(grouped(s.prunableParameters)) (\(percent(Double(s.prunableParameters) / Double(max(1, s.totalParameters)), digits: 1)) of total)")
        lines.append("non-zero parameters:     \(grouped(s.nonzeroParameters))")
        lines.append("sparsity:                \(percent(s.sparsity)) overall, \(percent(s.prunableSparsity)) of prunable")
        lines.append("dense weight bytes:      \(grouped(s.denseBytes))")
        if !s.unknownLayers.isEmpty {
            lines.append("unknown layers:          \(s.unknownLayers.joined(separator: ", ")): weights counted as stored, none prunable; gmtool cannot run this model")
        }
        let zeroLayers = s.layers.filter(\.allZero)
        if !zeroLayers.isEmpty {
            lines.append("all-zero kernels:        \(zeroLayers.count) (\(zeroLayers.map { "\($0.layer)/\($0.role)" }.joined(separator: ", ")))")
        }
        if hasMasks {
            let masked = s.layers.compactMap(\.masked).reduce(0, +)
            lines.append("masks:                   \(s.layers.filter { $0.masked != nil }.count) weights, \(grouped(masked)) entries pruned")
            for (key, value) in s.maskProvenance.sorted(by: { $0.key < $1.key }) { lines.append("  \(key): \(value)") }
        }
        return lines.joined(separator: "\n")
    }
}
