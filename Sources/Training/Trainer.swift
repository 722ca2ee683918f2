import CIFAR
import Foundation
import ModelState
import KerasCheckpoint
import Engine
import Pruning

/// Zhu & Gupta's gradual magnitude pruning (GMP) with tfmot's `PolynomialDecay` schedule, counted
/// in epochs instead of steps: after epoch e with begin <= e <= end and (e - begin) % frequency ==
/// 0, every selected kernel is pruned by magnitude, on its own, to
///   s(e) = (initial - final) * (1 - p)^power + final,  p = min(1, max(0, (e - begin) / (end - begin)))
/// (tfmot's formula; tfmot evaluates it in float32, this in Double). Each step is tfmot's
/// `prune_low_magnitude` step (`targetsForTfmotSparsity`): the kernels tfmot's prune_registry
/// lists (no depthwise kernel), tfmot's count of kept weights. A kernel whose mask already
/// prunes more stays as it is: masks only lose bits.
public struct GradualSchedule: Sendable, Codable, Equatable {
    public var initialSparsity: Double
    public var finalSparsity: Double
    public var beginEpoch: Int
    public var endEpoch: Int
    public var frequency: Int
    public var power: Double
    /// Which step the run prunes with, saved so a run saved by an earlier gmtool, whose GMP also
    /// pruned depthwise kernels and pruned ceil(s n) of a kernel's n weights (no `rule` in its settings), is
    /// not resumed with another step.
    public var rule: String?
    public static let tfmotRule = "tfmot 0.7.5 prune_low_magnitude"

    public init(initialSparsity: Double = 0, finalSparsity: Double, beginEpoch: Int, endEpoch: Int, frequency: Int = 1, power: Double = 3) {
        self.initialSparsity = initialSparsity
        self.finalSparsity = finalSparsity
        self.beginEpoch = beginEpoch
        self.endEpoch = endEpoch
        self.frequency = frequency
        self.power = power
        self.rule = Self.tfmotRule
    }

    public func prunes(afterEpoch epoch: Int) -> Bool {
        epoch >= beginEpoch && epoch <= endEpoch && (epoch - beginEpoch) % frequency == 0
    }

    /// The sparsity every kernel is brought to after `epoch`.
    public func sparsity(afterEpoch epoch: Int) -> Double {
        // begin == end: one step straight to the final sparsity (tfmot would divide by zero).
        let p = endEpoch == beginEpoch ? 1 : min(1, max(0, Double(epoch - beginEpoch) / Double(endEpoch - beginEpoch)))
        return (initialSparsity - finalSparsity) * pow(1 - p, power) + finalSparsity
    }
}

/// Everything that defines a training run (saved in the checkpoint so `--resume` can check it).
public struct TrainingSettings: Sendable, Codable, Equatable {
    public var epochs: Int
    public var batchSize: Int
    public var seed: UInt64
    public var augment: Bool
    public var optimizer: OptimizerSettings
    /// Pruning every `delta` epochs (nil: a dense run).
    public var beta: Float?
    public var gamma: Float
    public var delta: Int
    public var include: [String]
    public var exclude: [String]
    public var skipDepthwise: Bool
    /// Images of the validation split used for each pruning gradient (all when nil).
    public var pruneImages: Int?
    /// Gradual magnitude pruning instead of the paper's rule (then `beta` is nil). Optional in
    /// the saved settings, so runs saved before it existed still resume.
    public var gradual: GradualSchedule?

    public init(epochs: Int, batchSize: Int, seed: UInt64, augment: Bool, optimizer: OptimizerSettings,
                beta: Float?, gamma: Float, delta: Int, include: [String] = [], exclude: [String] = [],
                skipDepthwise: Bool = false, pruneImages: Int? = nil, gradual: GradualSchedule? = nil) {
        self.epochs = epochs
        self.batchSize = batchSize
        self.seed = seed
        self.augment = augment
        self.optimizer = optimizer
        self.beta = beta
        self.gamma = gamma
        self.delta = delta
        self.include = include
        self.exclude = exclude
        self.skipDepthwise = skipDepthwise
        self.pruneImages = pruneImages
        self.gradual = gradual
    }

