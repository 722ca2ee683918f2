import Dispatch
import Foundation
import CIFAR
import KerasCheckpoint
import ModelState
import NeuralKernels

/// The buffers of one chunk of a batch: one activation and one gradient buffer per node, im2col
/// scratch, and float accumulators for every trainable parameter's gradient over the chunk. A
/// chunk is touched by one worker thread at a time, which is why it is `@unchecked Sendable`.
///
/// Every buffer lies in one anonymous mapping (`Arena`), populated when it is made
/// (`MAP_POPULATE`): the kernel fills in all its pages in one call instead of one page fault per
/// 4 KiB at first touch, which in this VM cost seconds of system time for the 9.4 GB workspace of
/// a 224x224 MobileNet's gradient pass at batch 100 (2.3 million faults; `gmtool grad` over 200
/// such images, 2026-12-03, on a loaded machine: 6.4-28.9 s of system time with page faults,
/// 4.8-6.5 s populated). Every buffer is used in the first batch, so nothing is populated in vain.
final class Workspace: @unchecked Sendable {
    /// Page-aligned, zero-filled memory carved into 64-byte-aligned buffers.
    private final class Arena {
        let base: UnsafeMutableRawPointer
        let bytes: Int
        private var used = 0
        init(floats: Int) {
            bytes = max(1, floats) * MemoryLayout<Float>.size
            guard let mapped = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0),
                  mapped != MAP_FAILED else {
                fatalError("could not map \(bytes) bytes for a workspace (errno \(errno))")
            }
            base = mapped
        }
        func take(_ count: Int) -> UnsafeMutablePointer<Float> {
            let size = Self.footprint(count) * MemoryLayout<Float>.size
            precondition(used + size <= bytes, "workspace arena overflow")
            defer { used += size }
            return (base + used).bindMemory(to: Float.self, capacity: max(1, count))
        }
        /// Floats `take` uses for a buffer of `count` floats.
        static func footprint(_ count: Int) -> Int { (max(1, count) * MemoryLayout<Float>.size + 63) / 64 * 16 }
        deinit { munmap(base, bytes) }
    }

    private let arena: Arena
    let capacity: Int
    let activations: [UnsafeMutablePointer<Float>]
    let nodeGradients: [UnsafeMutablePointer<Float>]
    let scratch: UnsafeMutablePointer<Float>?
    let parameterGradients: [UnsafeMutablePointer<Float>]
    let parameterCounts: [Int]
    /// Index of each trainable parameter's accumulator.
    let slots: [ObjectIdentifier: Int]
    let nodeCounts: [Int]
    /// Batch statistics of each BatchNorm node in the last training pass (equal in every chunk).
    var batchStatistics: [Int: BatchStatistics] = [:]

    init(nodes: [Node], trainable: [Parameter], capacity: Int, withGradients: Bool) {
        self.capacity = capacity
        nodeCounts = nodes.map(\.count)
        let scratchCount = nodes.map { $0.operation.scratchCount(batch: capacity) }.max() ?? 0
        parameterCounts = trainable.map { $0.weight.elementCount }
        arena = Arena(floats: Self.bytes(nodes: nodes, trainable: trainable, capacity: capacity, withGradients: withGradients) / MemoryLayout<Float>.size)
        activations = nodes.map { [arena] in arena.take($0.count * capacity) }
        nodeGradients = withGradients ? nodes.map { [arena] in arena.take($0.count * capacity) } : []
        scratch = scratchCount > 0 ? arena.take(scratchCount) : nil
        slots = Dictionary(uniqueKeysWithValues: trainable.enumerated().map { (ObjectIdentifier($1), $0) })
        // The mapping is zero-filled: the accumulators start at 0.
        parameterGradients = withGradients ? parameterCounts.map { [arena] in arena.take($0) } : []
    }

    /// Bytes a workspace of this shape holds (its arena's size), for the memory check before allocating.
    static func bytes(nodes: [Node], trainable: [Parameter], capacity: Int, withGradients: Bool) -> Int {
        // As the arena lays them out (each buffer rounded up to 64 bytes).
        let perNode = nodes.reduce(0) { $0 + Arena.footprint($1.count * capacity) } * (withGradients ? 2 : 1)
        let scratch = nodes.map { $0.operation.scratchCount(batch: capacity) }.max() ?? 0
        let parameters = withGradients ? trainable.reduce(0) { $0 + Arena.footprint($1.weight.elementCount) } : 0
        return (perNode + (scratch > 0 ? Arena.footprint(scratch) : 0) + parameters) * MemoryLayout<Float>.size
    }

    func gradient(_ parameter: Parameter) -> UnsafeMutablePointer<Float> {
        parameterGradients[slots[ObjectIdentifier(parameter)]!]
    }
}

