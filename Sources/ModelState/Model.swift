import Foundation
import KerasCheckpoint

/// One weight tensor of a model in memory: its values, its pruning mask and, during training, its
/// optimizer slots. Values change only through `update`, which counts the change (`version`), so
/// whatever is derived from them (BatchNorm's folded scale and shift, a sparse kernel) is
/// recomputed by its owner when it next runs, without the caller having to say so.
public final class Parameter: @unchecked Sendable {
    public let weight: CheckpointWeight
    private let storage: UnsafeMutableBufferPointer<Float>
    /// Changes with every `update`.
    public private(set) var version = 0
    /// The pruning mask of a prunable kernel that has one; nil keeps every weight.
    public private(set) var mask: Mask?
    /// Optimizer state (momentum, Adam's m and v), one buffer per slot, created on first use.
    private var slotStorage: [Int: UnsafeMutableBufferPointer<Float>] = [:]

    init(weight: CheckpointWeight, values: [Float], mask: Mask?) {
        self.weight = weight
        storage = .allocate(capacity: max(1, values.count))
        _ = storage.initialize(from: values)
        self.mask = mask
    }

    deinit {
        storage.deallocate()
        slotStorage.values.forEach { $0.deallocate() }
    }

    /// The values, read-only (`weight.elementCount` floats in one stable allocation, so kernels
    /// can take a pointer).
    public var values: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: storage.baseAddress, count: weight.elementCount) }
    public var pointer: UnsafePointer<Float> { UnsafePointer(storage.baseAddress!) }

    /// Changes the values in place; counts as a change.
    public func update<T>(_ body: (UnsafeMutableBufferPointer<Float>) throws -> T) rethrows -> T {
        defer { version &+= 1 }
        return try body(UnsafeMutableBufferPointer(start: storage.baseAddress, count: weight.elementCount))
    }

    /// Changes several parameters' values in place at once (one kernel over many tensors, on
    /// every core); each counts as changed.
    public static func update<T>(_ parameters: [Parameter], _ body: ([UnsafeMutableBufferPointer<Float>]) throws -> T) rethrows -> T {
        defer { for parameter in parameters { parameter.version &+= 1 } }
        return try body(parameters.map { UnsafeMutableBufferPointer(start: $0.storage.baseAddress, count: $0.weight.elementCount) })
    }

    /// Replaces the values.
    public func set(_ values: [Float]) {
        precondition(values.count == weight.elementCount, "\(weight.datasetPath): \(values.count) values for \(weight.elementCount)")
        update { _ = $0.update(fromContentsOf: values) }
    }

    /// Sets the mask: weights and optimizer slots where it is 0 become exactly 0. A mask only
    /// ever loses bits: where the old mask pruned, the new one must prune too.
    public func setMask(_ new: Mask) {
        precondition(new.count == weight.elementCount, "\(weight.datasetPath): mask of \(new.count) for \(weight.elementCount)")
        if let mask { precondition((0..<new.count).allSatisfy { mask[$0] || !new[$0] }, "\(weight.datasetPath): a mask cannot revive weights") }
        mask = new
        update { values in for i in values.indices where !new[i] { values[i] = 0 } }
        for slot in slotStorage.values { for i in slot.indices where !new[i] { slot[i] = 0 } }
    }

    /// Optimizer slot `index`, zeros when first asked for.
    public func slot(_ index: Int) -> UnsafeMutableBufferPointer<Float> {
        if let existing = slotStorage[index] { return existing }
        let fresh = UnsafeMutableBufferPointer<Float>.allocate(capacity: max(1, weight.elementCount))
        fresh.initialize(repeating: 0)
        slotStorage[index] = fresh
        return UnsafeMutableBufferPointer(rebasing: fresh[0..<weight.elementCount])
    }

    /// The slot's values, or nil when the optimizer never made it.
    public func slotValues(_ index: Int) -> [Float]? {
        slotStorage[index].map { Array($0.prefix(weight.elementCount)) }
    }

    /// Non-zero values.
    public var nonzeroCount: Int { values.reduce(0) { $0 + ($1 != 0 ? 1 : 0) } }

    /// Makes this parameter's values and mask those of `source` (the same weight), reviving what
    /// `setMask` never would: how a working copy goes back to the model it was copied from.
    /// Counts as a change. Optimizer slots are not copied (a copy is for pruning, not training).
    func restore(from source: Parameter) {
        precondition(source.weight.datasetPath == weight.datasetPath, "\(weight.datasetPath): restored from \(source.weight.datasetPath)")
        update { _ = $0.update(fromContentsOf: source.values) }
        mask = source.mask
    }
}

