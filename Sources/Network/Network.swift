import Dispatch
import Foundation
import KerasCheckpoint
import NeuralKernels

/// Per-worker buffers: one activation and one gradient buffer per node, im2col scratch, and the
/// gradient accumulators of every trainable parameter. Each worker thread touches only its own
/// workspace, which is why it is `@unchecked Sendable`.
final class Workspace: @unchecked Sendable {
    let capacity: Int
    let activations: [UnsafeMutablePointer<Float>]
    let nodeGradients: [UnsafeMutablePointer<Float>]
    let scratch: UnsafeMutablePointer<Float>?
    let parameterGradients: [UnsafeMutablePointer<Float>]
    let parameterCounts: [Int]
    let nodeCounts: [Int]
    /// Batch statistics of each BatchNorm node in the last training pass.
    var batchStatistics: [Int: BatchStatistics] = [:]

    init(nodes: [Node], trainable: [Parameter], capacity: Int, withGradients: Bool) {
        self.capacity = capacity
        nodeCounts = nodes.map(\.count)
        activations = nodes.map { .allocate(capacity: max(1, $0.count * capacity)) }
        nodeGradients = withGradients ? nodes.map { .allocate(capacity: max(1, $0.count * capacity)) } : []
        let scratchCount = nodes.map { $0.operation.scratchPerSample }.max() ?? 0
        scratch = scratchCount > 0 ? .allocate(capacity: scratchCount * capacity) : nil
        parameterCounts = trainable.map { $0.weight.elementCount }
        parameterGradients = withGradients ? trainable.map { .allocate(capacity: max(1, $0.weight.elementCount)) } : []
        for (pointer, count) in zip(parameterGradients, parameterCounts) { pointer.update(repeating: 0, count: count) }
    }

    deinit {
        activations.forEach { $0.deallocate() }
        nodeGradients.forEach { $0.deallocate() }
        scratch?.deallocate()
        parameterGradients.forEach { $0.deallocate() }
    }