/// Sums over a set of images: loss, correct top-1 and top-5 predictions.
public struct PassTotals: Sendable {
    public var images = 0
    public var lossSum: Double = 0
    public var top1Correct = 0
    public var top5Correct = 0

    public init() {}

    public static func + (a: PassTotals, b: PassTotals) -> PassTotals {
        var sum = a
        sum.images += b.images
        sum.lossSum += b.lossSum
        sum.top1Correct += b.top1Correct
        sum.top5Correct += b.top5Correct
        return sum
    }

    public var meanLoss: Double { images == 0 ? 0 : lossSum / Double(images) }
    public var top1Accuracy: Double { images == 0 ? 0 : Double(top1Correct) / Double(images) }
    public var top5Accuracy: Double { images == 0 ? 0 : Double(top5Correct) / Double(images) }
}

/// The engine that runs a `Model`: its Keras graph rebuilt as kernels, forward passes for
/// evaluation and backward passes for dC/dw, C the mean categorical cross-entropy (BatchNorm in
/// inference mode, dropout off, unless a pass is a training pass). It reads the model's
/// parameters and refolds what it derives from them whenever they change.
public final class Network: @unchecked Sendable {
    let nodes: [Node]
    /// The nodes some convolution's forward computes as its epilogue outside training passes
    /// (`Node.epilogue`).
    let foldedIntoStores: [Bool]
    let inputNode: Int
    let outputNode: Int
    /// The node whose output are the logits the loss uses: the softmax's input when the model
    /// ends in a softmax (Keras then computes the loss from logits too), else the output itself.
    let logitsNode: Int
    /// The model this network runs.
    public let model: Model
    /// The model's layers that are the identity at inference but act in Keras' training
    /// (augmentation, noise, activity regularization), one sentence each; `Trainer` refuses them.
    public let trainingOnlyLayers: [String]
    /// Every parameter, in checkpoint order.
    public var parameters: [Parameter] { model.parameters }
    /// Parameters that get gradients (trainable weights), in checkpoint order.
    public var trainableParameters: [Parameter] { model.trainableParameters }
    /// Each node's parameters' versions when its derived state was last computed.
    private var foldedVersions: [[Int]]
    /// Per-sample input shape (height, width, channels).
    public let inputShape: [Int]
    public let classCount: Int
    /// Worker threads (one per core by default). They only execute chunks: no result depends on
    /// how many there are (see `chunks(_:)`).
    public let workerCount: Int
    /// One workspace per chunk of the largest batch so far.
    private var workspaces: [Workspace] = []
    private var workspacesHaveGradients = false
    /// d(sum of losses)/dw of every trainable parameter since the last reset, in Double: the
    /// chunks' float sums are added here in chunk order when the gradients are read.
    private var gradientTotals: [UnsafeMutableBufferPointer<Double>] = []
    /// The checkpoint the model came from.
    public var checkpoint: Checkpoint { model.checkpoint }

    /// Builds the network from the model's config and parameters. `inputShape` (H, W, C) fills
    /// sizes the config leaves open and must agree with those it fixes.
    /// `kernels` says which convolution and Dense kernels stored sparse in a `gmtool export` file
    /// run as CSR in the forward pass (`KernelChoice`; the backward pass always uses the dense
    /// values). Other checkpoints always run dense.
    public convenience init(model: Model, inputShape: [Int]? = nil, workers: Int? = nil, kernels: KernelChoice = .dense) throws {
        try self.init(model: model, inputShape: inputShape, workers: workers, kernels: kernels, fusing: true)
    }

