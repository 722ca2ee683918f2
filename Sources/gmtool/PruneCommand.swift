import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine
import Pruning

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Prune with the paper's rule: zero w where |w| < beta and |g| < gamma.",
        discussion: """
            g = dC/dw over held-out images (default: the validation split, data_batch_5). The rule \
            applies to every Conv2D, DepthwiseConv2D, SeparableConv2D and Dense kernel; biases and \
            BatchNorm parameters are never pruned. Masks are stored in the output's /gmtool_masks \
            group (Keras ignores it): a checkpoint that already has masks is pruned further, and \
            weights whose bit is 0 stay exactly 0. Without --gamma the rule is magnitude-only and \
            needs no data.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(name: .long, parsing: .unconditional, help: "Magnitude threshold: prune where |w| < beta.")
    var beta: Float?

    @Option(name: .long, parsing: .unconditional, help: "Gradient threshold: prune only where |dC/dw| < gamma (default: inf, magnitude only).")
    var gamma: Float = .infinity

    @Option(name: .long, parsing: .unconditional, help: "Find the beta that makes this fraction of all parameters zero (0 < S < 1), for the given gamma.")
    var targetSparsity: Double?

    @Flag(name: .long, help: "With --target-sparsity: reach the sparsity in every selected kernel (one beta per kernel) instead of over the whole model.")
    var perLayer = false

    @Option(name: [.short, .long], help: "Output checkpoint (same layout as the input).")
    var output: String?

    @Flag(name: .long, help: "Allow the output to be the input file (it is replaced atomically).")
    var inPlace = false

    @Flag(name: .long, help: "Report what would be pruned; write nothing.")
    var dryRun = false

    @Option(name: .long, help: "Reuse gradients written by `gmtool grad` instead of computing them.")
    var gradients: String?

    @Option(name: .long, help: "Prune only layers matching this glob pattern (repeatable).")
    var include: [String] = []

    @Option(name: .long, help: "Never prune layers matching this glob pattern (repeatable), e.g. conv1 or 'conv_preds'.")
    var exclude: [String] = []

    @Option(name: .long, help: "Per-layer beta, PATTERN=VALUE (repeatable; first match wins).")
    var layerBeta: [String] = []

    @Option(name: .long, help: "Per-layer gamma, PATTERN=VALUE (repeatable; first match wins).")
    var layerGamma: [String] = []

    @Option(name: .long, help: "Per-layer sparsity, PATTERN=SPARSITY (0 <= SPARSITY < 1; repeatable; first match wins): each matching kernel gets the beta that prunes it alone to that sparsity (`gmtool sensitivity` suggests these). Other kernels use --beta, or stay as they are without it.")
    var layerTarget: [String] = []

    @Flag(name: .long, help: "Leave DepthwiseConv2D kernels (and SeparableConv2D depthwise kernels) unpruned.")
    var skipDepthwise = false

    @OptionGroup var dataOptions: DataOptions

    @Option(name: .long, parsing: .upToNextOption, help: "Evaluate accuracy before and after on this data (the forms --data takes).")
    var evalData: [String] = []

    @Option(name: .long, help: "Split of --eval-data to evaluate on (default: test).")
    var evalSplit: CIFARDataset.Split?

    @Flag(name: .long, help: "Evaluate accuracy before and after on the gradient images themselves.")
    var evalSame = false

    @Flag(name: .long, help: "Print JSON instead of text.")
    var json = false

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if let beta, !(beta >= 0) || !beta.isFinite { throw ValidationError("--beta must be a finite number >= 0") }
        if gamma.isNaN || gamma < 0 { throw ValidationError("--gamma must be a number >= 0") }
        if let targetSparsity, !(targetSparsity > 0 && targetSparsity < 1) {
            throw ValidationError("--target-sparsity must be between 0 and 1 (exclusive)")
        }
        if beta == nil && targetSparsity == nil && layerTarget.isEmpty { throw ValidationError("give --beta, --target-sparsity or --layer-target") }
        if targetSparsity != nil && !layerTarget.isEmpty { throw ValidationError("--layer-target cannot be combined with --target-sparsity") }
        _ = try parseLayerTargets()
        if beta != nil && targetSparsity != nil { throw ValidationError("give --beta or --target-sparsity, not both") }
        if targetSparsity != nil && !layerBeta.isEmpty { throw ValidationError("--layer-beta cannot be combined with --target-sparsity") }
        if perLayer && targetSparsity == nil { throw ValidationError("--per-layer needs --target-sparsity") }
        // Options that would do nothing in this combination are refused: the user meant something else.
        let layerGammas = try parseOverrides(layerGamma, flag: "--layer-gamma")
        let usesGradient = gamma.isFinite || layerGammas.contains { $0.value.isFinite }
        let hasData = !dataOptions.data.isEmpty
        if let gradients {
            if !usesGradient { throw ValidationError("--gradients \(gradients) is used only with --gamma (or --layer-gamma); without it the rule is magnitude-only") }
            if hasData && !evalSame { throw ValidationError("--data is not used with --gradients (the gradients come from \(gradients)); for accuracy give --eval-data") }
            if evalSame { throw ValidationError("--eval-same evaluates on the gradient images, which --gradients does not have; give --eval-data") }
        } else if usesGradient && !hasData {
            throw ValidationError("--gamma needs --data (the images for dC/dw) or --gradients (a `gmtool grad` file)")
        }
        if evalSame && !hasData { throw ValidationError("--eval-same needs --data") }
        if evalSame && !evalData.isEmpty { throw ValidationError("give --eval-data or --eval-same, not both") }
        if hasData && !usesGradient && !evalSame {
            throw ValidationError("--data is used only with --gamma (the images for dC/dw) or --eval-same; for accuracy give --eval-data")
        }
        if dataOptions.split != nil && !hasData { throw ValidationError("--split selects the --data images; it is used only with --gamma and --data") }
        if evalSplit != nil && evalData.isEmpty { throw ValidationError("--eval-split is used only with --eval-data") }
        if !hasData && evalData.isEmpty {
            if dataOptions.limit != nil { throw ValidationError("--limit is used only with --data or --eval-data") }
        }
        if dryRun {
            if output != nil { throw ValidationError("--dry-run writes nothing; drop -o (or drop --dry-run)") }
            if inPlace { throw ValidationError("--in-place is used only with -o MODEL") }
        } else {
            guard let output else { throw ValidationError("give the output file with -o (or --dry-run, or -o MODEL --in-place)") }
            let same = samePath(output, checkpoint.model)
            if same && !inPlace { throw ValidationError("the output is the input file; add --in-place to replace it") }
            if !same && inPlace { throw ValidationError("--in-place is used only when -o is the input file") }
        }
        _ = try parseOverrides(layerBeta, flag: "--layer-beta")
    }

    private func parseLayerTargets() throws -> [(pattern: String, value: Double)] {
        try layerTarget.map { item in
            guard let equals = item.lastIndex(of: "="), let value = Double(item[item.index(after: equals)...]), value >= 0, value < 1 else {
                throw ValidationError("--layer-target takes PATTERN=SPARSITY with 0 <= SPARSITY < 1, got '\(item)'")
            }
            return (String(item[..<equals]), value)
        }
    }

    private func parseOverrides(_ items: [String], flag: String) throws -> [(pattern: String, value: Float)] {
        try items.map { item in
            guard let equals = item.lastIndex(of: "="), let value = Float(item[item.index(after: equals)...]),
                  value >= 0, !value.isNaN else {
                throw ValidationError("\(flag) takes PATTERN=VALUE with VALUE >= 0, got '\(item)'")
            }
            return (String(item[..<equals]), value)
        }
    }

    func run() throws {
        if let output, !dryRun { try checkOutput(output) }
        let model = try checkpoint.openModel()
        var settings = PruningSettings(beta: beta ?? 0, gamma: gamma)
        settings.include = include
        settings.exclude = exclude
        settings.layerBeta = try parseOverrides(layerBeta, flag: "--layer-beta")
        settings.layerGamma = try parseOverrides(layerGamma, flag: "--layer-gamma")
        settings.layerTarget = try parseLayerTargets()
        settings.skipDepthwise = skipDepthwise
        var targets = try settings.targets(in: model.checkpoint)

        var log = [String]()
        func say(_ line: String) { if json { log.append(line) } else { FileHandle.standardError.write(Data("\(line)\n".utf8)) } }
        let usesGradient = targets.contains { $0.gamma.isFinite }
        let needsNetwork = usesGradient && gradients == nil || !evalData.isEmpty || evalSame
        let gradientData = usesGradient && gradients == nil || evalSame ? try dataOptions.dataset(defaultSplit: .validation) : nil
        var evaluation = evalSame ? gradientData : nil
        if !evalData.isEmpty { evaluation = try dataOptions.dataset(paths: evalData, split: evalSplit ?? .test) }
        let network = needsNetwork ? try dataOptions.network(model, for: gradientData ?? evaluation) : nil
        if let gradientData { try dataOptions.check(network!, gradientData) }
        if let evaluation { try dataOptions.check(network!, evaluation) }

        // 1. dC/dw for the selected kernels: from a `gmtool grad` file, or a pass over the data.
        var gradientSource = "none (gamma = inf: magnitude only)", gradientImages = 0
        var byWeight: [CheckpointWeight: [Float]] = [:]
        if usesGradient, let gradients {
            byWeight = try GradientFile.read(gradients, for: targets.map(\.weight), weightsDigest: model.weightsDigest)
            gradientSource = gradients
            gradientImages = Int(Double(GradientFile.attribute(gradients, "images") ?? "") ?? 0)
        } else if usesGradient, let network, let gradientData {
            let split = dataOptions.split ?? .validation
            say("gradients: \(gradientData.sourceFiles.joined(separator: ", ")) (split \(split.rawValue)\(dataOptions.split == nil ? ", the default" : ""), \(gradientData.count) images, scaling \(gradientData.scaling))")
            let bar = ProgressBar(total: gradientData.count, label: "gradients", quiet: quiet || json)
            let report = try network.gradients(gradientData, batchSize: dataOptions.batchSize, progress: bar.update)
            byWeight = Dictionary(uniqueKeysWithValues: report.gradients.map { ($0.weight, $0.values) })
            gradientSource = gradientData.sourceFiles.joined(separator: ",")
            gradientImages = report.images
        }
        // 2. The thresholds: as given, or chosen for the target sparsity.
        if let targetSparsity {
            targets = try targetsForSparsity(model, targets: targets, gradients: byWeight, sparsity: targetSparsity, perKernel: perLayer)
            say(perLayer ? "target sparsity \(targetSparsity) in every kernel: chose one beta per kernel (see the table)"
                         : "target sparsity \(targetSparsity): chose beta = \(targets[0].beta)")
        }
        if !settings.layerTarget.isEmpty {
            targets = try targetsForLayerSparsity(model, targets: targets, gradients: byWeight, layerTargets: settings.layerTarget)
            say("--layer-target: chose one beta per matching kernel (see the table)")
        }
        let nonzeroBefore = model.nonzeroParameters
        let before = try evaluation.map { data in
            try network!.evaluate(data, batchSize: dataOptions.batchSize, progress: ProgressBar(total: data.count, label: "eval before", quiet: quiet || json).update)
        }
        // 3. The paper's step, on the model in memory.
        let report = try prune(model, targets: targets, gradients: byWeight)
        for (_, kernel) in report.kernels where kernel.parameters > 0 && kernel.nonzeroAfter == 0 {
            say("warning: \(kernel.layer) loses all of its \(kernel.role) weights")
        }
        // 4. Accuracy after, from the same network (it refolds what the pruning changed).
        let after = try evaluation.map { data in
            try network!.evaluate(data, batchSize: dataOptions.batchSize, progress: ProgressBar(total: data.count, label: "eval after", quiet: quiet || json).update)
        }
        let globalBeta: Float? = perLayer || !layerTarget.isEmpty ? nil : (targetSparsity != nil ? targets[0].beta : settings.beta)
        let summary = PruneSummary(
            model: model.path, output: dryRun ? nil : output, dryRun: dryRun, beta: globalBeta, gamma: gamma,
            gradients: gradientSource, gradientImages: gradientImages, layers: report.kernels.map(\.result),
            totalParameters: model.totalParameters, nonzeroBefore: nonzeroBefore, nonzeroAfter: model.nonzeroParameters,
            prunedNow: report.prunedNow, accuracyBefore: before?.top1Accuracy, accuracyAfter: after?.top1Accuracy,
            lossBefore: before?.meanLoss, lossAfter: after?.meanLoss, evaluationData: evaluation?.sourceFiles, messages: log)
        // 5. The pruned model, with how it was pruned on the mask group and on every mask.
        if !dryRun, let output {
            try model.save(to: output, pruning: [
                "rule": "w = 0 and mask = 0 where |w| < beta and |dC/dw| < gamma and mask != 0",
                "beta": globalBeta.map { String($0) } ?? "per kernel", "gamma": gamma.isFinite ? String(gamma) : "inf",
                "layer_beta": layerBeta.joined(separator: ","), "layer_gamma": layerGamma.joined(separator: ","),
                "target_sparsity": targetSparsity.map { String($0) } ?? "", "layer_target": layerTarget.joined(separator: ","),
                "include": include.joined(separator: ","), "exclude": exclude.joined(separator: ","),
                "skip_depthwise": String(skipDepthwise), "gradient_data": gradientSource,
                "gradient_images": String(gradientImages), "scaling": gradientData?.scaling.description ?? "",
                "tool": "gmtool \(gmtoolVersion)", "source": model.path,
            ], kernelAttributes: report.maskAttributes)
        }
        if json { try printJSON(summary) } else { print(render(summary)) }
    }

    private func render(_ s: PruneSummary) -> String {
        var table = TextTable(headers: ["layer", "weight", "params", "nonzero before", "pruned now", "nonzero after", "sparsity", "beta", "gamma"],
                              rightAligned: [2, 3, 4, 5, 6, 7, 8])
        for r in s.layers {
            table.rows.append([r.layer, r.role, grouped(r.parameters), grouped(r.nonzeroBefore), grouped(r.prunedNow),
                               grouped(r.nonzeroAfter), percent(r.sparsity, digits: 1), "\(r.beta)", "\(r.gamma)"])
        }
        var lines = [table.render(), ""]
        lines.append("beta \(s.beta.map { "\($0)" } ?? "per kernel"), gamma \(s.gamma); gradients: \(s.gradients)\(s.gradientImages > 0 ? " (\(grouped(s.gradientImages)) images)" : "")")
        lines.append("pruned now:        \(grouped(s.prunedNow)) weights in \(s.layers.count) kernels")
        lines.append("non-zero:          \(grouped(s.nonzeroBefore)) -> \(grouped(s.nonzeroAfter)) of \(grouped(s.totalParameters)) parameters")
        lines.append("sparsity:          \(percent(s.sparsityBefore)) -> \(percent(s.sparsityAfter)) (\(s.nonzeroAfter == 0 ? "no non-zeros left" : String(format: "%.2fx fewer non-zeros than parameters", Double(s.totalParameters) / Double(s.nonzeroAfter))))")
        if let a = s.accuracyBefore, let b = s.accuracyAfter {
            lines.append("top-1 accuracy:    \(percent(a)) -> \(percent(b)) (\(String(format: "%+.2f", (b - a) * 100)) points) on \(s.evaluationData?.joined(separator: ", ") ?? "")")
        }
        lines.append(s.dryRun ? "dry run: nothing written" : "wrote \(s.output ?? "")")
        return lines.joined(separator: "\n")
    }
}

struct PruneSummary: Encodable {
    var model: String
    var output: String?
    var dryRun: Bool
    /// nil with --target-sparsity --per-layer: each kernel has its own (the table).
    var beta: Float?
    var gamma: Float
    var gradients: String
    var gradientImages: Int
    var layers: [WeightPruning]
    var totalParameters: Int
    var nonzeroBefore: Int
    var nonzeroAfter: Int
    var prunedNow: Int
    var accuracyBefore: Double?
    var accuracyAfter: Double?
    var lossBefore: Double?
    var lossAfter: Double?
    var evaluationData: [String]?
    var messages: [String]

    var sparsityBefore: Double { 1 - Double(nonzeroBefore) / Double(max(1, totalParameters)) }
    var sparsityAfter: Double { 1 - Double(nonzeroAfter) / Double(max(1, totalParameters)) }

    enum CodingKeys: String, CodingKey {
        case model, output, dryRun = "dry_run", beta, gamma, gammaIsInfinite = "gamma_is_infinite", gradients, gradientImages = "gradient_images", layers
        case totalParameters = "total_parameters", nonzeroBefore = "nonzero_before", nonzeroAfter = "nonzero_after"
        case prunedNow = "pruned_now", accuracyBefore = "accuracy_before", accuracyAfter = "accuracy_after"
        case lossBefore = "loss_before", lossAfter = "loss_after", evaluationData = "evaluation_data", messages
        case sparsityBefore = "sparsity_before", sparsityAfter = "sparsity_after"
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(model, forKey: .model)
        try c.encodeIfPresent(output, forKey: .output)
        try c.encode(dryRun, forKey: .dryRun)
        try c.encode(beta, forKey: .beta)  // null: one beta per kernel
        try encodeGamma(gamma, in: &c, value: .gamma, flag: .gammaIsInfinite)
        try c.encode(gradients, forKey: .gradients)
        try c.encode(gradientImages, forKey: .gradientImages)
        try c.encode(layers, forKey: .layers)
        try c.encode(totalParameters, forKey: .totalParameters)
        try c.encode(nonzeroBefore, forKey: .nonzeroBefore)
        try c.encode(nonzeroAfter, forKey: .nonzeroAfter)
        try c.encode(prunedNow, forKey: .prunedNow)
        try c.encode(sparsityBefore, forKey: .sparsityBefore)
        try c.encode(sparsityAfter, forKey: .sparsityAfter)
        try c.encodeIfPresent(accuracyBefore, forKey: .accuracyBefore)
        try c.encodeIfPresent(accuracyAfter, forKey: .accuracyAfter)
        try c.encodeIfPresent(lossBefore, forKey: .lossBefore)
        try c.encodeIfPresent(lossAfter, forKey: .lossAfter)
        try c.encodeIfPresent(evaluationData, forKey: .evaluationData)
        try c.encode(messages, forKey: .messages)
    }
}
