import Analysis
import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine
import Pruning

struct SweepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sweep",
        abstract: "Prune a copy of the model at every (beta, gamma) of a grid and measure each: the paper's Figure 1.",
        discussion: """
            One gradient pass over --data (default: the validation split), or dC/dw from a \
            --gradients file, then each point of the \
            grid applied to a copy of the model in memory (the original is restored between \
            points) and evaluated on --eval-data (default: the --data images). Grids are lists of \
            numbers and ranges: a:b:n (n values, a and b included), a:b:n:log (log-spaced), \
            a:b:step (a step with a decimal point), inf for gamma. Writes OUTPUT/sweep.csv, \
            layers.csv, sweep.json, four SVG charts and a self-contained report.html (the folder \
            is written whole, then renamed into place; an existing folder is replaced only when \
            it holds a previous sweep). Prints the sparsest point within --max-drop of the \
            unpruned top-1 and the `gmtool prune` command that reproduces it. With --shard K/N it \
            measures only the K-th of N contiguous runs of the grid's points and writes them to the \
            shard file -o; `gmtool merge` writes the single sweep's folder from the N files \
            (docs/SCALE.md).
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(name: .long, parsing: .unconditional, help: "The betas: numbers and ranges a:b:n, a:b:n:log, a:b:step, comma-separated.")
    var beta: String

    @Option(name: .long, parsing: .unconditional, help: "The gammas, as --beta (inf: magnitude only).")
    var gamma: String = "inf"

    @OptionGroup var dataOptions: DataOptions
    @OptionGroup var shardOptions: ShardOptions

    @Option(name: .long, help: "Take dC/dw from a file `gmtool grad` (or `gmtool merge` of its shards) wrote on this model instead of a gradient pass over --data; checked as `prune --gradients` checks it. Needs --eval-data.")
    var gradients: String?

    @Option(name: .long, parsing: .upToNextOption, help: "Evaluate every point on this data (the forms --data takes; default: the --data images).")
    var evalData: [String] = []

    @Option(name: .long, help: "Split of --eval-data to evaluate on (default: test).")
    var evalSplit: CIFARDataset.Split?

    @Option(name: .long, help: "Prune only layers matching this glob pattern (repeatable).")
    var include: [String] = []

    @Option(name: .long, help: "Never prune layers matching this glob pattern (repeatable).")
    var exclude: [String] = []

    @Flag(name: .long, help: "Leave depthwise kernels unpruned.")
    var skipDepthwise = false

    @Option(name: [.short, .long], help: "Output folder (created; replaced only when it holds a previous sweep); with --shard, the shard file.")
    var output: String

    @Option(name: .long, parsing: .unconditional, help: "Largest top-1 drop, in percentage points, for the point printed and charted per layer.")
    var maxDrop: Double = 1.0

    @Flag(name: .long, help: "Run a grid of more than 10,000 points.")
    var yes = false

    @Flag(name: .long, help: "Draw the progress line even when stderr is not a terminal.")
    var progress = false

    @Flag(name: .long, help: "No progress line.")
    var quiet = false

    @Flag(name: .long, help: "Print sweep.json instead of text.")
    var json = false

    static let pointLimit = 10_000

    func validate() throws {
        guard CommandChecks.enabled else { return }
        let grid = try points()
        if grid.points.count > Self.pointLimit && !yes {
            throw ValidationError("the grid has \(grid.points.count) points (more than \(Self.pointLimit)); add --yes to run it")
        }
        if !(maxDrop >= 0) || !maxDrop.isFinite { throw ValidationError("--max-drop must be a number >= 0 (percentage points)") }
        if let gradients {
            // prune --gradients' rules: the file replaces the gradient pass, so --data has no use.
            if !grid.gammas.contains(where: \.isFinite) { throw ValidationError("--gradients \(gradients) is used only with a finite --gamma; with gamma = inf only the rule is magnitude-only") }
            if !dataOptions.data.isEmpty { throw ValidationError("--data is not used with --gradients (the gradients come from \(gradients)); give the evaluation images with --eval-data") }
            if evalData.isEmpty { throw ValidationError("--gradients \(gradients) needs --eval-data (the images each point is evaluated on)") }
        } else if grid.gammas.contains(where: \.isFinite) && dataOptions.data.isEmpty {
            throw ValidationError("a finite --gamma needs --data (the images for dC/dw)")
        }
        if dataOptions.data.isEmpty && evalData.isEmpty { throw ValidationError("give --data or --eval-data (the images each point is evaluated on)") }
        if evalSplit != nil && evalData.isEmpty { throw ValidationError("--eval-split is used only with --eval-data") }
        if !dataOptions.data.isEmpty && !evalData.isEmpty && !(grid.gammas.contains(where: \.isFinite)) {
            throw ValidationError("--data is not used: with gamma = inf only there is no gradient pass, and --eval-data gives the evaluation images")
        }
        if dataOptions.split != nil && dataOptions.data.isEmpty { throw ValidationError("--split selects the --data images; give --data") }
        if progress && quiet { throw ValidationError("--progress and --quiet contradict each other") }
        if shardOptions.shard != nil && samePath(output, checkpoint.model) { throw ValidationError("the output would overwrite the model") }
    }

    /// The grid, with beta and gamma as floats (the type the rule uses), beta-major per gamma.
    func points() throws -> (betas: [Float], gammas: [Float], points: [SweepPoint]) {
        func floats(_ text: String, _ name: String, allowInfinity: Bool) throws -> [Float] {
            let values: [Double]
            do { values = try GridValues.parse(text, name: name) } catch let error as AnalysisError { throw ValidationError(error.description) }
            for value in values where value < 0 || (!allowInfinity && value.isInfinite) {
                throw ValidationError("\(name) '\(text)': \(GridValues.format(value)) is not \(allowInfinity ? "a number >= 0" : "a finite number >= 0")")
            }
            let result = values.map { Float($0) }
            if Set(result).count != result.count { throw ValidationError("\(name) '\(text)': two values are the same float32") }
            return result
        }
        let betas = try floats(beta, "--beta", allowInfinity: false), gammas = try floats(gamma, "--gamma", allowInfinity: true)
        return (betas, gammas, SweepPoint.grid(betas: betas, gammas: gammas))
    }

    func run() throws {
        let grid = try points()
        let plan = try shardOptions.plan(images: grid.points.count, batchSize: 1, kind: .sweep)
        if plan == nil { try checkOutputFolder(output, kind: "a previous sweep", isPrevious: isPreviousSweep) } else { try checkOutput(output) }
        let original = try checkpoint.openModel()
        let working = original.copy()
        var settings = PruningSettings(beta: 0, gamma: .infinity)
        settings.include = include
        settings.exclude = exclude
        settings.skipDepthwise = skipDepthwise
        let targets = try settings.targets(in: original.checkpoint)
        let usesGradient = grid.gammas.contains(where: \.isFinite)
        let gradientData = dataOptions.data.isEmpty ? nil : try dataOptions.dataset(defaultSplit: .validation)
        let evaluation = evalData.isEmpty ? gradientData! : try dataOptions.dataset(paths: evalData, split: evalSplit ?? .test)
        let network = try dataOptions.network(working, for: gradientData ?? evaluation)
        try dataOptions.check(network, evaluation)

        var byWeight: [CheckpointWeight: [Float]] = [:]
        var gradientSeconds = 0.0, gradientImages = 0
        var gradientSource: [String] = gradientData?.sourceFiles ?? []
        if usesGradient, let file = gradients {
            // The same reading and checks as `prune --gradients` (marker, weights digest, shapes, finite).
            byWeight = try GradientFile.read(file, for: targets.map(\.weight), weightsDigest: original.weightsDigest)
            gradientImages = Int(Double(GradientFile.attribute(file, "images") ?? "") ?? 0)
            gradientSource = [file]
        } else if usesGradient, let gradientData {
            let bar = ProgressBar(total: gradientData.count, label: "gradients", quiet: quiet || (json && !progress))
            let report = try network.gradients(gradientData, batchSize: dataOptions.batchSize, progress: bar.update)
            byWeight = Dictionary(uniqueKeysWithValues: report.gradients.map { ($0.weight, $0.values) })
            gradientSeconds = report.seconds
            gradientImages = report.images
        }
        let explorer = PruningExplorer(original: original, working: working, network: network, targets: targets, gradients: byWeight,
                                       evaluation: evaluation, batchSize: dataOptions.batchSize)
        let baseline = try explorer.baseline()
        let points = plan.map { Array(grid.points[$0.images]) } ?? grid.points
        let line = SweepProgress(total: points.count, baseline: baseline.top1Accuracy, maxDrop: maxDrop / 100,
                                 enabled: progress || (!quiet && !json && isatty(STDERR_FILENO) == 1))
        let start = Date()
        let outcomes = try explorer.sweep(points, progress: line.update)
        let pointSeconds = Date().timeIntervalSince(start)
        // A shard selects nothing: the merge selects among all points.
        let selected = plan != nil ? nil : sparsestWithin(outcomes, baseline: baseline.top1Accuracy, maxDrop: maxDrop / 100)
        let result = SweepResult(
            model: original.path, gradientData: usesGradient ? gradientSource : [], gradientImages: gradientImages,
            evaluationData: evaluation.sourceFiles, evaluationImages: baseline.images, baselineTop1: baseline.top1Accuracy,
            baselineTop5: baseline.top5Accuracy, baselineLoss: baseline.meanLoss, baselineSparsity: original.sparsity,
            betas: grid.betas, gammas: grid.gammas, points: outcomes, maxDrop: maxDrop / 100, selected: selected,
            command: selected.map { pruneCommand(outcomes[$0]) }, gradientSeconds: gradientSeconds, pointSeconds: pointSeconds)
        if let plan {
            let evaluationDigest = try dataFilesDigest(evaluation.files)
            let provenance = ShardProvenance(
                weightsDigest: original.weightsDigest,
                dataDigest: "gradients: " + (usesGradient ? try dataFilesDigest(gradients.map { [(path: $0, records: gradientImages)] } ?? gradientData?.files ?? []) : "none")
                    + "; evaluation: " + evaluationDigest,
                model: original.path, data: result.gradientData.joined(separator: ",") + "; evaluation: " + result.evaluationData.joined(separator: ","),
                scaling: evaluation.scaling.description, tool: "gmtool \(gmtoolVersion)")
            try SweepShard.write(result, commands: outcomes.map(pruneCommand), plan: plan, provenance: provenance, grid: gridDescription(grid),
                                 to: output)
            let seconds = Date().timeIntervalSince(start)
            if json {
                try printJSON(SweepShardSummary(output: output, shard: plan.index, shards: plan.count, firstPoint: plan.images.lowerBound,
                                                endPoint: plan.images.upperBound, totalPoints: plan.totalImages, seconds: seconds))
                return
            }
            print("wrote \(output): shard \(plan.index)/\(plan.count), points \(plan.images.lowerBound)-\(plan.images.upperBound - 1) of "
                  + "\(grouped(plan.totalImages)), \(String(format: "%.2f", seconds)) s; write the sweep folder from the \(plan.count) shards with `gmtool merge`")
            return
        }
        try writeFolderAtomically(to: output, files: try result.files(), kind: "a previous sweep", isPrevious: isPreviousSweep)
        if json { try printJSON(result); return }
        print("model:     \(original.path)")
        if usesGradient { print("gradients: \(result.gradientData.joined(separator: ", ")) (\(grouped(gradientImages)) images, \(String(format: "%.2f", gradientSeconds)) s)") }
        print("evaluated: \(evaluation.sourceFiles.joined(separator: ", ")) (\(grouped(baseline.images)) images); unpruned top-1 \(percent(baseline.top1Accuracy)), \(percent(original.sparsity)) sparse")
        print("points:    \(outcomes.count) (\(grid.betas.count) beta x \(grid.gammas.count) gamma) in \(String(format: "%.2f", pointSeconds)) s")
        if let selected {
            let p = outcomes[selected]
            print("sparsest within \(String(format: "%g", maxDrop)) points: beta \(thresholdText(p.beta)), gamma \(thresholdText(p.gamma)): \(percent(p.sparsity)) sparse, top-1 \(percent(p.top1)) (\(String(format: "%+.2f", (p.top1 - baseline.top1Accuracy) * 100)) points), \(byteSize(p.smallerBytes)) of sparse kernels")
            print("reproduce: \(result.command ?? "")")
        } else {
            print("no point is within \(String(format: "%g", maxDrop)) points of the unpruned top-1")
        }
        print("wrote \(output) (sweep.csv, layers.csv, sweep.json, 4 charts, report.html)")
    }

    /// What a sweep shard's points depend on besides the model and data (`ShardFile.Header.grid`):
    /// shards merge only when this text is the same.
    func gridDescription(_ grid: (betas: [Float], gammas: [Float], points: [SweepPoint])) -> String {
        ["beta \(grid.betas.map(thresholdText).joined(separator: ","))", "gamma \(grid.gammas.map(thresholdText).joined(separator: ","))",
         "batch size \(dataOptions.batchSize)", "max drop \(maxDrop)", "include \(include.joined(separator: ","))",
         "exclude \(exclude.joined(separator: ","))", "skip depthwise \(skipDepthwise)"].joined(separator: "; ")
    }

    /// The `gmtool prune` command that makes the point's file: the same model, data, scaling,
    /// batch size (the gradient's sums depend on it) and layer selection.
    func pruneCommand(_ point: PointOutcome) -> String {
        var words = ["gmtool", "prune", checkpoint.model]
        if let config = checkpoint.config { words += ["--config", config] }
        words += ["--beta", thresholdText(point.beta), "--gamma", thresholdText(point.gamma)]
        let d = dataOptions
        var data: [String] = []
        if let gradients, point.gamma.isFinite { data += ["--gradients", gradients] }
        if !d.data.isEmpty && (point.gamma.isFinite || evalData.isEmpty) {
            data += ["--data"] + d.data
            if let split = d.split { data += ["--split", split.rawValue] }
        }
        if !evalData.isEmpty {
            data += ["--eval-data"] + evalData
            if let evalSplit { data += ["--eval-split", evalSplit.rawValue] }
        } else {
            data += ["--eval-same"]
        }
        if d.channelsFirst { data += ["--channels-first"] }
        if let limit = d.limit { data += ["--limit", "\(limit)"] }
        if d.scale != .unit { data += ["--scale", d.scale.rawValue] }
        if let mean = d.mean { data += ["--mean", mean] }
        if let std = d.std { data += ["--std", std] }
        if d.batchSize != 100 { data += ["--batch-size", "\(d.batchSize)"] }
        words += data
        for pattern in include { words += ["--include", pattern] }
        for pattern in exclude { words += ["--exclude", pattern] }
        if skipDepthwise { words.append("--skip-depthwise") }
        words += ["-o", "pruned.h5"]
        return words.map(shellQuoted).joined(separator: " ")
    }
}

/// What `sweep --shard --json` prints.
struct SweepShardSummary: Encodable {
    var output: String
    var shard: Int
    var shards: Int
    var firstPoint: Int
    var endPoint: Int
    var totalPoints: Int
    var seconds: Double

    enum CodingKeys: String, CodingKey {
        case output, shard, shards, firstPoint = "first_point", endPoint = "end_point", totalPoints = "total_points", seconds
    }
}

/// A word as a POSIX shell reads it back: as is when safe, else in single quotes.
func shellQuoted(_ word: String) -> String {
    let safe = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")
    if !word.isEmpty && word.allSatisfy({ safe.contains($0) }) { return word }
    return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

/// The sweep's line on stderr: points done and the best point so far (the sparsest within the
/// drop).
final class SweepProgress {
    let total: Int
    let baseline: Double
    let maxDrop: Double
    let enabled: Bool
    private var best: PointOutcome?

    init(total: Int, baseline: Double, maxDrop: Double, enabled: Bool) {
        self.total = total
        self.baseline = baseline
        self.maxDrop = maxDrop
        self.enabled = enabled
    }

    func update(_ done: Int, _ outcome: PointOutcome) {
        let candidates = (best.map { [$0] } ?? []) + [outcome]
        if let index = sparsestWithin(candidates, baseline: baseline, maxDrop: maxDrop) { best = candidates[index] }
        guard enabled else { return }
        let bestText = best.map { "best: beta \(thresholdText($0.beta)) gamma \(thresholdText($0.gamma)), \(percent($0.sparsity)) sparse, top-1 \(percent($0.top1))" }
            ?? "no point within the drop yet"
        FileHandle.standardError.write(Data("\r\u{1B}[Ksweep \(done)/\(total)  \(bestText)".utf8))
        if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