    /// `fusing` false leaves every layer its own node (tests compare the fused graph's bits with it).
    init(model: Model, inputShape: [Int]?, workers: Int?, kernels: KernelChoice, fusing: Bool) throws {
        let checkpoint = model.checkpoint
        guard let config = checkpoint.modelConfig else {
            throw CheckpointError(file: checkpoint.path, problem: "holds no architecture; pass the model config with --config")
        }
        self.model = model
        var builder = GraphBuilder(model: model)
        builder.kernels = kernels
        let (builtInput, builtOutput) = try builder.build(config, inputShape: inputShape)
        var kept = [builtInput, builtOutput]
        if fusing {
            kept = builder.fuseSparseEpilogues(keep: builder.foldZeroPadding(keep: builder.fuseReLUs(keep: kept)))
            builder.foldBatchNormsIntoStores(keep: kept)
        }
        let (input, output) = (kept[0], kept[1])
        nodes = builder.nodes
        var folded = [Bool](repeating: false, count: nodes.count)
        for node in nodes { if let target = node.epilogue { folded[target] = true } }
        foldedIntoStores = folded
        trainingOnlyLayers = builder.trainingOnlyLayers
        inputNode = input
        outputNode = output
        self.inputShape = nodes[input].shape
        let outputShape = nodes[output].shape
        guard outputShape.count == 1 else {
            throw CheckpointError(file: checkpoint.path, problem: "the model's output has shape \(outputShape); a class vector (classes,) is expected")
        }
        classCount = outputShape[0]
        if let softmax = nodes[output].operation as? ActivationOperation, softmax.kind == .softmax {
            logitsNode = nodes[output].inputs[0]
        } else {
            logitsNode = output
        }
        foldedVersions = nodes.map { $0.operation.parameters.map(\.version) }
        workerCount = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        // The workers are the parallelism; BLAS threads would only compete with them (and idle
        // OpenBLAS threads spin between calls).
        BLASThreads.set(1)
    }

    deinit { gradientTotals.forEach { $0.deallocate() } }

    /// Recomputes what nodes derive from parameters that changed since (pruning, a training
    /// step, new moving statistics). Every pass starts with it, on one thread.
    func refreshDerivedState() {
        for (index, node) in nodes.enumerated() {
            let versions = node.operation.parameters.map(\.version)
            if versions != foldedVersions[index] {
                node.operation.parametersChanged()
                foldedVersions[index] = versions
            }
        }
    }

    /// Floats per input image.
    public var inputCount: Int { inputShape.reduce(1, *) }

    /// The most images one chunk holds.
    public static let chunkLimit = 64

    /// The chunks a batch of `count` images is cut into: ceil(count / chunkLimit) contiguous
    /// ranges of near-equal size. Every kernel runs on one chunk at a time, and everything that
    /// sums over images (losses, parameter gradients, BatchNorm's batch statistics) sums per chunk
    /// and then over the chunks in chunk order. (64 keeps the GEMMs of a 100-image batch as large
    /// as two workers' halves were; smaller chunks measured slower on 2 cores.) The cut depends on `count` alone, never on the
    /// number of workers, so results are the same bytes for any `--threads` (a BLAS call's
    /// rounding can depend on its matrix sizes, which is why the sizes must not follow the workers).
    public static func chunks(_ count: Int) -> [Range<Int>] {
        guard count > 0 else { return [] }
        let chunkCount = (count + chunkLimit - 1) / chunkLimit
        let base = count / chunkCount, extra = count % chunkCount
        var start = 0
        return (0..<chunkCount).map { index in
            let size = base + (index < extra ? 1 : 0)
            defer { start += size }
            return start..<(start + size)
        }
    }

