import ArgumentParser
import CIFAR
import Foundation
import KerasCheckpoint
import ModelState
import Engine
import Training
import Analysis

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train on CIFAR-10 and prune every delta epochs with the paper's rule.",
        discussion: """
            Trains on the train split (data_batch_1-4) with minibatch SGD (momentum, Nesterov) or \
            Adam, BatchNorm in training mode (moving statistics updated as Keras does), random \
            crop + flip augmentation and a seeded shuffle. After every epoch e with e % delta == 0 \
            it takes dC/dw over the validation split (data_batch_5) and applies the rule; masks are \
            then multiplied into every gradient, and the weights and optimizer slots are masked \
            after every step. After each epoch the output checkpoint (Keras-loadable, with masks and \
            the training state) and the log are rewritten atomically; --resume continues from them \
            with the same results an uninterrupted run would have had. Without --beta it is a \
            dense baseline. With --prune-gradients-from DIR the pruning steps' dC/dw comes from \
            files an array job writes (`gmtool grad --shard` + `gmtool merge`): train stops with \
            exit status 75 at each pruning epoch whose file is missing and names the commands \
            that make it (docs/SCALE.md, "Training with array-job pruning passes").
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Option(name: .long, help: "CIFAR-10 folder (data_batch_1-5, binary .bin or python batches): train on 1-4, validate on 5.")
    var data: String?

    @Option(name: .long, parsing: .upToNextOption, help: "Training images instead of --data: the forms eval's --data takes (CIFAR binary or python batches, a .npy pair, an .npz, an image folder).")
    var trainData: [String] = []

    @Option(name: .long, parsing: .upToNextOption, help: "Validation images, with --train-data.")
    var valData: [String] = []

    @Option(name: [.short, .long], help: "Output checkpoint, rewritten after every epoch.")
    var output: String

    @Option(name: .long, parsing: .unconditional, help: "Epochs to train.")
    var epochs: Int

    @Option(name: .long, parsing: .unconditional, help: "Minibatch size.")
    var batchSize: Int = 128

    @Option(name: .long, help: "Optimizer: sgd or adam.")
    var optimizer: OptimizerName = .sgd

    @Option(name: .long, parsing: .unconditional, help: "Learning rate.")
    var lr: Double = 0.01

    @Option(name: .long, help: "Learning-rate schedule: constant, step or cosine (over all epochs).")
    var schedule: ScheduleName = .constant

    @Option(name: .long, parsing: .unconditional, help: "For --schedule step: epochs between decays.")
    var stepEpochs: Int = 10

    @Option(name: .long, parsing: .unconditional, help: "For --schedule step: decay factor.")
    var stepFactor: Double = 0.1

    @Option(name: .long, parsing: .unconditional, help: "SGD momentum.")
    var momentum: Float = 0.9

    @Flag(name: .long, help: "Nesterov momentum for SGD.")
    var nesterov = false

    @Option(name: .long, parsing: .unconditional, help: "Decoupled weight decay (Keras' weight_decay).")
    var weightDecay: Float = 0

    @Flag(name: .long, help: "Turn off the random crop + flip augmentation.")
    var noAugment = false

    @Option(name: .long, help: "Seed for shuffling, augmentation and dropout.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Pruning method: paper (the rule with --beta/--gamma every --delta epochs) or gmp (gradual magnitude pruning as tfmot's prune_low_magnitude: PolynomialDecay schedule with power 3, every Conv/Dense kernel but no depthwise kernel).")
    var method: Method = .paper

    @Option(name: .long, parsing: .unconditional, help: "For --method gmp: the sparsity every kernel (depthwise kernels are never pruned) reaches at --end-epoch.")
    var finalSparsity: Double?

    @Option(name: .long, parsing: .unconditional, help: "For --method gmp: the sparsity at --begin-epoch.")
    var initialSparsity: Double = 0

    @Option(name: .long, parsing: .unconditional, help: "For --method gmp: the first epoch after which it prunes.")
    var beginEpoch: Int?

    @Option(name: .long, parsing: .unconditional, help: "For --method gmp: the last epoch after which it prunes (begin + a multiple of --frequency).")
    var endEpoch: Int?

    @Option(name: .long, parsing: .unconditional, help: "For --method gmp: prune every this many epochs.")
    var frequency: Int = 1

    @Option(name: .long, parsing: .unconditional, help: "Pruning magnitude threshold (omit for a dense run).")
    var beta: Float?

    @Option(name: .long, parsing: .unconditional, help: "Pruning gradient threshold (default: inf, magnitude only).")
    var gamma: Float = .infinity

    @Option(name: .long, parsing: .unconditional, help: "Prune after every epoch e with e % delta == 0.")
    var delta: Int = 1

    @Option(name: .long, parsing: .unconditional, help: "Validation images for each pruning gradient (default: all 10,000).")
    var pruneImages: Int?

    @Option(name: .long, help: ArgumentHelp("Pruning steps read dC/dw from DIR/grads-epoch-<e>.h5 (made by `gmtool grad`, or `gmtool merge` of its shards, on this run's checkpoint of epoch e) instead of computing it. When that file is absent, train saves the checkpoint with epoch e trained and not yet pruned, prints the commands that make the file and exits with status 75; the same command with --resume then prunes with it and goes on. The result is bit for bit that of a run that computes its own gradients (docs/SCALE.md).", valueName: "DIR"))
    var pruneGradientsFrom: String?

    @Option(name: .long, help: "Prune only layers matching this glob (repeatable).")
    var include: [String] = []

    @Option(name: .long, help: "Never prune layers matching this glob (repeatable).")
    var exclude: [String] = []

    @Flag(name: .long, help: "Leave depthwise kernels unpruned.")
    var skipDepthwise = false

    @Option(name: .long, help: "Input scaling: unit, tf, torch, caffe, symmetric or raw.")
    var scale: DataOptions.ScaleName = .unit

    @Option(name: .long, help: "Per-epoch log, CSV (default: OUTPUT.log.csv); a .json twin is written beside it.")
    var log: String?

    @Flag(name: .long, help: "Continue the run saved in OUTPUT (same settings) from its last completed epoch.")
    var resume = false

    @Option(name: .long, parsing: .unconditional, help: "Worker threads (default: one per core).")
    var threads: Int?

    @Flag(name: .long, help: "No progress bar.")
    var quiet = false

    enum Method: String, ExpressibleByArgument, CaseIterable { case paper, gmp }
    enum OptimizerName: String, ExpressibleByArgument, CaseIterable { case sgd, adam }
    enum ScheduleName: String, ExpressibleByArgument, CaseIterable { case constant, step, cosine }

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if epochs <= 0 { throw ValidationError("--epochs must be positive") }
        if (data == nil) == (trainData.isEmpty || valData.isEmpty) || (data != nil && !(trainData.isEmpty && valData.isEmpty)) {
            throw ValidationError("give --data (a CIFAR-10 folder) or both --train-data and --val-data")
        }
        if batchSize <= 0 { throw ValidationError("--batch-size must be positive") }
        if !(lr > 0) { throw ValidationError("--lr must be positive") }
        if delta <= 0 { throw ValidationError("--delta must be positive") }
        if let beta, !(beta >= 0) || !beta.isFinite { throw ValidationError("--beta must be a finite number >= 0") }
        if gamma.isNaN || gamma < 0 { throw ValidationError("--gamma must be >= 0") }
        if method == .gmp {
            guard let finalSparsity, let beginEpoch, let endEpoch else {
                throw ValidationError("--method gmp needs --final-sparsity, --begin-epoch and --end-epoch")
            }
            if beta != nil || gamma.isFinite || pruneImages != nil { throw ValidationError("--method gmp prunes by magnitude on a schedule; --beta, --gamma and --prune-images belong to --method paper") }
            if skipDepthwise { throw ValidationError("--skip-depthwise is used only with --method paper (--method gmp never prunes depthwise kernels, as tfmot)") }
            if !(finalSparsity > 0 && finalSparsity < 1) { throw ValidationError("--final-sparsity must be between 0 and 1 (exclusive)") }
            if !(initialSparsity >= 0 && initialSparsity <= finalSparsity) { throw ValidationError("--initial-sparsity must be in [0, --final-sparsity]") }
            if frequency <= 0 { throw ValidationError("--frequency must be positive") }
            if beginEpoch < 1 || endEpoch < beginEpoch || endEpoch > epochs {
                throw ValidationError("--begin-epoch and --end-epoch must satisfy 1 <= begin <= end <= --epochs (got \(beginEpoch) and \(endEpoch), --epochs \(epochs))")
            }
            if (endEpoch - beginEpoch) % frequency != 0 {
                throw ValidationError("--end-epoch \(endEpoch) is not --begin-epoch plus a multiple of --frequency \(frequency): the last pruning would stop short of --final-sparsity")
            }
        } else if finalSparsity != nil || beginEpoch != nil || endEpoch != nil {
            throw ValidationError("--final-sparsity, --begin-epoch and --end-epoch are used only with --method gmp")
        }
        if beta == nil && method == .paper {
            let unused = [(gamma.isFinite, "--gamma"), (pruneImages != nil, "--prune-images"), (!include.isEmpty, "--include"),
                          (!exclude.isEmpty, "--exclude"), (skipDepthwise, "--skip-depthwise")].filter(\.0).map(\.1)
            if let first = unused.first { throw ValidationError("\(first) is used only with --beta (without it the run is dense)") }
        }
        if let pruneGradientsFrom {
            if method == .gmp { throw ValidationError("--prune-gradients-from \(pruneGradientsFrom) is used only with --method paper (gmp prunes by magnitude and takes no gradients)") }
            if beta == nil { throw ValidationError("--prune-gradients-from \(pruneGradientsFrom) is used only with --beta and --gamma (without --beta the run is dense)") }
            if !gamma.isFinite { throw ValidationError("--prune-gradients-from \(pruneGradientsFrom) is used only with a finite --gamma (without it the rule is magnitude-only and takes no gradients)") }
        }
        if nesterov && optimizer == .adam { throw ValidationError("--nesterov is used only with --optimizer sgd") }
        if scale == .meanstd { throw ValidationError("train supports --scale unit, tf, torch, caffe, symmetric or raw") }
        if !resume && samePath(output, checkpoint.model) {
            throw ValidationError("the output would overwrite the model (use another -o; --resume continues an output)")
        }
    }

    func run() throws {
        // Outputs that cannot be written fail now, not after an epoch of training.
        let logPath = log ?? output + ".log.csv"
        let jsonLogPath = (logPath as NSString).deletingPathExtension + ".json"
        let reportPath = (logPath as NSString).deletingPathExtension + ".report.html"
        for path in [output, logPath, jsonLogPath, reportPath] { try checkOutput(path) }
        // The data options eval reads, for the same formats and checks.
        let options = try DataOptions.parse(["--scale", scale.rawValue] + (threads.map { ["--threads", String($0)] } ?? []))
        let scaling = try options.scaling
        let trainFiles: ImageDataset, validation: ImageDataset
        if let data {
            trainFiles = try options.dataset(paths: [data], split: .train)
            validation = try options.dataset(paths: [data], split: .validation)
        } else {
            trainFiles = try options.dataset(paths: trainData, split: .train)
            validation = try options.dataset(paths: valData, split: .validation)
        }
        let training = try options.trainingSet(trainFiles)
        let steps = (training.count + batchSize - 1) / batchSize
        let scheduleValue: LearningRateSchedule
        switch schedule {
        case .constant: scheduleValue = .constant
        case .step: scheduleValue = .step(everySteps: stepEpochs * steps, factor: stepFactor)
        case .cosine: scheduleValue = .cosine(totalSteps: epochs * steps)
        }
        let kind: OptimizerKind = optimizer == .sgd ? .sgd(momentum: momentum, nesterov: nesterov)
            : .adam(beta1: 0.9, beta2: 0.999, epsilon: 1e-7)
        let settings = TrainingSettings(
            epochs: epochs, batchSize: batchSize, seed: seed, augment: !noAugment,
            optimizer: OptimizerSettings(kind: kind, learningRate: lr, schedule: scheduleValue, weightDecay: weightDecay),
            beta: beta, gamma: gamma, delta: delta, include: include, exclude: exclude, skipDepthwise: skipDepthwise,
            pruneImages: pruneImages,
            gradual: method == .gmp ? GradualSchedule(initialSparsity: initialSparsity, finalSparsity: finalSparsity!, beginEpoch: beginEpoch!,
                                                      endEpoch: endEpoch!, frequency: frequency) : nil)
        let start = try resume ? Checkpoint.open(output, config: checkpoint.config.map(ModelConfig.init(contentsOf:))) : checkpoint.open()
        let network = try options.network(try Model(checkpoint: start), for: trainFiles)
        try options.check(network, validation)
        if let pruneGradientsFrom {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: pruneGradientsFrom, isDirectory: &isFolder), isFolder.boolValue else {
                throw CommandError("\(pruneGradientsFrom): no such folder (--prune-gradients-from)")
            }
        }
        let trainer = try Trainer(network: network, training: training, validation: validation, settings: settings, resume: resume,
                                  gradientFiles: try pruneGradientsFrom.map {
                                      // The step takes dC/dw over the first --prune-images validation images.
                                      PruningGradientFiles(folder: $0, scaling: scaling.description,
                                                           dataDigest: try dataFilesDigest(validation.files(limit: settings.pruneImages ?? validation.count)))
                                  })
        func note(_ line: String) { FileHandle.standardError.write(Data("\(line)\n".utf8)) }
        note("train: \(training.count) images (\(training.sourceFiles.joined(separator: ", "))), validation \(validation.count), scaling \(scaling), \(steps) steps/epoch"
             + (method == .gmp ? ", gradual magnitude pruning to \(finalSparsity!) from epoch \(beginEpoch!) to \(endEpoch!) every \(frequency)"
                : beta.map { ", pruning with beta \($0) gamma \(gamma) every \(delta) epoch(s)" } ?? ", dense (no pruning)")
             + (resume ? ", resuming after epoch \(trainer.completedEpochs)" : "")
             + (trainer.trainedEpochWaitingForPruning.map { " (epoch \($0) trained; its pruning step next)" } ?? ""))
        if resume && trainer.completedEpochs >= epochs { note("nothing to do: \(trainer.completedEpochs) epochs already done") }
        print("epoch  loss    train_acc  val_loss  val_acc  lr        pruned    sparsity  seconds")
        fflush(nil)
        for record in trainer.history { print(line(record)) }
        let bar = ProgressBar(total: training.count, label: "epoch", quiet: quiet)
        do {
            try trainer.run(output: output, progress: { _, done, _ in bar.update(done) }, epochDone: { record in
                print(line(record))
                fflush(nil)  // each epoch's line as it happens, also when stdout is a file
                try writeLog(trainer.history, csv: logPath, json: jsonLogPath)
                try writeAtomically(Data(trainingReportHTML(trainer.history.map(\.chartRow), title: "gmtool train: \(output)").utf8), to: reportPath)
            }, log: note)
        } catch let needed as PruningGradientsNeeded {
            throw CommandPause(message: pauseMessage(needed, validationImages: validation.count))
        }
    }

    /// The `gmtool grad` arguments that compute, on the checkpoint `needed` names, exactly the
    /// gradients the pruning step would take itself: the same validation images (the split train
    /// validates on, `--prune-images` as `--limit`), scaling and batch size, so the same bits.
    func gradArguments(_ needed: PruningGradientsNeeded, validationImages: Int) -> [String] {
        ["gmtool", "grad", needed.checkpoint] + (checkpoint.config.map { ["--config", $0] } ?? [])
            + ["--data"] + (data.map { [$0] } ?? valData) + ["--split", "validation", "--scale", scale.rawValue,
               "--batch-size", String(Trainer.pruningBatchSize)]
            + (needed.images < validationImages ? ["--limit", String(needed.images)] : [])
    }

    /// The one line train prints when it stops for a pruning step's gradient file.
    func pauseMessage(_ needed: PruningGradientsNeeded, validationImages: Int) -> String {
        let grad = gradArguments(needed, validationImages: validationImages).map(shellQuoted).joined(separator: " ")
        let file = shellQuoted(needed.file)
        return "\(needed.checkpoint): saved with epoch \(needed.epoch) trained and not yet pruned; its pruning step reads \(needed.file), "
            + "which does not exist. Make it with `\(grad) -o \(file)`, or as N shards, `\(grad) --shard K/N -o shard-K.h5` for K = 0..N-1, "
            + "then `gmtool merge shard-*.h5 -o \(file)`; then run this train command again with --resume (exit status 75: waiting for the gradients)"
    }

    private func line(_ r: EpochRecord) -> String {
        String(format: "%5d  %6.4f  %9.4f  %8.4f  %7.4f  %.2e  %8d  %7.2f%%  %7.1f", r.epoch, r.loss, r.trainAccuracy,
               r.validationLoss, r.validationAccuracy, r.learningRate, r.prunedThisEpoch, r.sparsity * 100, r.seconds)
    }

    private func writeLog(_ history: [EpochRecord], csv csvPath: String, json jsonPath: String) throws {
        let csv = ([EpochRecord.csvHeaderText] + history.map(\.csvLine)).joined(separator: "\n") + "\n"
        try writeAtomically(Data(csv.utf8), to: csvPath)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try writeAtomically(try encoder.encode(history), to: jsonPath)
    }
}

extension TrainingError: UserFacingError {}

extension EpochRecord {
    var chartRow: TrainingChartRow {
        TrainingChartRow(epoch: epoch, loss: loss, validationLoss: validationLoss, trainAccuracy: trainAccuracy,
                         validationAccuracy: validationAccuracy, sparsity: sparsity)
    }
}