    /// The paper's schedule: prune after every epoch e (1-based) with e % delta == 0.
    /// With `gradual`, its schedule instead.
    public func prunes(afterEpoch epoch: Int) -> Bool {
        if let gradual { return gradual.prunes(afterEpoch: epoch) }
        return beta != nil && delta > 0 && epoch % delta == 0
    }
}

/// One epoch's line in the log.
public struct EpochRecord: Codable, Sendable {
    public var epoch: Int
    public var loss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double
    public var validationAccuracy: Double
    public var learningRate: Double
    public var prunedThisEpoch: Int
    public var sparsity: Double
    /// The whole epoch: training, pruning, validation, checkpoint.
    public var seconds: Double
    /// Training steps alone (forward, backward, optimizer, augmentation), in images per second.
    public var trainImagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case epoch, loss, trainAccuracy = "train_accuracy", validationLoss = "validation_loss"
        case validationAccuracy = "validation_accuracy", learningRate = "learning_rate"
        case prunedThisEpoch = "pruned_this_epoch", sparsity, seconds, trainImagesPerSecond = "train_images_per_second"
    }

    public static let csvHeaderText = "epoch,loss,train_accuracy,validation_loss,validation_accuracy,learning_rate,pruned_this_epoch,sparsity,seconds,train_images_per_second"
    public var csvLine: String {
        "\(epoch),\(loss),\(trainAccuracy),\(validationLoss),\(validationAccuracy),\(learningRate),\(prunedThisEpoch),\(sparsity),\(seconds),\(trainImagesPerSecond)"
    }
}

public struct TrainingError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private let stateGroup = "/gmtool_training"

/// Where the paper's pruning steps take dC/dw from when it is not computed by the run itself:
/// `folder/grads-epoch-<e>.h5` for the step after epoch e, a file `gmtool grad` (or `gmtool
/// merge` of its shards) wrote on the run's checkpoint of that epoch, with the run's scaling.
public struct PruningGradientFiles: Sendable {
    public var folder: String
    /// `InputScaling.description` of the validation images, which the file must record.
    public var scaling: String
    /// `dataFilesDigest` of the images the step takes dC/dw over, which the file must record.
    public var dataDigest: String

    public init(folder: String, scaling: String, dataDigest: String) {
        self.folder = folder
        self.scaling = scaling
        self.dataDigest = dataDigest
    }

    /// The file for the pruning step after `epoch` (1-based).
    public func path(afterEpoch epoch: Int) -> String {
        (folder as NSString).appendingPathComponent(PruningGradientFiles.fileName(afterEpoch: epoch))
    }

    public static func fileName(afterEpoch epoch: Int) -> String { "grads-epoch-\(epoch).h5" }
}

/// A pruning step's gradient file is not there yet: the run saved its checkpoint with the epoch
/// trained and not yet pruned (`--resume` continues from it) and stopped.
public struct PruningGradientsNeeded: Error, Sendable {
    public var epoch: Int
    /// The file the step reads.
    public var file: String
    /// The checkpoint just written: the weights the gradients must be taken on.
    public var checkpoint: String
    /// The images of the validation source the step uses (`--prune-images`, else all).
    public var images: Int
}

/// An epoch whose training steps are done and whose pruning step waits for its gradient file:
/// saved with the checkpoint, so a resumed run prunes, evaluates and logs it as the
/// uninterrupted run did.
struct TrainedEpoch: Codable, Equatable {
    var epoch: Int
    var loss: Double
    var trainAccuracy: Double
    var learningRate: Double
    /// Seconds spent on the epoch by the runs that stopped before its pruning step (0 while
    /// it runs uninterrupted), and its training steps' images per second.
    var seconds: Double
    var trainImagesPerSecond: Double

    enum CodingKeys: String, CodingKey {
        case epoch, loss, trainAccuracy = "train_accuracy", learningRate = "learning_rate", seconds
        case trainImagesPerSecond = "train_images_per_second"
    }
}

