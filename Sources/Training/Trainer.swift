import CIFAR
import Foundation
import KerasCheckpoint
import Network
import Pruning

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

    public init(epochs: Int, batchSize: Int, seed: UInt64, augment: Bool, optimizer: OptimizerSettings,
                beta: Float?, gamma: Float, delta: Int, include: [String] = [], exclude: [String] = [],
                skipDepthwise: Bool = false, pruneImages: Int? = nil) {
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
    }

    /// The paper's schedule: prune after every epoch e (1-based) with e % delta == 0.
    public func prunes(afterEpoch epoch: Int) -> Bool { beta != nil && delta > 0 && epoch % delta == 0 }
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

/// Trains a network on CIFAR-10 with the paper's pruning schedule, writing a Keras checkpoint
/// with masks and the full training state (optimizer slots, epoch, log) after every epoch.
public final class Trainer {
    public let settings: TrainingSettings
    let source: Checkpoint
    let network: Network
    let training: CIFARTrainingSet
    let validation: CIFARDataset
    let optimizer: Optimizer
    /// Current masks of the prunable kernels, by dataset path.
    public private(set) var masks: [String: [UInt8]] = [:]
    public private(set) var history: [EpochRecord] = []
    let totalParameters: Int
    let trainable: [Parameter]

    /// `source` is the checkpoint the run starts from (or, to resume, the run's own output).
    public init(source: Checkpoint, network: Network, training: CIFARTrainingSet, validation: CIFARDataset,
                settings: TrainingSettings, resume: Bool) throws {
        self.source = source
        self.network = network
        self.training = training
        self.validation = validation
        self.settings = settings
        optimizer = Optimizer(settings: settings.optimizer)
        trainable = network.trainableParameters
        totalParameters = network.parameters.reduce(0) { $0 + $1.weight.elementCount }
        for parameter in network.parameters where parameter.weight.prunable {
            if let mask = try source.mask(for: parameter.weight) { masks[parameter.weight.datasetPath] = mask }
        }
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
        var first: [String: [Float]] = [:], second: [String: [Float]] = [:]
        for parameter in trainable where iterations > 0 {
            let key = parameter.weight.datasetPath
            for (name, used) in [("slot1", optimizer.usesFirstSlot), ("slot2", optimizer.usesSecondSlot)] where used {
                let path = "\(stateGroup)/\(name)\(key)"
                guard let values = try source.extraDataset(path) else {
                    throw TrainingError("\(file): \(path) is missing; resume needs the optimizer state of every trainable weight")
                }
                guard values.count == parameter.weight.elementCount else {
                    throw TrainingError("\(file): \(path) holds \(values.count) values, the weight has \(parameter.weight.elementCount); the training state is damaged")
                }
                if name == "slot1" { first[key] = values } else { second[key] = values }
            }
        }
        optimizer.restore(iterations: iterations, first: first, second: second)
        history = log
    }

    public var completedEpochs: Int { history.count }

    private var steps: Int { (training.count + settings.batchSize - 1) / settings.batchSize }

