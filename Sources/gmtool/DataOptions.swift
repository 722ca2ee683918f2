import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine

/// The data flags shared by every command that reads images (eval, grad, prune, train).
struct DataOptions: ParsableArguments {
    @Option(name: .long, parsing: .upToNextOption,
            help: "The images: CIFAR-10/100 binary or python batches (files, or the folder holding the split's files), two NumPy .npy files (images then labels), a NumPy .npz archive, or a folder with one subfolder of PNG/JPEG images per class (as keras.utils.image_dataset_from_directory reads it, resized to the model's input). The format is detected from the path; --data-format names it.")
    var data: [String] = []

    @Option(name: .long, help: "The format of --data: cifar10, cifar100 (binary), cifar10-python, cifar100-python (pickled batches), npy, npz, images (a folder of class subfolders). Default: detected from the path.")
    var dataFormat: DataFormat?

    @Option(name: .long, help: "CIFAR-100's labels: fine (100 classes) or coarse (20).")
    var label: LabelKind?

    @Flag(name: .long, help: "Image folders: crop each image to the model's aspect ratio (centred, as Keras' crop_to_aspect_ratio) before resizing.")
    var cropToAspectRatio = false

    @Option(name: .long, help: "Image folders: the fraction held out as Keras' validation_split does (needs --subset and --seed).")
    var validationSplit: Double?

    @Option(name: .long, help: "Image folders with --validation-split: training or validation, the images Keras' subset= gives.")
    var subset: Subset?

    @Option(name: .long, help: "Image folders with --validation-split: the seed Keras was given (its shuffle of the file list).")
    var seed: UInt32?

    @Option(name: .long, help: "The two arrays of an .npz to read, images then labels, e.g. x_test,y_test. Default: x,y, else the split's (x_test,y_test; x_train,y_train; x_val,y_val).")
    var arrays: String?

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
    enum DataFormat: String, ExpressibleByArgument, CaseIterable {
        case cifar10, cifar100, cifar10Python = "cifar10-python", cifar100Python = "cifar100-python", npy, npz, images
    }
    enum LabelKind: String, ExpressibleByArgument, CaseIterable { case fine, coarse }
    enum Subset: String, ExpressibleByArgument, CaseIterable { case training, validation }

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if let limit, limit <= 0 { throw ValidationError("--limit must be positive") }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
        if let threads, threads <= 0 { throw ValidationError("--threads must be positive") }
        if scale == .meanstd && (mean == nil || std == nil) { throw ValidationError("--scale meanstd needs --mean and --std") }
        if scale != .meanstd && (mean != nil || std != nil) { throw ValidationError("--mean/--std only apply with --scale meanstd") }
        _ = try scaling  // --mean/--std that do not parse are a usage error too
        if let validationSplit {
            guard validationSplit > 0 && validationSplit < 1 else { throw ValidationError("--validation-split must be between 0 and 1") }
            guard subset != nil, seed != nil else { throw ValidationError("--validation-split needs --subset and --seed (Keras' seed for the split)") }
        } else if subset != nil || seed != nil {
            throw ValidationError("--subset and --seed apply only with --validation-split")
        }
        if let arrays, arrays.split(separator: ",", omittingEmptySubsequences: false).count != 2 || arrays.contains(",,") || arrays.hasPrefix(",") || arrays.hasSuffix(",") {
            throw ValidationError("--arrays takes two array names, images then labels, e.g. x_test,y_test")
        }
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
                    let values = try (text ?? "").split(separator: ",", omittingEmptySubsequences: false).map { entry in
                        let trimmed = entry.trimmingCharacters(in: .whitespaces)
                        guard let value = Float(trimmed), value.isFinite else {
                            throw ValidationError("\(flag): '\(trimmed)' is not a finite number")
                        }
                        return value
                    }
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