    /// Bytes the buffers of a pass over batches of `batch` images hold (activations, gradients
    /// and accumulators of every chunk, a gradient pass's float64 sums), besides the weights; Int.max where that overflows.
    public func passBytes(batch: Int, gradients: Bool) -> Int {
        guard batch > 0 else { return 0 }
        let chunkCount = (batch + Self.chunkLimit - 1) / Self.chunkLimit
        let capacity = (batch + chunkCount - 1) / chunkCount
        let perChunk = Workspace.bytes(nodes: nodes, trainable: trainableParameters, capacity: capacity, withGradients: gradients)
        // Gradients: the float64 totals, the pass's sum and the `GroupReducer`'s partial sums.
        let totals = gradients ? trainableParameters.reduce(0) { $0 + $1.weight.elementCount } * MemoryLayout<Double>.size * (GroupTree.maxHeld + 2) : 0
        let (all, overflow) = perChunk.multipliedReportingOverflow(by: chunkCount)
        return overflow ? .max : all.addingReportingOverflow(totals).overflow ? .max : all + totals
    }

    /// Refuses a batch whose buffers would not fit in this machine's memory, before allocating.
    public func checkMemory(batch: Int, gradients: Bool) throws {
        let needed = passBytes(batch: batch, gradients: gradients)
        let available = ProcessInfo.processInfo.physicalMemory
        guard UInt64(needed) <= available else {
            throw CheckpointError(file: checkpoint.path, problem: "a batch of \(batch) images needs \(gigabytes(Double(needed))) of buffers, more than this machine's \(gigabytes(Double(available))) of memory; use a smaller --batch-size")
        }
    }

