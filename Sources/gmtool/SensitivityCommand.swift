import Analysis
import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import Pruning

struct SensitivityCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sensitivity",
        abstract: "Prune each layer alone to each sparsity level and measure: which layers can take it.",
        discussion: """
            Each prunable kernel, alone, gets the beta that brings it to each level (magnitude \
            within the layer, or gradient-aware with --gamma: then dC/dw over --data), on a copy \
            of the model in memory restored between tries, evaluated on --eval-data (default: the \
            --data images). Writes OUTPUT/sensitivity.csv (Distiller's columns: \
            parameter,sparsity,top1,top5,loss; top-1 and top-5 in percent), sensitivity.json, \
            sensitivity.svg (one line per layer) and report.html, and prints the per-layer targets \
            within --max-drop as a `gmtool prune --layer-target` command.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(name: .long, help: "Sparsity levels in [0, 1): numbers and ranges a:b:step (e.g. 0:0.95:0.05) or a:b:n, comma-separated.")
    var levels: String = "0:0.95:0.05"

    @Option(name: .long, parsing: .unconditional, help: "Gradient threshold (default: inf, magnitude only).")
    var gamma: Float = .infinity

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Evaluate on this data (default: the --data images).")
    var evalData: [String] = []

    @Option(name: .long, help: "Split of --eval-data to evaluate on (default: test).")
    var evalSplit: CIFARDataset.Split?

    @Option(name: .long, help: "Analyse only layers matching this glob pattern (repeatable).")
    var include: [String] = []

    @Option(name: .long, help: "Leave out layers matching this glob pattern (repeatable).")
    var exclude: [String] = []

    @Flag(name: .long, help: "Leave out depthwise kernels.")
    var skipDepthwise = false

    @Option(name: [.short, .long], help: "Output folder (created; replaced only when it holds a previous sensitivity analysis).")
    var output: String

    @Option(name: .long, parsing: .unconditional, help: "Largest top-1 drop, in percentage points, for the suggested per-layer targets.")
    var maxDrop: Double = 1.0

    @Flag(name: .long, help: "Run more than 10,000 evaluations.")
    var yes = false

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    @Flag(name: .long, help: "Print sensitivity.json instead of text.")
    var json = false

    func validate() throws {
        guard CommandChecks.enabled else { return }
        _ = try parsedLevels()
        if gamma.isNaN || gamma < 0 { throw ValidationError("--gamma must be a number >= 0") }
        if gamma.isFinite && dataOptions.data.isEmpty { throw ValidationError("--gamma needs --data (the images for dC/dw)") }
        if dataOptions.data.isEmpty && evalData.isEmpty { throw ValidationError("give --data or --eval-data (the images each try is evaluated on)") }
        if evalSplit != nil && evalData.isEmpty { throw ValidationError("--eval-split is used only with --eval-data") }
        if !dataOptions.data.isEmpty && !evalData.isEmpty && !(gamma.isFinite) {
            throw ValidationError("--data is not used: with gamma = inf only there is no gradient pass, and --eval-data gives the evaluation images")
        }
        if dataOptions.split != nil && dataOptions.data.isEmpty { throw ValidationError("--split selects the --data images; give --data") }
        if !(maxDrop >= 0) || !maxDrop.isFinite { throw ValidationError("--max-drop must be a number >= 0 (percentage points)") }
    }

    func parsedLevels() throws -> [Double] {
        let values: [Double]
        do { values = try GridValues.parse(levels, name: "--levels") } catch let error as AnalysisError { throw ValidationError(error.description) }
        for value in values where !(value >= 0 && value < 1) {
            throw ValidationError("--levels '\(levels)': \(GridValues.format(value)) is outside [0, 1) (a sparsity)")
        }
        return values
    }

    func run() throws {
        let levels = try parsedLevels()
        try checkOutputFolder(output, kind: "a previous sensitivity analysis", isPrevious: isPreviousSensitivity)
        let original = try checkpoint.openModel()
        let working = original.copy()
        var settings = PruningSettings(beta: 0, gamma: gamma)
        settings.include = include
        settings.exclude = exclude
        settings.skipDepthwise = skipDepthwise
        let targets = try settings.targets(in: original.checkpoint)
        if targets.count * levels.count > SweepCommand.pointLimit && !yes {
            throw CommandError("\(original.path): \(targets.count) kernels x \(levels.count) levels is \(targets.count * levels.count) evaluations (more than \(SweepCommand.pointLimit)); add --yes to run them")
        }
        let gradientData = dataOptions.data.isEmpty ? nil : try dataOptions.dataset(defaultSplit: .validation)
        let evaluation = evalData.isEmpty ? gradientData! : try dataOptions.dataset(paths: evalData, split: evalSplit ?? .test)
        let network = try dataOptions.network(working, for: gradientData ?? evaluation)
        try dataOptions.check(network, evaluation)
        var gradients: [CheckpointWeight: [Float]] = [:]
        if gamma.isFinite, let gradientData {
            let report = try network.gradients(gradientData, batchSize: dataOptions.batchSize,
                                               progress: ProgressBar(total: gradientData.count, label: "gradients", quiet: quiet || json).update)
            gradients = Dictionary(uniqueKeysWithValues: report.gradients.map { ($0.weight, $0.values) })
        }
        let explorer = PruningExplorer(original: original, working: working, network: network, targets: targets, gradients: gradients,
                                       evaluation: evaluation, batchSize: dataOptions.batchSize)
        let baseline = try explorer.baseline()
        let bar = ProgressBar(total: targets.count * levels.count, label: "sensitivity", quiet: quiet || json)
        let (rows, unreachable) = try explorer.sensitivity(levels: levels, gamma: gamma) { done, _ in bar.update(done) }
        let suggested = suggestedLayerTargets(rows, baseline: baseline.top1Accuracy, maxDrop: maxDrop / 100)
        let flags = suggested.map { "\(literalPattern($0.layer))=\($0.sparsity)" }
        var words = ["gmtool", "prune", checkpoint.model] + (checkpoint.config.map { ["--config", $0] } ?? [])
        for flag in flags { words += ["--layer-target", flag] }
        if gamma.isFinite {
            words += ["--gamma", thresholdText(gamma), "--data"] + dataOptions.data
            if let split = dataOptions.split { words += ["--split", split.rawValue] }
            if let limit = dataOptions.limit { words += ["--limit", "\(limit)"] }
            if dataOptions.scale != .unit { words += ["--scale", dataOptions.scale.rawValue] }
            if dataOptions.batchSize != 100 { words += ["--batch-size", "\(dataOptions.batchSize)"] }
        }
        words += ["-o", "pruned.h5"]
        let result = SensitivityResult(
            model: original.path, gamma: gamma, evaluationData: evaluation.sourceFiles, evaluationImages: baseline.images,
            baselineTop1: baseline.top1Accuracy, levels: levels, rows: rows,
            unreachable: unreachable.map { "\($0.parameter)=\($0.level)" }, maxDrop: maxDrop / 100, suggested: flags,
            command: flags.isEmpty ? nil : words.map(shellQuoted).joined(separator: " "))
        try writeFolderAtomically(to: output, files: try result.files(), kind: "a previous sensitivity analysis", isPrevious: isPreviousSensitivity)
        if json { try printJSON(result); return }
        print("model:     \(original.path)")
        print("evaluated: \(evaluation.sourceFiles.joined(separator: ", ")) (\(grouped(baseline.images)) images); unpruned top-1 \(percent(baseline.top1Accuracy))")
        print("tries:     \(targets.count) kernels x \(levels.count) levels, \(gamma.isFinite ? "gamma \(thresholdText(gamma))" : "magnitude within each layer")\(unreachable.isEmpty ? "" : "; \(unreachable.count) out of reach with this gamma (listed in sensitivity.json)")")
        if let command = result.command {
            print("suggested (every level up to it within \(String(format: "%g", maxDrop)) points): \(flags.joined(separator: " "))")
            print("prune:     \(command)")
        } else {
            print("no layer keeps top-1 within \(String(format: "%g", maxDrop)) points at the lowest non-zero level")
        }
        print("wrote \(output) (sensitivity.csv, sensitivity.json, sensitivity.svg, report.html)")
    }
}