/// Trains a model with the paper's pruning schedule, writing a Keras checkpoint with masks and
/// the full training state (optimizer slots, epoch, log) after every epoch. The model (through
/// `network.model`) holds the weights, masks and slots; pruning is the same `prune` step that
/// `gmtool prune` runs.
public final class Trainer {
    public let settings: TrainingSettings
    let source: Checkpoint
    let network: Network
    let model: Model
    let training: TrainingImageSource
    let validation: ImageBatchSource
    let optimizer: Optimizer
    public private(set) var history: [EpochRecord] = []
    let trainable: [Parameter]
    /// The last pruning step of this run, for the masks' attributes.
    private var lastPruning: PruningReport?
    /// The paper's pruning steps read dC/dw from these files instead of computing it (nil:
    /// computed). Not a setting of the run: both give the same bits.
    let gradientFiles: PruningGradientFiles?
    /// An epoch trained whose pruning step waits for its gradient file (saved, and restored).
    private var pending: TrainedEpoch?

    /// The batch size of the pruning steps' gradient passes over the validation images (what
    /// `gmtool grad --batch-size` must be given to compute the same bits).
    public static let pruningBatchSize = 200

    /// `network.model` is where the run starts from (or, to resume, the run's own output).
    public init(network: Network, training: TrainingImageSource, validation: ImageBatchSource,
                settings: TrainingSettings, resume: Bool, gradientFiles: PruningGradientFiles? = nil) throws {
        if let layer = network.trainingOnlyLayers.first {
            throw CheckpointError(file: network.checkpoint.path,
                                  problem: "layer \(layer), and gmtool train does not apply it; train a model without it (gmtool's --augment does pad/crop/flip) or train with Keras")
        }
        self.network = network
        model = network.model
        source = network.model.checkpoint
        self.training = training
        self.validation = validation
        self.settings = settings
        optimizer = Optimizer(settings: settings.optimizer)
        trainable = network.trainableParameters
        self.gradientFiles = gradientFiles
        if resume { try restoreState() }
    }

    /// Picks up the run saved in `source`. Every part of the state must be there and decode: a
    /// missing or damaged piece is an error naming it, because guessing (a fresh optimizer, an
    /// empty log) would continue from trained weights as if nothing had been lost.
    private func restoreState() throws {
        let file = source.path
        guard source.hasExtraGroup(stateGroup) else {
            throw TrainingError("\(file): holds no gmtool training state to resume from (no \(stateGroup) group)")
        }
        func attribute(_ name: String) throws -> String {
            guard let value = try source.extraAttribute(group: stateGroup, name) else {
                throw TrainingError("\(file): \(stateGroup) attribute \(name) is missing; resume needs the complete training state")
            }
            return value
        }
        func damaged(_ name: String) -> TrainingError {
            TrainingError("\(file): \(stateGroup) attribute \(name) cannot be decoded; the training state is damaged")
        }
        let decoder = JSONDecoder()
        decoder.nonConformingFloatDecodingStrategy = .convertFromString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        let saved = try attribute("settings")
        guard let previous = try? decoder.decode(TrainingSettings.self, from: Data(saved.utf8)) else { throw damaged("settings") }  // reported as damage to the attribute
        if let gradual = previous.gradual, gradual.rule != GradualSchedule.tfmotRule {
            throw TrainingError("\(file): was trained by an earlier gmtool's GMP, which also pruned depthwise kernels; this gmtool prunes as tfmot does and cannot continue it (start the run again)")
        }
        guard previous == settings else {
            throw TrainingError("\(file): was trained with other settings; resume with the same command line (\(saved))")
        }
        guard let iterations = Int(try attribute("iterations")), iterations >= 0 else { throw damaged("iterations") }
        let savedHistory = try attribute("history")
        guard let log = try? decoder.decode([EpochRecord].self, from: Data(savedHistory.utf8)) else { throw damaged("history") }  // reported as damage to the attribute
        guard let epochs = Int(try attribute("completed_epochs")) else { throw damaged("completed_epochs") }
        guard epochs == log.count else {
            throw TrainingError("\(file): \(stateGroup) attribute history lists \(log.count) epoch(s) but completed_epochs is \(epochs); the training state is damaged")
        }
        // Slots exist for every trainable weight once a step has been taken.
        var restored: [(Parameter, Int, [Float])] = []
        for parameter in trainable where iterations > 0 {
            let key = parameter.weight.datasetPath
            for (slot, used) in [(0, optimizer.usesFirstSlot), (1, optimizer.usesSecondSlot)] where used {
                let path = "\(stateGroup)/slot\(slot + 1)\(key)"
                guard let values = try source.extraDataset(path) else {
                    throw TrainingError("\(file): \(path) is missing; resume needs the optimizer state of every trainable weight")
                }
                guard values.count == parameter.weight.elementCount else {
                    throw TrainingError("\(file): \(path) holds \(values.count) values, the weight has \(parameter.weight.elementCount); the training state is damaged")
                }
                restored.append((parameter, slot, values))
            }
        }
        // An epoch trained and saved before its pruning step (absent otherwise).
        var trained: TrainedEpoch?
        if let text = try source.extraAttribute(group: stateGroup, "trained_epoch"), !text.isEmpty {
            guard let value = try? decoder.decode(TrainedEpoch.self, from: Data(text.utf8)) else { throw damaged("trained_epoch") }  // reported as damage to the attribute
            guard value.epoch == epochs + 1, settings.prunes(afterEpoch: value.epoch) else {
                throw TrainingError("\(file): \(stateGroup) attribute trained_epoch names epoch \(value.epoch) after \(epochs) completed epoch(s), which is not a pruning epoch waiting for its step; the training state is damaged")
            }
            trained = value
        }
        // Only once everything has been read and checked.
        for (parameter, slot, values) in restored { _ = parameter.slot(slot).update(fromContentsOf: values) }
        optimizer.restore(iterations: iterations)
        history = log
        pending = trained
    }