    func prepareWorkspaces(_ ranges: [Range<Int>], gradients: Bool) {
        let capacity = ranges.map(\.count).max() ?? 0
        if workspaces.count >= ranges.count, (workspaces.first?.capacity ?? 0) >= capacity, workspacesHaveGradients || !gradients { return }
        // New workspaces: what the old ones accumulated goes into the totals first.
        commitGradients()
        workspaces = (0..<ranges.count).map { _ in
            Workspace(nodes: nodes, trainable: trainableParameters, capacity: capacity, withGradients: gradients)
        }
        workspacesHaveGradients = gradients
        if gradients && gradientTotals.isEmpty {
            gradientTotals = trainableParameters.map {
                let buffer = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(1, $0.weight.elementCount))
                buffer.initialize(repeating: 0)
                return buffer
            }
        }
    }

    /// The contexts of one node in every chunk a worker owns.
    func contexts(_ index: Int, chunks: [Int], ranges: [Range<Int>], training: TrainingContext?) -> [PassContext] {
        let node = nodes[index]
        return chunks.map { chunk in
            let workspace = workspaces[chunk]
            return PassContext(
                batch: ranges[chunk].count, inputs: node.inputs.map { workspace.activations[$0] },
                output: workspace.activations[index],
                inputGradients: workspacesHaveGradients ? node.inputs.map { $0 == inputNode ? nil : workspace.nodeGradients[$0] } : [],
                outputGradient: workspacesHaveGradients ? workspace.nodeGradients[index] : workspace.activations[index],
                scratch: workspace.scratch, workspace: workspace, training: training, node: index,
                chunk: chunk, firstImage: ranges[chunk].lowerBound)
        }
    }

    /// Runs the forward pass node by node over a worker's chunks. In training, BatchNorm takes
    /// all of them at once: its batch statistics are summed over every chunk of the batch.
    /// Otherwise a convolution with an epilogue runs its BatchNorm too, and that node is skipped;
    /// `backward` says whether the convolution's own output must be kept for a backward pass.
    private func runForward(chunks: [Int], ranges: [Range<Int>], training: TrainingContext?, backward: Bool) {
        for index in nodes.indices where index != inputNode && (training != nil || !foldedIntoStores[index]) {
            forward(index, contexts(index, chunks: chunks, ranges: ranges, training: training), training: training, backward: backward)
        }
    }

    /// Node `index`'s forward over `contexts` (its epilogue's too, outside training).
    private func forward(_ index: Int, _ contexts: [PassContext], training: TrainingContext?, backward: Bool) {
        let node = nodes[index]
        if let training, let coupled = node.operation as? BatchCoupledOperation {
            coupled.trainingForward(contexts, training)
        } else if training == nil, let target = node.epilogue, let convolution = node.operation as? ConvolutionOperation {
            let operation = nodes[target].operation
            let (batchNorm, relu) = (operation as? BatchNormReLUOperation).map { ($0.batchNorm, Optional($0.relu)) }
                ?? (operation as! BatchNormOperation, nil)
            for context in contexts {
                convolution.forward(context, storing: batchNorm.epilogue(relu: relu, output: context.workspace.activations[target],
                                                                          keepsConvolutionOutput: backward))
            }
        } else {
            for context in contexts { node.operation.forward(context) }
        }
    }

    private func runBackward(chunks: [Int], ranges: [Range<Int>], training: TrainingContext?) {
        for chunk in chunks {
            let workspace = workspaces[chunk]
            let batch = ranges[chunk].count
            for (index, count) in workspace.nodeCounts.enumerated() where index != logitsNode {
                workspace.nodeGradients[index].update(repeating: 0, count: count * batch)
            }
        }
        for index in stride(from: logitsNode, through: 0, by: -1) where index != inputNode {
            let contexts = contexts(index, chunks: chunks, ranges: ranges, training: training)
            if let training, let coupled = nodes[index].operation as? BatchCoupledOperation {
                coupled.trainingBackward(contexts, training)
            } else {
                for context in contexts { nodes[index].operation.backward(context) }
            }
        }
    }

    /// Scores the rows of one chunk: loss (from logits when the model ends in softmax), top-1
    /// and top-5. Writes d(loss sum)/d(logits) into the logits node's gradient when asked.
    private func score(_ workspace: Workspace, labels: UnsafePointer<Int32>, batch: Int, gradient: Bool) -> PassTotals {
        var totals = PassTotals()
        totals.images = batch
        let classes = classCount
        let output = workspace.activations[outputNode]
        // Without a softmax at the end the outputs are taken as logits.
        totals.lossSum = softmaxCrossEntropy(
            logits: workspace.activations[logitsNode], labels: labels, rows: batch, classes: classes,
            probabilities: nil, logitsGradient: gradient ? workspace.nodeGradients[logitsNode] : nil, meanOver: 1)
        for row in 0..<batch {
            let scores = output + row * classes
            let label = Int(labels[row])
            let target = scores[label]
            var above = 0, tiedBefore = 0
            for c in 0..<classes {
                if scores[c] > target { above += 1 } else if scores[c] == target && c < label { tiedBefore += 1 }
            }
            // Ties go to the lowest class index, as argmax does.
            if above + tiedBefore == 0 { totals.top1Correct += 1 }
            if above < 5 { totals.top5Correct += 1 }
        }
        return totals
    }

    /// The chunks worker `worker` of `participants` owns: every participants-th one.
    private func owned(by worker: Int, of participants: Int, chunkCount: Int) -> [Int] {
        Array(stride(from: worker, to: chunkCount, by: participants))
    }

    /// Runs the forward pass over `count` images (NHWC floats, `inputCount` each) and, when
    /// `accumulateGradients` is set, the backward pass, adding d(sum of losses)/dw into the
    /// gradient totals. The batch is cut into chunks (`chunks(_:)`) that the workers share out.
    /// With `trainingSeed`, the pass runs in training mode: BatchNorm normalises with the batch's
    /// own statistics (over all chunks) and then updates its moving statistics as Keras does,
    /// Dropout drops (masks drawn from the seed and each image's place in the batch); gradients
    /// are always accumulated then.
    public func pass(images: UnsafePointer<Float>, labels: UnsafePointer<Int32>, count: Int,
                     accumulateGradients: Bool, trainingSeed: UInt64? = nil) -> PassTotals {
        let accumulateGradients = accumulateGradients || trainingSeed != nil
        let ranges = Self.chunks(count)
        guard !ranges.isEmpty else { return PassTotals() }
        refreshDerivedState()
        prepareWorkspaces(ranges, gradients: accumulateGradients)
        let participants = min(workerCount, ranges.count)
        let reducer = ChunkReducer(chunks: ranges.count, participants: participants)
        let results = UnsafeMutableBufferPointer<PassTotals>.allocate(capacity: ranges.count)
        results.initialize(repeating: PassTotals())
        defer { results.deallocate() }
        let inputCount = self.inputCount
        onWorkers(participants) { worker in
            let mine = self.owned(by: worker, of: participants, chunkCount: ranges.count)
            for chunk in mine {
                self.workspaces[chunk].activations[self.inputNode]
                    .update(from: images + ranges[chunk].lowerBound * inputCount, count: ranges[chunk].count * inputCount)
            }
            let training = trainingSeed.map { TrainingContext(worker: worker, totalBatch: count, reducer: reducer, seed: $0) }
            self.runForward(chunks: mine, ranges: ranges, training: training, backward: accumulateGradients)
            for chunk in mine {
                results[chunk] = self.score(self.workspaces[chunk], labels: labels + ranges[chunk].lowerBound,
                                            batch: ranges[chunk].count, gradient: accumulateGradients)
            }
            if accumulateGradients { self.runBackward(chunks: mine, ranges: ranges, training: training) }
        }
        if trainingSeed != nil { updateMovingStatistics(batch: count) }
        return results.reduce(PassTotals(), +)
    }

    /// Sums every chunk workspace's float gradient sums in Double, in chunk order (starting from
    /// 0), adds that sum to the Double totals (or, `storing`, makes it the totals: a shard's
    /// group partial), and zeroes the accumulators. Chunk k of every batch accumulates into
    /// workspace k, in batch order, whichever worker ran it; the totals are read only through
    /// this, so the order per element is fixed: total + (chunk 0 + chunk 1 + ...). A gradient pass
    /// commits once per batch group (`gradientGroupBatches`); committing after every batch cost
    /// about 10% of a gradient pass. The workers split each parameter's elements.
    func commitGradients(storing: Bool = false) {
        guard workspacesHaveGradients, !gradientTotals.isEmpty else { return }
        let chunkCount = workspaces.count
        let participants = workerCount
        onWorkers(participants) { worker in
            for (slot, total) in self.gradientTotals.enumerated() {
                let count = self.workspaces[0].parameterCounts[slot]
                let range = (count * worker / participants)..<(count * (worker + 1) / participants)
                guard !range.isEmpty else { continue }
                let sources = self.workspaces.map { $0.parameterGradients[slot] }
                for i in range {
                    var sum = 0.0
                    for chunk in 0..<chunkCount { sum += Double(sources[chunk][i]) }
                    total[i] = storing ? sum : total[i] + sum
                }
                for source in sources { (source + range.lowerBound).update(repeating: 0, count: range.count) }
            }
        }
    }

    /// The Double totals of every trainable parameter (checkpoint order) after a commit: the sum
    /// of d(loss)/dw over the images so far, or a shard's group partial. Valid inside `body` only.
    func withGradientTotals<T>(_ body: ([UnsafeBufferPointer<Double>]) throws -> T) rethrows -> T {
        try body(trainableParameters.enumerated().map { slot, parameter in
            UnsafeBufferPointer(rebasing: gradientTotals[slot][0..<parameter.weight.elementCount])
        })
    }

    /// After a training pass: every BatchNorm's moving statistics move toward the batch's.
    private func updateMovingStatistics(batch: Int) {
        let statistics = workspaces[0].batchStatistics
        for (index, node) in nodes.enumerated() {
            let batchNorm = (node.operation as? BatchNormOperation) ?? (node.operation as? BatchNormReLUOperation)?.batchNorm
            guard let batchNorm, let s = statistics[index] else { continue }
            batchNorm.updateMovingStatistics(s, totalRows: batch * batchNorm.positions, momentum: batchNorm.momentum)
        }
    }

    /// Class scores (the model's output, e.g. softmax probabilities) for `count` images.
    public func predict(images: UnsafePointer<Float>, count: Int) -> [Float] {
        var output = [Float](repeating: 0, count: count * classCount)
        let ranges = Self.chunks(count)
        guard !ranges.isEmpty else { return output }
        refreshDerivedState()
        prepareWorkspaces(ranges, gradients: false)
        let participants = min(workerCount, ranges.count)
        let inputCount = self.inputCount
        let classes = classCount
        output.withUnsafeMutableBufferPointer { destination in
            let destination = destination.baseAddress!
            onWorkers(participants) { worker in
                let mine = self.owned(by: worker, of: participants, chunkCount: ranges.count)
                for chunk in mine {
                    self.workspaces[chunk].activations[self.inputNode]
                        .update(from: images + ranges[chunk].lowerBound * inputCount, count: ranges[chunk].count * inputCount)
                }
                self.runForward(chunks: mine, ranges: ranges, training: nil, backward: false)
                for chunk in mine {
                    (destination + ranges[chunk].lowerBound * classes)
                        .update(from: self.workspaces[chunk].activations[self.outputNode], count: ranges[chunk].count * classes)
                }
            }
        }
        return output
    }

    /// For training steps: the gradient of the mean loss of the last pass(es), in place: the
    /// totals scaled by 1 / imageCount, rounded to float. `body` gets one pointer per trainable
    /// parameter; afterwards every total is zero again.
    public func withMeanGradients<T>(imageCount: Int, _ body: ([UnsafeMutablePointer<Float>]) throws -> T) rethrows -> T {
        precondition(workspacesHaveGradients, "no gradient pass was run")
        commitGradients()
        let scale = 1 / Double(max(1, imageCount))
        // The first chunk's accumulators are zero after the commit: they hold the mean meanwhile.
        let target = workspaces[0].parameterGradients
        for (slot, total) in gradientTotals.enumerated() {
            for i in total.indices { target[slot][i] = Float(total[i] * scale) }
        }
        defer {
            for (slot, total) in gradientTotals.enumerated() {
                total.update(repeating: 0)
                target[slot].update(repeating: 0, count: total.count)
            }
        }
        return try body(target)
    }

    /// Runs `body(worker)` for workers 0..<count at once, one thread each (real threads: the
    /// workers of a training pass wait for each other at every BatchNorm, so they must all run
    /// even when there are more of them than cores). Each body touches only the chunks it owns
    /// and disjoint ranges of the outputs; parameters are read-only meanwhile. BLAS runs
    /// single-threaded inside: the workers are the parallelism (at 32x32 the GEMMs are too small
    /// to split well, the images are not).
    private func onWorkers(_ count: Int, _ body: (Int) -> Void) {
        if count <= 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            final class Job { let run: () -> Void; init(_ run: @escaping () -> Void) { self.run = run } }
            var threads: [pthread_t] = []
            for worker in 1..<count {
                nonisolated(unsafe) let body = body
                let job = Unmanaged.passRetained(Job { body(worker) }).toOpaque()
                var attributes = pthread_attr_t()
                pthread_attr_init(&attributes)
                pthread_attr_setstacksize(&attributes, 8 << 20)
                var thread = pthread_t()
                let status = pthread_create(&thread, &attributes, { job in
                    let job = Unmanaged<Job>.fromOpaque(job!).takeRetainedValue()
                    job.run()
                    return nil
                }, job)
                pthread_attr_destroy(&attributes)
                precondition(status == 0, "could not start a worker thread (error \(status))")
                threads.append(thread)
            }
            body(0)
            // Joined before returning: no thread still holds `body` afterwards.
            for thread in threads { pthread_join(thread, nil) }
        }
    }

    /// Zeroes the gradient totals and every chunk's accumulators.
    public func resetGradients() {
        for total in gradientTotals { total.update(repeating: 0) }
        for workspace in workspaces where workspacesHaveGradients {
            for (pointer, count) in zip(workspace.parameterGradients, workspace.parameterCounts) { pointer.update(repeating: 0, count: count) }
        }
    }

    /// The accumulated d(sum of losses)/dw of every trainable parameter divided by `imageCount`
    /// (so it is the gradient of the mean loss); resets the totals.
    public func takeGradients(imageCount: Int) -> [(parameter: Parameter, gradient: [Float])] {
        guard !gradientTotals.isEmpty else { return trainableParameters.map { ($0, [Float](repeating: 0, count: $0.weight.elementCount)) } }
        commitGradients()
        return trainableParameters.enumerated().map { slot, parameter in
            let total = gradientTotals[slot]
            defer { total.update(repeating: 0) }
            return (parameter, meanGradient(UnsafeBufferPointer(rebasing: total[0..<parameter.weight.elementCount]), imageCount: imageCount))
        }
    }
}

