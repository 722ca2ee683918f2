import Foundation
import KerasCheckpoint
import Network

/// Learning rate as a function of the step (Keras' schedules).
public enum LearningRateSchedule: Sendable, Equatable, Codable {
    case constant
    /// Multiply by `factor` every `everySteps` steps (Keras ExponentialDecay with staircase).
    case step(everySteps: Int, factor: Double)
    /// Keras CosineDecay: lr * (1 + cos(pi * min(step, total) / total)) / 2.
    case cosine(totalSteps: Int)

    public func rate(_ base: Double, step: Int) -> Double {
        switch self {
        case .constant: return base
        case .step(let every, let factor): return base * pow(factor, Double(step / max(1, every)))
        case .cosine(let total):
            let progress = Double(min(step, total)) / Double(max(1, total))
            return base * 0.5 * (1 + cos(Double.pi * progress))
        }
    }
}

/// The optimizer and its hyperparameters, as Keras (tf.keras >= 2.11 optimizers) defines them.
public enum OptimizerKind: Sendable, Equatable, Codable {
    case sgd(momentum: Float, nesterov: Bool)
    case adam(beta1: Float, beta2: Float, epsilon: Float)
}

public struct OptimizerSettings: Sendable, Equatable, Codable {
    public var kind: OptimizerKind
    public var learningRate: Double
    public var schedule: LearningRateSchedule
    /// Decoupled weight decay, as Keras applies it: w -= w * decay * lr before the update.
    public var weightDecay: Float

    public init(kind: OptimizerKind, learningRate: Double, schedule: LearningRateSchedule = .constant, weightDecay: Float = 0) {
        self.kind = kind
        self.learningRate = learningRate
        self.schedule = schedule
        self.weightDecay = weightDecay
    }
}

/// SGD (with momentum, Nesterov) or Adam over the network's trainable parameters, with the
/// pruning masks applied to the gradients before the update and to the weights and the
/// optimizer's slots after it, so momentum or weight decay can never revive a pruned weight.
/// Slots live in one allocation per parameter and are updated in place.
public final class Optimizer {
    public let settings: OptimizerSettings
    /// Steps taken so far (Keras' `iterations`).
    public private(set) var iterations: Int
    /// First slot (momentum or Adam's m) and second slot (Adam's v), by dataset path.
    private var firstSlots: [String: UnsafeMutableBufferPointer<Float>] = [:]
    private var secondSlots: [String: UnsafeMutableBufferPointer<Float>] = [:]

    public init(settings: OptimizerSettings, iterations: Int = 0) {
        self.settings = settings
        self.iterations = iterations
    }

    deinit {
        firstSlots.values.forEach { $0.deallocate() }
        secondSlots.values.forEach { $0.deallocate() }
    }

    /// Whether the optimizer keeps a first slot (momentum, Adam's m) and a second (Adam's v).
    var usesFirstSlot: Bool {
        switch settings.kind {
        case .sgd(let momentum, _): return momentum != 0
        case .adam: return true
        }
    }
    var usesSecondSlot: Bool { if case .adam = settings.kind { return true } else { return false } }

    private func slot(_ table: inout [String: UnsafeMutableBufferPointer<Float>], _ key: String, _ count: Int) -> UnsafeMutableBufferPointer<Float> {
        if let existing = table[key] { return existing }
        let fresh = UnsafeMutableBufferPointer<Float>.allocate(capacity: count)
        fresh.initialize(repeating: 0)
        table[key] = fresh
        return fresh
    }

    /// Slot values for saving (`first` is momentum / m, `second` Adam's v).
    public func slots(for key: String) -> (first: [Float]?, second: [Float]?) {
        (firstSlots[key].map(Array.init), secondSlots[key].map(Array.init))
    }

    /// Restores saved slots.
    public func restore(iterations: Int, first: [String: [Float]], second: [String: [Float]]) {
        self.iterations = iterations
        for (key, values) in first { _ = slot(&firstSlots, key, values.count).update(fromContentsOf: values) }
        for (key, values) in second { _ = slot(&secondSlots, key, values.count).update(fromContentsOf: values) }
    }

    public var currentLearningRate: Double { settings.schedule.rate(settings.learningRate, step: iterations) }

    /// One step. `gradients[i]` points at dC/dw of `parameters[i]` (it is masked in place);
    /// `masks` (by dataset path) are the pruning masks.
    public func step(_ parameters: [Parameter], gradients: [UnsafeMutablePointer<Float>], masks: [String: [UInt8]]) {
        let lr = Float(currentLearningRate)
        let t = Float(iterations + 1)
        // Slots are created here, on one thread, before the parallel update.
        let jobs = parameters.indices.map { index -> (Parameter, UnsafeMutablePointer<Float>, UnsafeMutableBufferPointer<Float>?, UnsafeMutableBufferPointer<Float>?, [UInt8]?) in
            let p = parameters[index], key = p.weight.datasetPath, count = p.weight.elementCount
            return (p, gradients[index], usesFirstSlot ? slot(&firstSlots, key, count) : nil,
                    usesSecondSlot ? slot(&secondSlots, key, count) : nil, masks[key])
        }
        let settings = self.settings
        nonisolated(unsafe) let work = jobs
        // Parameters are independent: split them over the cores.
        let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, jobs.count))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for index in stride(from: worker, to: work.count, by: workers) {
                let (parameter, g, first, second, mask) = work[index]
                Self.update(parameter.values, g, first, second, mask, settings: settings, lr: lr, t: t)
            }
        }
        iterations += 1
    }

    private static func update(_ w: UnsafeMutableBufferPointer<Float>, _ g: UnsafeMutablePointer<Float>,
                               _ first: UnsafeMutableBufferPointer<Float>?, _ second: UnsafeMutableBufferPointer<Float>?,
                               _ mask: [UInt8]?, settings: OptimizerSettings, lr: Float, t: Float) {
        let count = w.count
        if let mask { for i in 0..<count where mask[i] == 0 { g[i] = 0 } }
        if settings.weightDecay != 0 {
            let decay = settings.weightDecay * lr
            for i in 0..<count { w[i] -= w[i] * decay }
        }
        switch settings.kind {
        case .sgd(let momentum, let nesterov):
            if let m = first {
                for i in 0..<count {
                    m[i] = -g[i] * lr + m[i] * momentum
                    w[i] += nesterov ? -g[i] * lr + m[i] * momentum : m[i]
                }
            } else {
                for i in 0..<count { w[i] += -g[i] * lr }
            }
        case .adam(let beta1, let beta2, let epsilon):
            let alpha = lr * (1 - pow(beta2, t)).squareRoot() / (1 - pow(beta1, t))
            let m = first!, v = second!
            for i in 0..<count {
                m[i] += (g[i] - m[i]) * (1 - beta1)
                v[i] += (g[i] * g[i] - v[i]) * (1 - beta2)
                w[i] -= (m[i] * alpha) / (v[i].squareRoot() + epsilon)
            }
        }
        if let mask {
            for i in 0..<count where mask[i] == 0 {
                w[i] = 0
                first?[i] = 0
                second?[i] = 0
            }
        }
    }

    /// Zeroes the slots where a mask is 0 (after a pruning step).
    public func applyMasks(_ masks: [String: [UInt8]]) {
        for (key, mask) in masks {
            if let m = firstSlots[key] { for i in m.indices where mask[i] == 0 { m[i] = 0 } }
            if let v = secondSlots[key] { for i in v.indices where mask[i] == 0 { v[i] = 0 } }
        }
    }
}
