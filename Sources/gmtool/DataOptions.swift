import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine

/// The data flags shared by every command that reads images (eval, grad, prune, train).
struct DataOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption,
            help: "CIFAR-10 binary data: .bin files, or a folder holding the split's files.")
    var data: [String] = []

    @Option(name: .long, help: "Split to read from a folder: test (test_batch), validation (data_batch_5) or train (data_batch_1-4). Default: test for eval and grad, validation for prune.")
    var split: CIFARDataset.Split?

    @Option(name: .long, parsing: .unconditional, help: "Use only the first N images.")
    var limit: Int?

    @Option(name: .long, help: "Input scaling: unit (x/255), symmetric (x/127.5-1), raw (0..255) or meanstd (with --mean/--std).")
    var scale: ScaleName = .unit

    @Option(name: .long, help: "Per-channel means on the 0-1 scale for --scale meanstd, e.g. 0.4914,0.4822,0.4465.")
    var mean: String?

    @Option(name: .long, help: "Per-channel standard deviations on the 0-1 scale for --scale meanstd.")
    var std: String?

    @Option(name: .long, parsing: .unconditional, help: "Images per batch.")
    var batchSize: Int = 100

    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: one per core).")
    var threads: Int?

    enum ScaleName: String, ExpressibleByArgument, CaseIterable { case unit, symmetric, raw, meanstd }

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
            case .symmetric: return .symmetric
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
    func dataset(defaultSplit: CIFARDataset.Split = .test) throws -> CIFARDataset {
        guard !data.isEmpty else { throw ValidationError("--data is required") }
        return try CIFARDataset(paths: data, split: split ?? defaultSplit, limit: limit, scaling: try scaling)
    }

    /// Builds the network for CIFAR-10 images (checked against `dataset` when given).
    func network(_ model: Model, for dataset: CIFARDataset? = nil, sparseKernels: Bool = false) throws -> Network {
        let network = try Network(model: model, inputShape: [CIFARDataset.height, CIFARDataset.width, CIFARDataset.channels],
                                  workers: threads, sparseKernels: sparseKernels)
        if let dataset { try check(network, dataset) }
        return network
    }

    /// Checks that the network takes CIFAR-10 images and predicts 10 classes.
    func check(_ network: Network, _ dataset: CIFARDataset) throws {
        let expected = [CIFARDataset.height, CIFARDataset.width, CIFARDataset.channels]
        guard network.inputShape == expected else {
            throw CommandError("\(network.checkpoint.path): the model takes \(network.inputShape) inputs, the data holds 32x32x3 images")
        }
        guard network.classCount == CIFARDataset.classes else {
            throw CommandError("\(network.checkpoint.path): the model predicts \(network.classCount) classes, CIFAR-10 has 10")
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