    /// The epoch whose training steps are done and whose pruning step waits for its gradient
    /// file, in a run resumed from such a checkpoint (nil otherwise).
    public var trainedEpochWaitingForPruning: Int? { pending?.epoch }

    public var completedEpochs: Int { history.count }

    private var steps: Int { (training.count + settings.batchSize - 1) / settings.batchSize }

    /// Runs the remaining epochs. `progress(epoch, done, total)` after each batch; `epochDone`
    /// after each epoch's checkpoint is written.
    /// With `gradientFiles`, a pruning step whose file is absent saves the checkpoint with the
    /// epoch trained and not yet pruned, and throws `PruningGradientsNeeded`.
    public func run(output: String, progress: (Int, Int, Int) -> Void = { _, _, _ in },
                    epochDone: (EpochRecord) throws -> Void = { _ in }, log: (String) -> Void = { _ in }) throws {
        let batch = settings.batchSize
        try network.checkMemory(batch: min(batch, training.count), gradients: true)
        var images = [Float](repeating: 0, count: min(batch, training.count) * training.imageFloats)
        var labels = [Int32](repeating: 0, count: min(batch, training.count))
        while completedEpochs < settings.epochs {
            let epoch = completedEpochs + 1
            let start = Date()
            let trained: TrainedEpoch
            if let pending, pending.epoch == epoch {
                trained = pending  // trained before the run stopped for the pruning step's gradients
            } else {
                trained = try trainEpoch(epoch, images: &images, labels: &labels, progress: progress)
            }
            var pruned = 0
            if settings.prunes(afterEpoch: epoch) {
                if let gradientFiles, settings.gradual == nil, settings.beta != nil, settings.gamma.isFinite,
                   !FileManager.default.fileExists(atPath: gradientFiles.path(afterEpoch: epoch)) {
                    // The checkpoint of the weights the step needs dC/dw of; a resumed run continues here.
                    pending = trained
                    pending!.seconds = trained.seconds + Date().timeIntervalSince(start)
                    try save(to: output)
                    throw PruningGradientsNeeded(epoch: epoch, file: gradientFiles.path(afterEpoch: epoch), checkpoint: output,
                                                 images: pruningImages)
                }
                pruned = try pruneNow(afterEpoch: epoch, log: log)
            }
            let evaluation = try network.evaluate(validation, batchSize: 200)
            let record = EpochRecord(
                epoch: epoch, loss: trained.loss, trainAccuracy: trained.trainAccuracy, validationLoss: evaluation.meanLoss,
                validationAccuracy: evaluation.top1Accuracy, learningRate: trained.learningRate, prunedThisEpoch: pruned,
                sparsity: sparsity(), seconds: trained.seconds + Date().timeIntervalSince(start),
                trainImagesPerSecond: trained.trainImagesPerSecond)
            pending = nil
            history.append(record)
            try save(to: output)
            try epochDone(record)
        }
    }

