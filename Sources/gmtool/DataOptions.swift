import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine

/// The data flags shared by every command that reads images (eval, grad, prune, train).
struct DataOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption,
            help: "The images: CIFAR-10 binary (.bin files, or a folder holding the split's files), or two NumPy .npy files, images then labels.")
    var data: [String] = []

    @Flag(name: .long, help: "NumPy images are (N, channels, height, width) instead of (N, height, width, channels).")
    var channelsFirst = false

    @Option(name: .long, help: "Split to read from a folder: test (test_batch), validation (data_batch_5) or train (data_batch_1-4). Default: test for eval and grad, validation for prune.")
    var split: CIFARDataset.Split?

    @Option(name: .long, parsing: .unconditional, help: "Use only the first N images.")
    var limit: Int?

    @Option(name: .long, help: "Input scaling: unit (x/255), tf (x/127.5-1, Keras' preprocess_input mode tf; symmetric is the same), torch (x/255, then ImageNet mean/std), caffe (RGB->BGR, ImageNet BGR means subtracted), raw (0..255) or meanstd (with --mean/--std).")
    var scale: ScaleName = .unit

    @Option(name: .long, help: "Per-channel means on the 0-1 scale for --scale meanstd, e.g. 0.4914,0.4822,0.4465.")
    var mean: String?

    @Option(name: .long, help: "Per-channel standard deviations on the 0-1 scale for --scale meanstd.")
    var std: String?

    @Option(name: .long, parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 100

    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: one per core).")
    var threads: Int?

    enum ScaleName: String, ExpressibleByArgument, CaseIterable { case unit, tf, symmetric, torch, caffe, raw, meanstd }

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive") }
        if scale == .meanstd && (mean == nil || std == nil) { throw ValidationError("--scale meanstd needs --mean and --std") }
        if scale != .meanstd && (mean != nil || std != nil) { throw ValidationError("--mean/--std only apply with --scale meanstd") }
        _ = try scaling  // --mean/--std that do not parse are a usage error too
    }

    var scaling: InputScaling {
        get throws {
            switch scale {
            case .unit: return .unit
            case .tf, .symmetric: return .symmetric
            case .torch: return .torch
            case .caffe: return .caffe
            case .raw: return .raw
            case .meanstd:
                func parse(_ text: String?, _ flag: String) throws -> [Float] {
                    let values = (text ?? "").split(separator: ",").compactMap { Float($0.trimmingCharacters(in: .whitespaces)) }
                    guard values.count == 3 || values.count == 1 else { throw ValidationError("\(flag) takes 1 or 3 comma-separated numbers") }
                    return values
                }
                let std = try parse(self.std, "--std")
                guard std.allSatisfy({ $0 > 0 }) else { throw ValidationError("--std values must be positive") }
                return .meanStd(mean: try parse(mean, "--mean"), std: std)
            }
        }
    }

    /// Opens the data; a folder is read for `--split`, or `defaultSplit` when none was given.
    func dataset(defaultSplit: CIFARDataset.Split = .test) throws -> ImageDataset {
        guard !data.isEmpty else { throw ValidationError("--data is required") }
        return try dataset(paths: data, split: split ?? defaultSplit)
    }

    /// `paths` as CIFAR-10 binary, or as a NumPy pair (images .npy, labels .npy).
    func dataset(paths: [String], split: CIFARDataset.Split) throws -> ImageDataset {
        let numpy = paths.filter { $0.hasSuffix(".npy") }
        if !numpy.isEmpty {
            guard numpy.count == 2, paths.count == 2 else {
                throw DataError(file: paths.joined(separator: " "), problem: "NumPy data is two .npy files, images then labels")
            }
            return try NumPyDataset(images: paths[0], labels: paths[1], channelsFirst: channelsFirst, limit: limit, scaling: try scaling)
        }
        if channelsFirst { throw ValidationError("--channels-first only applies to NumPy data") }
        return try CIFARDataset(paths: paths, split: split, limit: limit, scaling: try scaling)
    }

    /// The training form of opened data: CIFAR-10 binary held in memory, a NumPy pair mapped.
    func trainingSet(_ opened: ImageDataset) throws -> TrainingImageSource {
        if let cifar = opened as? CIFARDataset { return try CIFARTrainingSet(cifar) }
        guard let numpy = opened as? NumPyDataset else { throw CommandError("\(opened.sourceFiles.first ?? ""): cannot be trained on") }
        return numpy
    }

    /// Builds the network for the data's images (checked against `dataset` when given;
    /// CIFAR-10's 32x32x3 when there is none).
    func network(_ model: Model, for dataset: ImageDataset? = nil, kernels: KernelChoice = .dense) throws -> Network {
        let shape = dataset?.imageShape ?? [CIFARDataset.height, CIFARDataset.width, CIFARDataset.channels]
        let network: Network
        do {
            network = try Network(model: model, inputShape: shape, workers: threads, kernels: kernels)
        } catch let error as CheckpointError where dataset != nil && error.problem.hasPrefix("the model takes inputs") {
            throw CommandError("\(dataset!.sourceFiles[0]): holds \(shape.map(String.init).joined(separator: "x")) images; \(error)")
        }
        if let dataset { try check(network, dataset) }
        return network
    }

    /// Checks that the network takes the data's images and predicts its classes.
    func check(_ network: Network, _ dataset: ImageDataset) throws {
        let file = dataset.sourceFiles.first ?? ""
        guard network.inputShape == dataset.imageShape else {
            throw CommandError("\(file): holds \(dataset.imageShape.map(String.init).joined(separator: "x")) images, the model \(network.checkpoint.path) takes \(network.inputShape.map(String.init).joined(separator: "x"))")
        }
        if let required = dataset.requiredClasses, network.classCount != required {
            throw CommandError("\(network.checkpoint.path): the model predicts \(network.classCount) classes, the data \(file) has \(required)")
        }
        guard dataset.largestLabel < network.classCount else {
            throw CommandError("\(dataset.sourceFiles.last ?? file): holds label \(dataset.largestLabel), outside the model's \(network.classCount) classes (0-\(network.classCount - 1))")
        }
    }
}

extension CIFARDataset.Split: ExpressibleByArgument {}
extension DataError: UserFacingError {}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal.
final class ProgressBar {
    let total: Int
    let label: String
    let enabled: Bool
    private var lastDrawn = Date.distantPast

    init(total: Int, label: String, quiet: Bool) {
        self.total = total
        self.label = label
        enabled = !quiet && isatty(STDERR_FILENO) == 1
    }

    func update(_ done: Int) {
        guard enabled, Date().timeIntervalSince(lastDrawn) > 0.1 || done == total else { return }
        lastDrawn = Date()
        let width = 30
        let filled = total == 0 ? width : width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(done)/\(total)".utf8))
        if done == total { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