    func gradient(_ parameter: Parameter) -> UnsafeMutablePointer<Float> {
        parameterGradients[parameter.gradientSlot!]
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

/// A Keras model rebuilt from its checkpoint: forward passes for evaluation and backward passes
/// for dC/dw, C the mean categorical cross-entropy, BatchNorm in inference mode, dropout off.
public final class Network: @unchecked Sendable {
    let nodes: [Node]
    let inputNode: Int
    let outputNode: Int
    /// The node whose output are the logits the loss uses: the softmax's input when the model
    /// ends in a softmax (Keras then computes the loss from logits too), else the output itself.
    let logitsNode: Int
    /// Every parameter, in checkpoint order.
    public let parameters: [Parameter]
    /// Parameters that get gradients (trainable weights), in checkpoint order.
    public let trainableParameters: [Parameter]
    /// Per-sample input shape (height, width, channels).
    public let inputShape: [Int]
    public let classCount: Int
    /// Worker threads (one per core); each runs the network on its share of a batch.
    public let workerCount: Int
    private var workspaces: [Workspace] = []
    private var workspacesHaveGradients = false
    /// The checkpoint the weights came from.
    public let checkpoint: Checkpoint

    /// Builds the network from the checkpoint's model config and weights. `inputShape` (H, W, C)
    /// fills sizes the config leaves open and must agree with those it fixes.
    /// With `sparseKernels`, convolution and Dense kernels stored sparse in a `gmtool export`
    /// file run as CSR in the forward pass (the backward pass always uses the dense values).
    public init(checkpoint: Checkpoint, inputShape: [Int]? = nil, workers: Int? = nil, sparseKernels: Bool = false) throws {
        guard let config = checkpoint.modelConfig else {
            throw CheckpointError(file: checkpoint.path, problem: "holds no architecture; pass the model config with --config")
        }
        self.checkpoint = checkpoint
        var builder = GraphBuilder(checkpoint: checkpoint)
        builder.useSparseKernels = sparseKernels
        let (builtInput, builtOutput) = try builder.build(config, inputShape: inputShape)
        let kept = builder.fuseBatchNormReLU(keep: [builtInput, builtOutput])
        let (input, output) = (kept[0], kept[1])
        nodes = builder.nodes
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
        // Checkpoint order, so gradients line up with the file.
        let order = Dictionary(uniqueKeysWithValues: checkpoint.weights.enumerated().map { ($1.datasetPath, $0) })
        parameters = builder.parameters.sorted { order[$0.weight.datasetPath]! < order[$1.weight.datasetPath]! }
        trainableParameters = parameters.filter(\.weight.trainable)
        for (slot, parameter) in trainableParameters.enumerated() { parameter.gradientSlot = slot }
        workerCount = max(1, workers ?? ProcessInfo.processInfo.activeProcessorCount)
        // The workers are the parallelism; BLAS threads would only compete with them (and idle
        // OpenBLAS threads spin between calls).
        BLASThreads.set(1)
    }

    /// Call after changing parameter values in place (pruning, training).
    public func parametersChanged() {
        for node in nodes { node.operation.parametersChanged() }
    }

    /// Floats per input image.
    public var inputCount: Int { inputShape.reduce(1, *) }

    private func prepareWorkspaces(batch: Int, gradients: Bool) {
        let share = (batch + workerCount - 1) / workerCount
        if workspaces.count == workerCount, workspaces[0].capacity >= share, workspacesHaveGradients || !gradients { return }
        workspaces = (0..<workerCount).map { _ in
            Workspace(nodes: nodes, trainable: trainableParameters, capacity: share, withGradients: gradients)
        }
        workspacesHaveGradients = gradients
    }

    /// Splits `count` rows into contiguous shares, one per worker.
    private func shares(_ count: Int) -> [Range<Int>] {
        let share = (count + workerCount - 1) / workerCount
        return (0..<workerCount).map { min($0 * share, count)..<min(($0 + 1) * share, count) }
    }

    private func runForward(_ workspace: Workspace, batch: Int, training: TrainingContext? = nil) {
        for (index, node) in nodes.enumerated() where index != inputNode {
            node.operation.forward(PassContext(
                batch: batch, inputs: node.inputs.map { workspace.activations[$0] }, output: workspace.activations[index],
                inputGradients: [], outputGradient: workspace.activations[index], scratch: workspace.scratch,
                workspace: workspace, training: training, node: index))
        }
    }

    /// Scores the rows of one worker: loss (from logits when the model ends in softmax), top-1
    /// and top-5. Writes d(loss sum)/d(logits) into the logits node's gradient when asked.
    private func score(_ workspace: Workspace, labels: UnsafePointer<Int32>, batch: Int, gradient: Bool) -> PassTotals {
        var totals = PassTotals()
        totals.images = batch
        let classes = classCount
        let output = workspace.activations[outputNode]
        if logitsNode != outputNode {
            totals.lossSum = softmaxCrossEntropy(
                logits: workspace.activations[logitsNode], labels: labels, rows: batch, classes: classes,
                probabilities: nil, logitsGradient: gradient ? workspace.nodeGradients[logitsNode] : nil, meanOver: 1)
        } else {
            // No softmax at the end: the outputs are taken as logits.
            totals.lossSum = softmaxCrossEntropy(
                logits: output, labels: labels, rows: batch, classes: classes, probabilities: nil,
                logitsGradient: gradient ? workspace.nodeGradients[outputNode] : nil, meanOver: 1)
        }
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

    private func runBackward(_ workspace: Workspace, batch: Int, training: TrainingContext? = nil) {
        for (index, count) in workspace.nodeCounts.enumerated() where index != logitsNode {
            workspace.nodeGradients[index].update(repeating: 0, count: count * batch)
        }
        for index in stride(from: logitsNode, through: 0, by: -1) where index != inputNode {
            let node = nodes[index]
            node.operation.backward(PassContext(
                batch: batch, inputs: node.inputs.map { workspace.activations[$0] }, output: workspace.activations[index],
                inputGradients: node.inputs.map { $0 == inputNode ? nil : workspace.nodeGradients[$0] },
                outputGradient: workspace.nodeGradients[index], scratch: workspace.scratch, workspace: workspace,
                training: training, node: index))
        }
    }

    /// Runs the forward pass over `count` images (NHWC floats, `inputCount` each) and, when
    /// `accumulateGradients` is set, the backward pass, adding d(sum of losses)/dw into the
    /// gradient accumulators. Both cores work: each worker takes a contiguous share of the batch.
    /// With `trainingSeed`, the pass runs in training mode: BatchNorm normalises with the batch's
    /// own statistics (over all workers) and then updates its moving statistics as Keras does,
    /// Dropout drops (masks drawn from the seed); gradients are always accumulated then.
    public func pass(images: UnsafePointer<Float>, labels: UnsafePointer<Int32>, count: Int,
                     accumulateGradients: Bool, trainingSeed: UInt64? = nil) -> PassTotals {
        let accumulateGradients = accumulateGradients || trainingSeed != nil
        prepareWorkspaces(batch: count, gradients: accumulateGradients)
        let ranges = shares(count)
        let participants = ranges.filter { !$0.isEmpty }.count
        let reducer = AllReduce(participants: max(1, participants))
        let results = UnsafeMutableBufferPointer<PassTotals>.allocate(capacity: workerCount)
        defer { results.deallocate() }
        let inputCount = self.inputCount
        let resultsPointer = results
        onWorkers { worker in
            let range = ranges[worker]
            guard !range.isEmpty else { resultsPointer[worker] = PassTotals(); return }
            let workspace = self.workspaces[worker]
            workspace.activations[self.inputNode].update(from: images + range.lowerBound * inputCount, count: range.count * inputCount)
            let training = trainingSeed.map { TrainingContext(worker: worker, totalBatch: count, reducer: reducer, seed: $0) }
            self.runForward(workspace, batch: range.count, training: training)
            resultsPointer[worker] = self.score(workspace, labels: labels + range.lowerBound, batch: range.count,
                                                gradient: accumulateGradients)
            if accumulateGradients { self.runBackward(workspace, batch: range.count, training: training) }
        }
        if trainingSeed != nil { updateMovingStatistics(batch: count) }
        return results.reduce(PassTotals(), +)
    }

    /// After a training pass: every BatchNorm's moving statistics move toward the batch's.
    private func updateMovingStatistics(batch: Int) {
        let statistics = workspaces[0].batchStatistics
        for (index, node) in nodes.enumerated() {
            let batchNorm = (node.operation as? BatchNormOperation) ?? (node.operation as? BatchNormReLUOperation)?.batchNorm
            guard let batchNorm, let s = statistics[index] else { continue }
            batchNorm.updateMovingStatistics(s, totalRows: batch * batchNorm.positions, momentum: batchNorm.momentum)
            batchNorm.parametersChanged()
        }
    }

    /// Class scores (the model's output, e.g. softmax probabilities) for `count` images.
    public func predict(images: UnsafePointer<Float>, count: Int) -> [Float] {
        var output = [Float](repeating: 0, count: count * classCount)
        prepareWorkspaces(batch: count, gradients: false)
        let ranges = shares(count)
        let inputCount = self.inputCount
        let classes = classCount
        output.withUnsafeMutableBufferPointer { destination in
            onWorkers { worker in
                let range = ranges[worker]
                guard !range.isEmpty else { return }
                let workspace = self.workspaces[worker]
                workspace.activations[self.inputNode].update(from: images + range.lowerBound * inputCount, count: range.count * inputCount)
                self.runForward(workspace, batch: range.count)
                (destination.baseAddress! + range.lowerBound * classes)
                    .update(from: workspace.activations[self.outputNode], count: range.count * classes)
            }
        }
        return output
    }

    /// For training steps: the gradient of the mean loss of the last pass(es), in place. Worker
    /// accumulators are summed into the first worker's (in worker order, so the result is
    /// deterministic) and scaled by 1 / imageCount; `body` gets one pointer per trainable
    /// parameter; afterwards every accumulator is zero again.
    public func withMeanGradients<T>(imageCount: Int, _ body: ([UnsafeMutablePointer<Float>]) throws -> T) rethrows -> T {
        precondition(workspacesHaveGradients, "no gradient pass was run")
        let scale = 1 / Float(max(1, imageCount))
        let target = workspaces[0].parameterGradients
        let counts = workspaces[0].parameterCounts
        for slot in target.indices {
            let sum = target[slot]
            for other in workspaces.dropFirst() {
                let source = other.parameterGradients[slot]
                for i in 0..<counts[slot] { sum[i] += source[i] }
                source.update(repeating: 0, count: counts[slot])
            }
            for i in 0..<counts[slot] { sum[i] *= scale }
        }
        defer { for slot in target.indices { target[slot].update(repeating: 0, count: counts[slot]) } }
        return try body(target)
    }

    /// Runs `body(worker)` for every worker at once, one thread each. Each body touches only its
    /// own workspace and a disjoint range of the outputs; parameters are read-only meanwhile.
    /// BLAS runs single-threaded inside: the workers are the parallelism (at 32x32 the GEMMs are
    /// too small to split well, samples are not).
    private func onWorkers(_ body: (Int) -> Void) {
        if workerCount == 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            nonisolated(unsafe) let body = body
            DispatchQueue.concurrentPerform(iterations: workerCount) { body($0) }
        }
    }

    /// Zeroes every worker's gradient accumulators.
    public func resetGradients() {
        for workspace in workspaces where workspacesHaveGradients {
            for (pointer, count) in zip(workspace.parameterGradients, workspace.parameterCounts) { pointer.update(repeating: 0, count: count) }
        }
    }

    /// The accumulated d(sum of losses)/dw of every trainable parameter, summed over workers and
    /// divided by `imageCount` (so it is the gradient of the mean loss); resets the accumulators.
    public func takeGradients(imageCount: Int) -> [(parameter: Parameter, gradient: [Float])] {
        guard workspacesHaveGradients else { return trainableParameters.map { ($0, [Float](repeating: 0, count: $0.weight.elementCount)) } }
        let scale = 1 / Double(max(1, imageCount))
        return trainableParameters.enumerated().map { slot, parameter in
            let count = parameter.weight.elementCount
            var sum = [Double](repeating: 0, count: count)
            for workspace in workspaces {
                let source = workspace.parameterGradients[slot]
                for i in 0..<count { sum[i] += Double(source[i]) }
                source.update(repeating: 0, count: count)
            }
            return (parameter, sum.map { Float($0 * scale) })
        }
    }
}