    /// The format of `paths`: `--data-format`, else from the names and contents.
    func format(of paths: [String]) throws -> DataFormat {
        if let dataFormat { return dataFormat }
        if paths.contains(where: { $0.hasSuffix(".npy") }) { return .npy }
        if paths.contains(where: { $0.hasSuffix(".npz") }) { return .npz }
        let path = paths[0]
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw DataError(file: path, problem: "no such file or folder")
        }
        let fileManager = FileManager.default
        if isDirectory.boolValue {
            let names = Set((try? fileManager.contentsOfDirectory(atPath: path)) ?? [])
            if names.contains("test.bin") || names.contains("train.bin") { return .cifar100 }
            if names.contains("test_batch") || names.contains("data_batch_1") || names.contains("batches.meta") { return .cifar10Python }
            if names.contains("meta") || names.contains("test") && names.contains("train") { return .cifar100Python }
            // Class subfolders make an image folder; anything else is read as CIFAR-10 binary
            // (whose message then names the split's missing file).
            let hasSubfolders = names.contains { name in
                var isFolder: ObjCBool = false
                return !name.hasPrefix(".") && fileManager.fileExists(atPath: (path as NSString).appendingPathComponent(name), isDirectory: &isFolder) && isFolder.boolValue
            }
            return hasSubfolders && !names.contains(where: { $0.hasSuffix(".bin") }) ? .images : .cifar10
        }
        if CIFARPythonDataset.looksLikePickle(path) { return .cifar10Python }  // the dict's keys tell 10 from 100
        // A binary file: its size tells 3073-byte CIFAR-10 records from 3074-byte CIFAR-100
        // ones; only when both divide it (or neither) does the name decide.
        let size = ((try? fileManager.attributesOfItem(atPath: path))?[.size] as? Int) ?? 0
        let ten = size % CIFARVariant.cifar10.recordBytes == 0, hundred = size % CIFARVariant.cifar100(fine: true).recordBytes == 0
        if ten != hundred { return ten ? .cifar10 : .cifar100 }
        let name = (path as NSString).lastPathComponent
        return name == "test.bin" || name == "train.bin" ? .cifar100 : .cifar10
    }

    /// `paths` in their format (`format(of:)`).
    func dataset(paths: [String], split: CIFARDataset.Split) throws -> ImageDataset {
        let format = try format(of: paths)
        if format != .npz && arrays != nil { throw ValidationError("--arrays only applies to an .npz archive") }
        if format != .npy && format != .npz && channelsFirst { throw ValidationError("--channels-first only applies to NumPy data") }
        let isCIFAR100 = format == .cifar100 || format == .cifar100Python
        // A single pickled batch says which CIFAR it is only in its keys; any other form is known here.
        var isFolder: ObjCBool = false
        let singleBatch = format == .cifar10Python && dataFormat == nil
            && !(FileManager.default.fileExists(atPath: paths[0], isDirectory: &isFolder) && isFolder.boolValue)
        if label != nil && !isCIFAR100 && !singleBatch {
            throw ValidationError("--label only applies to CIFAR-100 (\(paths[0]) is \(format.rawValue) data)")
        }
        let fine = label != .coarse
        if format != .images && (validationSplit != nil || cropToAspectRatio) {
            throw ValidationError("--validation-split and --crop-to-aspect-ratio apply only to image folders")
        }
        switch format {
        case .images:
            guard paths.count == 1 else { throw DataError(file: paths[1], problem: "an image folder is read alone; give it as the only --data") }
            let keras = validationSplit.map { (fraction: $0, validation: subset == .validation, seed: seed ?? 0) }
            return try ImageFolderDataset(folder: paths[0], split: keras, cropToAspectRatio: cropToAspectRatio, limit: limit,
                                          scaling: try scaling, workers: threads)
        case .npy:
            guard paths.count == 2, paths.allSatisfy({ $0.hasSuffix(".npy") }) || dataFormat == .npy else {
                throw DataError(file: paths.joined(separator: " "), problem: "NumPy data is two .npy files, images then labels")
            }
            return try NumPyDataset(images: paths[0], labels: paths[1], channelsFirst: channelsFirst, limit: limit, scaling: try scaling)
        case .npz:
            guard paths.count == 1 else { throw DataError(file: paths[0], problem: "an .npz archive is read alone; give it as the only --data") }
            let names = arrays.map { $0.split(separator: ",").map(String.init) }.map { (images: $0[0], labels: $0[1]) }
            let suffix = split == .validation ? "val" : split.rawValue
            return try NumPyDataset(npz: paths[0], names: names, candidates: NumPyDataset.defaultArrayNames(split: suffix),
                                    channelsFirst: channelsFirst, limit: limit, scaling: try scaling)
        case .cifar10, .cifar100:
            return try CIFARDataset(paths: paths, split: split, variant: format == .cifar10 ? .cifar10 : .cifar100(fine: fine),
                                    limit: limit, scaling: try scaling)
        case .cifar10Python, .cifar100Python:
            // Detected pickles name CIFAR-10 until their keys are read; --label then means CIFAR-100.
            let variant: CIFARVariant? = format == .cifar100Python || label != nil ? .cifar100(fine: fine)
                : dataFormat == .cifar10Python ? .cifar10 : nil
            let opened = try CIFARPythonDataset(paths: paths, split: split, variant: variant, limit: limit, scaling: try scaling)
            return opened
        }
    }

    /// The training form of opened data: CIFAR-10 binary held in memory, a NumPy pair mapped.
    func trainingSet(_ opened: ImageDataset) throws -> TrainingImageSource {
        if let cifar = opened as? CIFARDataset { return try CIFARTrainingSet(cifar) }
        if let python = opened as? CIFARPythonDataset { return python }
        if let folder = opened as? ImageFolderDataset { return folder }
        guard let numpy = opened as? NumPyDataset else { throw CommandError("\(opened.sourceFiles.first ?? ""): cannot be trained on") }
        return numpy
    }

    /// Builds the network for the data's images (checked against `dataset` when given;
    /// CIFAR-10's 32x32x3 when there is none).
    func network(_ model: Model, for dataset: ImageDataset? = nil, kernels: KernelChoice = .dense) throws -> Network {
        try fitImageFolder(dataset, to: model)
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

    /// An image folder takes the model's input size and channels (Keras' image_size and
    /// color_mode) when the model fixes them; otherwise every image must have the first's size.
    func fitImageFolder(_ dataset: ImageDataset?, to model: Model) throws {
        guard let folder = dataset as? ImageFolderDataset, !folder.resizes, let declared = model.checkpoint.modelConfig?.inputShape,
              declared.count == 3, let h = declared[0], let w = declared[1], let c = declared[2] else { return }
        guard c == 1 || c == 3 else {
            throw CommandError("\(folder.folder): the model \(model.checkpoint.path) takes \(c)-channel images; image folders are read as grayscale (1) or RGB (3)")
        }
        folder.resize(to: h, w, channels: c)
    }

    /// Checks that the network takes the data's images and predicts its classes.
    func check(_ network: Network, _ dataset: ImageDataset) throws {
        try fitImageFolder(dataset, to: network.model)
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