/// One convolution or Dense layer whose kernel the file stores sparse, and the kernel its forward
/// pass runs at a batch size (`Network.sparseLayers(batch:)`).
public struct SparseLayerUse: Sendable {
    public var node: String
    /// Rows of the matrix product per call (images per chunk times output positions).
    public var rows: Int
    public var inputs: Int
    public var outputs: Int
    public var stored: Int
    public var runsSparse: Bool
    /// The BatchNormalization + ReLU node fused into this layer (`GraphBuilder.fuseSparseEpilogues`),
    /// whose time the layer's forward pass includes; nil where none.
    public var epilogueNode: String?
    /// The cost model's predictions for one call, seconds.
    public var predictedSparse: Double
    public var predictedDense: Double
    public var density: Double { Double(stored) / Double(max(1, inputs * outputs)) }
}

extension Network {
    /// The layers that can run sparse and what they run for batches of `batch` images (the
    /// choice is made per chunk size; the largest chunk of the batch is reported).
    public func sparseLayers(batch: Int) -> [SparseLayerUse] {
        let chunk = Self.chunks(max(1, batch)).map(\.count).max() ?? 1
        return nodes.compactMap { node in
            guard let op = node.operation as? ConvolutionOperation, let sparse = op.sparse else { return nil }
            let cost = KernelCost(rows: chunk * op.rowsPerImage, inputs: op.patch, outputs: op.outputChannels,
                                  stored: sparse.values.count, pointwise: op.geometry.isPointwise)
            return SparseLayerUse(node: node.name, rows: chunk * op.rowsPerImage, inputs: op.patch, outputs: op.outputChannels,
                                  stored: sparse.values.count, runsSparse: op.runsSparse(batch: chunk), epilogueNode: op.epilogueNode,
                                  predictedSparse: cost.sparseSeconds, predictedDense: cost.denseSeconds)
        }
    }