    /// Epoch `epoch`'s training steps.
    private func trainEpoch(_ epoch: Int, images: inout [Float], labels: inout [Int32],
                            progress: (Int, Int, Int) -> Void) throws -> TrainedEpoch {
        let batch = settings.batchSize
        let start = Date()
        // The epoch's order and augmentation depend only on (seed, epoch): a resumed run
        // draws exactly what the uninterrupted one drew.
        var random = SplitMix64(seed: settings.seed &+ UInt64(epoch) &* 0x2545_F491_4F6C_DD1D)
        var order = Array(0..<training.count)
        order.shuffle(using: &random)
        var totals = PassTotals()
        let learningRate = optimizer.currentLearningRate
        for (step, offset) in stride(from: 0, to: order.count, by: batch).enumerated() {
            let indices = order[offset..<min(offset + batch, order.count)]
            images.withUnsafeMutableBufferPointer { x in
                labels.withUnsafeMutableBufferPointer { y in
                    training.fill(indices: indices, images: x.baseAddress!, labels: y.baseAddress!, augment: settings.augment,
                                  random: &random)
                }
            }
            let seed = settings.seed ^ (UInt64(epoch) << 40) ^ UInt64(step)
            let result = images.withUnsafeBufferPointer { x in
                labels.withUnsafeBufferPointer { y in
                    network.pass(images: x.baseAddress!, labels: y.baseAddress!, count: indices.count,
                                 accumulateGradients: true, trainingSeed: seed)
                }
            }
            totals = totals + result
            network.withMeanGradients(imageCount: indices.count) { gradients in
                optimizer.step(trainable, gradients: gradients)
            }
            progress(epoch, min(offset + batch, order.count), order.count)
        }
        let trainSeconds = Date().timeIntervalSince(start)
        return TrainedEpoch(epoch: epoch, loss: totals.meanLoss, trainAccuracy: totals.top1Accuracy, learningRate: learningRate,
                            seconds: 0, trainImagesPerSecond: Double(order.count) / max(trainSeconds, 1e-9))
    }

    /// The validation images each pruning gradient is taken over.
    private var pruningImages: Int { min(settings.pruneImages ?? validation.count, validation.count) }

    /// The paper's step with dC/dw over the validation split (inference-mode BatchNorm, as
    /// `gmtool prune`).
    private func pruneNow(afterEpoch epoch: Int, log: (String) -> Void) throws -> Int {
        var pruningSettings = PruningSettings(beta: settings.beta ?? 0, gamma: settings.gamma)
        pruningSettings.include = settings.include
        pruningSettings.exclude = settings.exclude
        pruningSettings.skipDepthwise = settings.skipDepthwise
        if let gradual = settings.gradual {
            // GMP as tfmot's prune_low_magnitude: magnitude only, each kernel to the schedule's
            // sparsity on its own by tfmot's count, and only the kernels tfmot's prune_registry
            // lists (Conv, Dense and SeparableConv2D pointwise kernels; no depthwise kernel).
            pruningSettings.gamma = .infinity
            pruningSettings.skipDepthwise = true
            let level = gradual.sparsity(afterEpoch: epoch)
            let targets = try targetsForTfmotSparsity(model, targets: try pruningSettings.targets(in: source), sparsity: level)
            let report = try prune(model, targets: targets, gradients: [:])
            lastPruning = report
            log("GMP after epoch \(epoch): every kernel but the depthwise ones to sparsity \(String(format: "%.4f", level)), pruned \(report.prunedNow) weights; sparsity now \(String(format: "%.2f%%", sparsity() * 100))")
            return report.prunedNow
        }
        guard let beta = settings.beta else { return 0 }
        let targets = try pruningSettings.targets(in: source)
        var gradients: [CheckpointWeight: [Float]] = [:]
        if settings.gamma.isFinite, let gradientFiles {
            gradients = try readGradientFile(gradientFiles, afterEpoch: epoch, weights: targets.map(\.weight))
            log("pruning after epoch \(epoch) with the gradients in \(gradientFiles.path(afterEpoch: epoch))")
        } else if settings.gamma.isFinite {
            let data = LimitedSource(base: validation, limit: pruningImages)
            for (weight, values) in try network.gradients(data, batchSize: Trainer.pruningBatchSize).gradients { gradients[weight] = values }
        }
        let report = try prune(model, targets: targets, gradients: gradients)
        lastPruning = report
        log("pruned \(report.prunedNow) weights (beta \(beta), gamma \(settings.gamma)); sparsity now \(String(format: "%.2f%%", sparsity() * 100))")
        return report.prunedNow
    }