    /// Runs the remaining epochs. `progress(epoch, done, total)` after each batch; `epochDone`
    /// after each epoch's checkpoint is written.
    public func run(output: String, progress: (Int, Int, Int) -> Void = { _, _, _ in },
                    epochDone: (EpochRecord) throws -> Void = { _ in }, log: (String) -> Void = { _ in }) throws {
        let batch = settings.batchSize
        try network.checkMemory(batch: min(batch, training.count), gradients: true)
        var images = [Float](repeating: 0, count: min(batch, training.count) * 3072)
        var labels = [Int32](repeating: 0, count: min(batch, training.count))
        while completedEpochs < settings.epochs {
            let epoch = completedEpochs + 1
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
                    optimizer.step(trainable, gradients: gradients, masks: masks)
                }
                network.parametersChanged()
                progress(epoch, min(offset + batch, order.count), order.count)
            }
            let trainSeconds = Date().timeIntervalSince(start)
            var pruned = 0
            if settings.prunes(afterEpoch: epoch) {
                pruned = try pruneNow(log: log)
            }
            let evaluation = try network.evaluate(validation, batchSize: 200)
            let record = EpochRecord(
                epoch: epoch, loss: totals.meanLoss, trainAccuracy: totals.top1Accuracy, validationLoss: evaluation.meanLoss,
                validationAccuracy: evaluation.top1Accuracy, learningRate: learningRate, prunedThisEpoch: pruned,
                sparsity: sparsity(), seconds: Date().timeIntervalSince(start),
                trainImagesPerSecond: Double(order.count) / max(trainSeconds, 1e-9))
            history.append(record)
            try save(to: output)
            try epochDone(record)
        }
    }

    /// The rule with dC/dw over the validation split (inference-mode BatchNorm, as `prune`).
    private func pruneNow(log: (String) -> Void) throws -> Int {
        guard let beta = settings.beta else { return 0 }
        var pruningSettings = PruningSettings(beta: beta, gamma: settings.gamma)
        pruningSettings.include = settings.include
        pruningSettings.exclude = settings.exclude
        pruningSettings.skipDepthwise = settings.skipDepthwise
        let targets = try pruningSettings.targets(in: source)
        var gradients: [String: [Float]] = [:]
        if settings.gamma.isFinite {
            let data = settings.pruneImages.map { LimitedSource(base: validation, limit: $0) } ?? LimitedSource(base: validation, limit: validation.count)
            for (weight, values) in try network.gradients(data, batchSize: 200).gradients { gradients[weight.datasetPath] = values }
        }
        var jobs: [PruningJob] = []
        var buffers: [UnsafeMutableBufferPointer<UInt8>] = []
        var gradientBuffers: [UnsafeMutableBufferPointer<Float>] = []
        defer { buffers.forEach { $0.deallocate() }; gradientBuffers.forEach { $0.deallocate() } }
        var touched: [(Parameter, Int)] = []
        for target in targets {
            guard let parameter = network.parameters.first(where: { $0.weight == target.weight }) else { continue }
            let count = target.weight.elementCount
            let mask = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: count)
            _ = mask.initialize(from: masks[target.weight.datasetPath] ?? [UInt8](repeating: 1, count: count))
            let gradient = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
            _ = gradient.initialize(from: gradients[target.weight.datasetPath] ?? [Float](repeating: 0, count: count))
            buffers.append(mask)
            gradientBuffers.append(gradient)
            jobs.append(PruningJob(weights: parameter.pointer, gradients: gradient.baseAddress!, mask: mask.baseAddress!,
                                   count: count, beta: target.beta, gamma: target.gamma))
            touched.append((parameter, buffers.count - 1))
        }
        let pruned = applyPruningRule(to: jobs).reduce(0, +)
        for (parameter, index) in touched { masks[parameter.weight.datasetPath] = Array(buffers[index]) }
        optimizer.applyMasks(masks)
        network.parametersChanged()
        log("pruned \(pruned) weights (beta \(beta), gamma \(settings.gamma)); sparsity now \(String(format: "%.2f%%", sparsity() * 100))")
        return pruned
    }

    public func sparsity() -> Double {
        let zeros = network.parameters.reduce(0) { total, p in total + p.values.reduce(0) { $0 + ($1 == 0 ? 1 : 0) } }
        return Double(zeros) / Double(max(1, totalParameters))
    }

    /// Writes the network's weights, the masks and the training state over `output`, atomically.
    public func save(to output: String) throws {
        var edits = CheckpointEdits()
        for parameter in network.parameters { edits.weights[parameter.weight] = Array(parameter.values) }
        for parameter in network.parameters {
            if let mask = masks[parameter.weight.datasetPath] { edits.masks[parameter.weight] = mask }
        }
        if !masks.isEmpty, let beta = settings.beta {
            edits.maskAttributes = [
                "rule": "w = 0 and mask = 0 where |w| < beta and |dC/dw| < gamma and mask != 0, every delta epochs during training",
                "beta": String(beta), "gamma": String(settings.gamma), "delta": String(settings.delta),
                "gradient_data": validation.files.map(\.path).joined(separator: ","),
            ]
        }
        for parameter in trainable {
            let key = parameter.weight.datasetPath
            let (m, v) = optimizer.slots(for: key)
            if let m { edits.extraDatasets.append(("\(stateGroup)/slot1\(key)", parameter.weight.shape, m)) }
            if let v { edits.extraDatasets.append(("\(stateGroup)/slot2\(key)", parameter.weight.shape, v)) }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        edits.extraAttributes[stateGroup] = [
            "settings": String(decoding: try encoder.encode(settings), as: UTF8.self),
            "history": String(decoding: try encoder.encode(history), as: UTF8.self),
            "iterations": String(optimizer.iterations), "completed_epochs": String(completedEpochs),
        ]
        try source.write(to: output, edits: edits)
    }
}

/// The first `limit` images of a source.
struct LimitedSource: ImageBatchSource {
    let base: CIFARDataset
    let limit: Int
    var count: Int { min(limit, base.count) }
    func forEachBatch(size: Int, _ body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void) throws {
        var remaining = count
        try base.forEachBatch(size: size) { images, labels, n in
            guard remaining > 0 else { return }
            let take = min(n, remaining)
            remaining -= take
            try body(images, labels, take)
        }
    }
}
