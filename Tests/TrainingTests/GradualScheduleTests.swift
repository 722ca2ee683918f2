import Testing
@testable import Training

/// tfmot's PolynomialDecay, in epochs: the values Python gives for its formula
/// `(initial - final) * (1 - p) ** power + final` (printed with repr), and its prune turns.
@Suite struct GradualScheduleTests {
    @Test func valuesAreTfmotsFormula() {
        let schedule = GradualSchedule(finalSparsity: 0.8, beginEpoch: 1, endEpoch: 3)
        #expect(schedule.sparsity(afterEpoch: 1) == 0)
        #expect(schedule.sparsity(afterEpoch: 2) == 0.7000000000000001)
        #expect(schedule.sparsity(afterEpoch: 3) == 0.8)
        #expect(schedule.sparsity(afterEpoch: 9) == 0.8, "p is clamped to 1 after the end")
        let other = GradualSchedule(initialSparsity: 0.1, finalSparsity: 0.9, beginEpoch: 2, endEpoch: 5)
        #expect(other.sparsity(afterEpoch: 3) == 0.6629629629629629)
        // (0.1 - 0.9) * 1 + 0.9 in doubles, as Python computes it too: not 0.1 exactly.
        #expect(other.sparsity(afterEpoch: 1) == 0.09999999999999998, "p is clamped to 0 before the beginning")
        #expect(GradualSchedule(finalSparsity: 0.5, beginEpoch: 4, endEpoch: 4).sparsity(afterEpoch: 4) == 0.5)
    }

    @Test func prunesInRangeEveryFrequencyEpochs() {
        let schedule = GradualSchedule(finalSparsity: 0.9, beginEpoch: 2, endEpoch: 8, frequency: 3)
        #expect((1...10).filter(schedule.prunes(afterEpoch:)) == [2, 5, 8])
        let settings = TrainingSettings(epochs: 10, batchSize: 8, seed: 1, augment: false,
                                        optimizer: OptimizerSettings(kind: .sgd(momentum: 0, nesterov: false), learningRate: 0.1, schedule: .constant, weightDecay: 0),
                                        beta: nil, gamma: .infinity, delta: 1, gradual: schedule)
        #expect((1...10).filter(settings.prunes(afterEpoch:)) == [2, 5, 8])
    }
}