    /// dC/dw of `weights` from the step's gradient file, which must have been taken on exactly
    /// the model's weights now, over the same images (file names, counts, sizes and contents) and
    /// with the same scaling as the step uses.
    private func readGradientFile(_ files: PruningGradientFiles, afterEpoch epoch: Int, weights: [CheckpointWeight]) throws -> [CheckpointWeight: [Float]] {
        let path = files.path(afterEpoch: epoch)
        let gradients = try GradientFile.read(path, for: weights, weightsDigest: model.weightsDigest)
        let images = GradientFile.attribute(path, "images").flatMap(Double.init).map(Int.init)
        guard images == pruningImages else {
            throw TrainingError("\(path): holds dC/dw over \(images.map(String.init) ?? "an unknown number of") images; the pruning step after epoch \(epoch) takes it over \(pruningImages) validation images")
        }
        let scaling = GradientFile.attribute(path, "scaling")
        guard scaling == files.scaling else {
            throw TrainingError("\(path): was taken with scaling \(scaling ?? "(none recorded)"); this run scales its images \(files.scaling)")
        }
        let data = GradientFile.attribute(path, "data_digest")
        guard data == files.dataDigest else {
            throw TrainingError("\(path): was taken on other images (\(data ?? "no data digest recorded")); the pruning step after epoch \(epoch) takes dC/dw over \(files.dataDigest)")
        }
        return gradients
    }

    public func sparsity() -> Double { model.sparsity }

    /// Writes the model (weights, masks) and the training state over `output`, atomically.
    public func save(to output: String) throws {
        var extra = CheckpointEdits()
        var pruning: [String: String] = [:]
        if model.parameters.contains(where: { $0.mask != nil }), let gradual = settings.gradual {
            pruning = [
                "rule": "gradual magnitude pruning as tfmot 0.7.5's prune_low_magnitude: every kernel but the depthwise ones keeps its max(round(n (1 - s(e))), 1) largest |w| (and ties), s(e) = (initial - final) * (1 - p)^power + final, p = (e - begin) / (end - begin), every frequency epochs",
                "initial_sparsity": String(gradual.initialSparsity), "final_sparsity": String(gradual.finalSparsity),
                "begin_epoch": String(gradual.beginEpoch), "end_epoch": String(gradual.endEpoch), "frequency": String(gradual.frequency),
                "power": String(gradual.power),
            ]
        } else if model.parameters.contains(where: { $0.mask != nil }), let beta = settings.beta {
            pruning = [
                "rule": "w = 0 and mask = 0 where |w| < beta and |dC/dw| < gamma and mask != 0, every delta epochs during training",
                "beta": String(beta), "gamma": settings.gamma.isFinite ? String(settings.gamma) : "inf", "delta": String(settings.delta),
                "gradient_data": validation.sourceFiles.joined(separator: ","),
            ]
        }
        for parameter in trainable {
            let key = parameter.weight.datasetPath
            if let m = parameter.slotValues(0) { extra.extraDatasets.append(("\(stateGroup)/slot1\(key)", parameter.weight.shape, m)) }
            if let v = parameter.slotValues(1) { extra.extraDatasets.append(("\(stateGroup)/slot2\(key)", parameter.weight.shape, v)) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        extra.extraAttributes[stateGroup] = [
            "settings": String(decoding: try encoder.encode(settings), as: UTF8.self),
            "history": String(decoding: try encoder.encode(history), as: UTF8.self),
            "iterations": String(optimizer.iterations), "completed_epochs": String(completedEpochs),
        ]
        // Always written ("" when no epoch waits), so it replaces the one a paused run wrote.
        extra.extraAttributes[stateGroup]!["trained_epoch"] = try pending.map { String(decoding: try encoder.encode($0), as: UTF8.self) } ?? ""
        try model.save(to: output, pruning: pruning, kernelAttributes: lastPruning?.maskAttributes ?? [:], extra: extra)
    }
}