/// A Keras model in memory, loaded once from a checkpoint: every weight's values and mask (and,
/// in training, its optimizer slots) live here and nowhere else. The engine (`Network`) runs it,
/// pruning changes it in place, and `save` writes it through the checkpoint writer. This is the
/// one pruning state of gmtool: the file is only where it comes from and goes to.
public final class Model {
    /// The checkpoint the model was read from (its config, layout and every other object).
    public let checkpoint: Checkpoint
    /// Every weight, in checkpoint order.
    public let parameters: [Parameter]
    public let trainableParameters: [Parameter]
    private let byPath: [String: Parameter]

    /// Reads every weight and mask; values must be finite.
    public init(checkpoint: Checkpoint) throws {
        self.checkpoint = checkpoint
        var parameters: [Parameter] = []
        for weight in checkpoint.weights {
            let values = try checkpoint.read(weight)
            if let bad = values.firstIndex(where: { !$0.isFinite }) {
                throw CheckpointError(file: checkpoint.path, object: weight.datasetPath,
                                      problem: "holds a non-finite value (\(values[bad]) at index \(bad))")
            }
            // Kept as stored even where a mask bit is 0 and the value is not (a file trained
            // further outside gmtool): evaluation runs the weights the file holds, and pruning
            // and training zero them again through the mask.
            let mask = try checkpoint.mask(for: weight).map(Mask.init)
            parameters.append(Parameter(weight: weight, values: values, mask: mask))
        }
        self.parameters = parameters
        trainableParameters = parameters.filter(\.weight.trainable)
        byPath = Dictionary(uniqueKeysWithValues: parameters.map { ($0.weight.datasetPath, $0) })
    }

    /// A copy in memory: the same checkpoint, every weight's values and mask copied (optimizer
    /// slots are not). Prune the copy as often as wanted and `restore(from:)` the original between
    /// tries; the file is read once.
    public func copy() -> Model { Model(copying: self) }

    private init(copying source: Model) {
        checkpoint = source.checkpoint
        parameters = source.parameters.map { Parameter(weight: $0.weight, values: Array($0.values), mask: $0.mask) }
        trainableParameters = parameters.filter(\.weight.trainable)
        byPath = Dictionary(uniqueKeysWithValues: parameters.map { ($0.weight.datasetPath, $0) })
        restoredVersions = parameters.map(\.version)
    }

    /// Each parameter's version when it last equalled the source's (a copy's or restore's);
    /// `restore` copies only the parameters changed since.
    private var restoredVersions: [Int] = []

    /// Makes this copy equal to `source`, the model it was copied from, again: every parameter
    /// changed since the copy or the last restore gets the source's values and mask back (the
    /// engine sees them as changed by their versions).
    public func restore(from source: Model) {
        precondition(source.checkpoint === checkpoint && restoredVersions.count == parameters.count,
                     "restore(from:) takes the model this one was copied from")
        for (index, parameter) in parameters.enumerated() where parameter.version != restoredVersions[index] {
            parameter.restore(from: source.parameters[index])
            restoredVersions[index] = parameter.version
        }
    }

    public var path: String { checkpoint.path }

    public func parameter(for weight: CheckpointWeight) -> Parameter? { byPath[weight.datasetPath] }

    /// The `WeightsDigest` of every weight's current values, in model order.
    public var weightsDigest: String {
        var digest = WeightsDigest()
        for parameter in parameters { digest.add(parameter.values) }
        return digest.hex
    }

    public var totalParameters: Int { parameters.reduce(0) { $0 + $1.weight.elementCount } }
    public var nonzeroParameters: Int { parameters.reduce(0) { $0 + $1.nonzeroCount } }
    /// Zero parameters over all parameters.
    public var sparsity: Double { 1 - Double(nonzeroParameters) / Double(max(1, totalParameters)) }

    /// Writes the model over `output` atomically (`Checkpoint.write`): every weight that changed
    /// since loading, every mask, `pruning` as the masks' provenance (the group's attributes and
    /// each mask's own beta, gamma and counts), and `extra` state of gmtool's own.
    public func save(to output: String, pruning: [String: String] = [:], kernelAttributes: [CheckpointWeight: [String: String]] = [:],
                     extra: CheckpointEdits = CheckpointEdits()) throws {
        var edits = extra
        for parameter in parameters where parameter.version > 0 { edits.weights[parameter.weight] = Array(parameter.values) }
        for parameter in parameters { if let mask = parameter.mask { edits.masks[parameter.weight] = mask } }
        edits.maskAttributes.merge(pruning) { _, new in new }
        edits.maskDatasetAttributes.merge(kernelAttributes) { _, new in new }
        try checkpoint.write(to: output, edits: edits)
    }
}
