import Foundation
@testable import NeuralKernels

/// Deterministic pseudo-random floats in [-1, 1) (SplitMix64), so failures reproduce.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> Float {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Float(z >> 40) / Float(1 << 24) * 2 - 1
    }
    mutating func array(_ count: Int, scale: Float = 1) -> [Float] { (0..<count).map { _ in next() * scale } }
}

/// Checks an analytic backward against central finite differences. The objective is
/// L = sum(probe * forward(x)), evaluated in Double from the float32 forward; the analytic
/// gradient is backward(probe). For the piecewise-linear ops here the central difference is exact
/// up to float32 rounding of the outputs, so the tolerance only covers that rounding.
func finiteDifferenceError(
    input: [Float], step: Float = 1e-2,
    forward: ([Float]) -> [Float], analytic: [Float], probe: [Float]
) -> (maxError: Double, scale: Double) {
    func objective(_ x: [Float]) -> Double {
        zip(forward(x), probe).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
    }
    var worst = 0.0, scale = 0.0
    for index in input.indices {
        var plus = input, minus = input
        plus[index] += step
        minus[index] -= step
        let actualStep = Double(plus[index]) - Double(minus[index])
        let numeric = (objective(plus) - objective(minus)) / actualStep
        worst = max(worst, abs(numeric - Double(analytic[index])))
        scale = max(scale, abs(numeric))
    }
    return (worst, scale)
}