    /// Each node's layer class in `forwardSecondsPerNode`'s order (for benchmarks).
    public var nodeClasses: [String] { nodes.indices.filter { $0 != inputNode }.map { nodes[$0].className } }

    /// For benchmarks (`gmtool-bench layers`): seconds each node's forward pass takes over
    /// `count` images cut into chunks as a pass cuts them, all on the calling thread, best of
    /// `repeats`, in node order (the input node excluded), as an inference pass runs them: a
    /// convolution's time includes the BatchNorm it applies as its epilogue, and that node's is 0.
    public func forwardSecondsPerNode(images: UnsafePointer<Float>, count: Int, repeats: Int) -> [(node: String, seconds: Double)] {
        let ranges = Self.chunks(count)
        guard !ranges.isEmpty else { return [] }
        refreshDerivedState()
        prepareWorkspaces(ranges, gradients: false)
        let all = Array(ranges.indices)
        for chunk in all {
            workspaces[chunk].activations[inputNode]
                .update(from: images + ranges[chunk].lowerBound * inputCount, count: ranges[chunk].count * inputCount)
        }
        var best = [Double](repeating: .infinity, count: nodes.count)
        for _ in 0..<max(1, repeats) {
            for index in nodes.indices where index != inputNode {
                guard !foldedIntoStores[index] else { best[index] = 0; continue }
                let contexts = contexts(index, chunks: all, ranges: ranges, training: nil)
                let start = DispatchTime.now().uptimeNanoseconds
                forward(index, contexts, training: nil, backward: false)
                best[index] = min(best[index], Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
        }
        return nodes.indices.filter { $0 != inputNode }.map { (nodes[$0].name, best[$0]) }
    }
}

/// The gradient of the mean loss from the Double sum over `imageCount` images, rounded to float:
/// the one conversion `gradients` and `mergeGradientShards` both use, so a merge gives the same bits.
public func meanGradient(_ total: UnsafeBufferPointer<Double>, imageCount: Int) -> [Float] {
    let scale = 1 / Double(max(1, imageCount))
    return total.map { Float($0 * scale) }
}

/// 123456789012 -> "123.5 GB" (decimal units, as `gmtool stats` prints sizes).
func gigabytes(_ bytes: Double) -> String { String(format: "%.1f GB", bytes / 1e9) }
