import Foundation
import KerasCheckpoint
import ModelState

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

/// SGD (with momentum, Nesterov) or Adam over a model's trainable parameters. The slots
/// (momentum, Adam's m and v) belong to the parameters (`Parameter.slot`), so the model holds
/// the whole training state; the optimizer holds its settings and the step count. Each
/// parameter's pruning mask is applied to its gradient before the update and to the weight and
/// slots after it, so momentum or weight decay can never revive a pruned weight.
public final class Optimizer {
    public let settings: OptimizerSettings
    /// Steps taken so far (Keras' `iterations`).
    public private(set) var iterations: Int

    public init(settings: OptimizerSettings, iterations: Int = 0) {
        self.settings = settings
        self.iterations = iterations
    }

    /// Whether the optimizer keeps a first slot (momentum, Adam's m) and a second (Adam's v).
    public var usesFirstSlot: Bool {
        switch settings.kind {
        case .sgd(let momentum, _): return momentum != 0
        case .adam: return true
        }
    }
    public var usesSecondSlot: Bool { if case .adam = settings.kind { return true } else { return false } }

    /// Continues a saved run (its slots are restored into the parameters).
    public func restore(iterations: Int) { self.iterations = iterations }

    public var currentLearningRate: Double { settings.schedule.rate(settings.learningRate, step: iterations) }

    /// One step. `gradients[i]` points at dC/dw of `parameters[i]` (it is masked in place).
    public func step(_ parameters: [Parameter], gradients: [UnsafeMutablePointer<Float>]) {
        let lr = Float(currentLearningRate)
        let t = Float(iterations + 1)
        // Slots are created here, on one thread, before the parallel update.
        nonisolated(unsafe) let first = parameters.map { usesFirstSlot ? $0.slot(0) : nil }
        nonisolated(unsafe) let second = parameters.map { usesSecondSlot ? $0.slot(1) : nil }
        let masks = parameters.map(\.mask)
        let settings = self.settings
        nonisolated(unsafe) let gradients = gradients
        Parameter.update(parameters) { values in
            nonisolated(unsafe) let values = values
            // Parameters are independent: split them over the cores.
            let workers = max(1, min(ProcessInfo.processInfo.activeProcessorCount, parameters.count))
            DispatchQueue.concurrentPerform(iterations: workers) { worker in
                for index in stride(from: worker, to: values.count, by: workers) {
                    Self.update(values[index], gradients[index], first[index], second[index], masks[index], settings: settings, lr: lr, t: t)
                }
            }
        }
        iterations += 1
    }

    private static func update(_ w: UnsafeMutableBufferPointer<Float>, _ g: UnsafeMutablePointer<Float>,
                               _ first: UnsafeMutableBufferPointer<Float>?, _ second: UnsafeMutableBufferPointer<Float>?,
                               _ mask: Mask?, settings: OptimizerSettings, lr: Float, t: Float) {
        let count = w.count
        if let mask { for i in 0..<count where !mask[i] { g[i] = 0 } }
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
            for i in 0..<count where !mask[i] {
                w[i] = 0
                first?[i] = 0
                second?[i] = 0
            }
        }
    }
}
