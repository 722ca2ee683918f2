import Foundation
import Testing
@testable import NeuralKernels

/// The pointwise activations against their mathematical definitions, evaluated in Double.
@Suite struct PointwiseActivationTests {
    /// Each case with its definition in Double (the textbook formula, not TensorFlow's
    /// expression) and the places where it has a kink, which the derivative check skips.
    static let cases: [(PointwiseActivation, @Sendable (Double) -> Double, [Double])] = [
        (.elu(alpha: 1), { $0 > 0 ? $0 : exp($0) - 1 }, [0]),
        (.elu(alpha: 0.5), { $0 > 0 ? $0 : 0.5 * (exp($0) - 1) }, [0]),
        (.selu, { 1.0507009873554805 * ($0 > 0 ? $0 : 1.6732632423543772 * (exp($0) - 1)) }, [0]),
        // 0.5 x (1 + erf(x / sqrt 2)), written with erfc so that Double keeps its digits for x << 0.
        (.gelu, { 0.5 * $0 * erfc(-$0 / 2.0.squareRoot()) }, []),
        (.silu, { $0 / (1 + exp(-$0)) }, []),
        (.hardSigmoidKeras2, { min(max(0.2 * $0 + 0.5, 0), 1) }, [-2.5, 2.5]),
        (.hardSigmoid, { min(max($0 / 6 + 0.5, 0), 1) }, [-3, 3]),
        (.hardSilu, { $0 * min(max($0 / 6 + 0.5, 0), 1) }, [-3, 3]),
        (.softplus, { log1p(exp($0)) }, []),
        (.softsign, { $0 / (1 + abs($0)) }, [0]),
        (.exponential, { exp($0) }, []),
        (.mish, { $0 * tanh(log1p(exp($0))) }, []),
        (.thresholdedReLU(theta: 0.5), { $0 > 0.5 ? $0 : 0 }, [0.5]),
    ]

    /// 37 inputs in [-8, 8) (two 16-lane blocks and a tail) and a few far out, where softplus and
    /// exp take their other branches.
    static let inputs: [Float] = {
        var random = SeededRandom(seed: 29)
        return random.array(37, scale: 8) + [-16, -14.5, 14.5, 16, 0, -0.0]
    }()

    @Test func handCheckedValues() {
        // Values of the definitions, to 7 significant digits.
        let expected: [(PointwiseActivation, Float, Float)] = [
            (.elu(alpha: 1), -1, -0.6321206), (.elu(alpha: 0.5), -1, -0.3160603), (.selu, 1, 1.050701),
            (.selu, -1, -1.111331), (.gelu, 1, 0.8413447), (.gelu, -1, -0.1586553), (.silu, 1, 0.7310586),
            (.hardSigmoidKeras2, 1, 0.7), (.hardSigmoidKeras2, 3, 1), (.hardSigmoid, 1, 0.6666667),
            (.hardSigmoid, -4, 0), (.hardSilu, 1, 0.6666667), (.hardSilu, 4, 4), (.softplus, 0, 0.6931472),
            (.softsign, 1, 0.5), (.softsign, -3, -0.75), (.exponential, 1, 2.718282), (.mish, 1, 0.8650984),
            (.thresholdedReLU(theta: 0.5), 0.4, 0), (.thresholdedReLU(theta: 0.5), 0.6, 0.6),
        ]
        for (f, x, y) in expected {
            #expect(abs(f.value(x) - y) <= 5e-7 * max(1, abs(y)), "\(f)(\(x)) = \(f.value(x)), expected \(y)")
        }
    }

    /// f(x) in float32 against the Double definition. A float32 evaluation of a few operations
    /// (each within 1 ulp, libm's expf/erfcf/log1pf/tanhf included) is off by at most a few
    /// eps relative to |y|, plus what an eps-sized error in an inner argument moves the result:
    /// |x f'(x)| eps. 8 eps of both is the bound; the worst is printed.
    @Test func forwardMatchesDefinition() {
        let eps = Double(Float.ulpOfOne)
        for (f, reference, _) in Self.cases {
            var output = [Float](repeating: .nan, count: Self.inputs.count)
            pointwiseForward(output: &output, input: Self.inputs, count: Self.inputs.count, f)
            var worst = 0.0
            for (x, y) in zip(Self.inputs, output) {
                let exact = reference(Double(x))
                let h = 1e-6 * max(1, abs(Double(x)))
                let slope = abs(reference(Double(x) + h) - reference(Double(x) - h)) / (2 * h)
                let bound = 8 * eps * (abs(exact) + abs(Double(x)) * slope) + Double(Float.leastNormalMagnitude)
                #expect(abs(Double(y) - exact) <= bound, "\(f)(\(x)): \(y) vs \(exact)")
                worst = max(worst, abs(Double(y) - exact) / bound)
            }
            print("\(f): worst forward error / bound \(worst)")
        }
    }

    /// pointwiseBackward adds dy * f'(x) into dx; f' is checked against central differences of
    /// the Double definition (step 1e-6 relative: truncation ~1e-12, rounding ~1e-10), away from
    /// kinks. The bound is 8 eps of |f'| plus the |x f''| eps an argument rounding moves it,
    /// plus 2 eps of the terms TensorFlow's expression cancels: ELU's and selu's gradient is
    /// (y + alpha) below 0, where y -> -alpha, so its absolute error is an ulp of alpha.
    @Test func backwardMatchesFiniteDifferencesInDouble() {
        let eps = Double(Float.ulpOfOne)
        let count = Self.inputs.count
        var random = SeededRandom(seed: 31)
        let outputGradient = random.array(count)
        let start = random.array(count)
        for (f, reference, kinks) in Self.cases {
            var inputGradient = start
            pointwiseBackward(inputGradient: &inputGradient, outputGradient: outputGradient, input: Self.inputs, count: count, f)
            var worst = 0.0
            for i in 0..<count {
                let x = Double(Self.inputs[i])
                let h = 1e-6 * max(1, abs(x))
                if kinks.contains(where: { abs($0 - x) <= 2 * h }) { continue }
                let slope = (reference(x + h) - reference(x - h)) / (2 * h)
                let curvature = (reference(x + h) - 2 * reference(x) + reference(x - h)) / (h * h)
                let cancelled: Double = switch f {
                case .elu(let alpha): x < 0 ? Double(alpha) : 0
                case .selu: x < 0 ? 1.7580993408473768 : 0
                default: 0
                }
                let bound = 8 * eps * (abs(slope) + abs(x * curvature)) + 2 * eps * cancelled + 1e-9
                let analytic = Double(inputGradient[i] - start[i]) / Double(outputGradient[i])
                // The subtraction of `start` costs up to an ulp of |start| + |dx| in the division.
                let accumulated = 2 * eps * (abs(Double(start[i])) + abs(Double(inputGradient[i]))) / abs(Double(outputGradient[i]))
                #expect(abs(analytic - slope) <= bound + accumulated, "\(f)'(\(x)): \(analytic) vs \(slope)")
                worst = max(worst, abs(analytic - slope) / (bound + accumulated))
            }
            print("\(f): worst derivative error / bound \(worst)")
        }
    }

    /// At the kinks, the side TensorFlow's gradient takes.
    @Test func derivativesAtKinks() {
        #expect(PointwiseActivation.hardSigmoidKeras2.derivative(2.5) == 0.2)    // clip_by_value: inclusive
        #expect(PointwiseActivation.hardSigmoid.derivative(3) == 0)              // Relu6Grad: 0 < x + 3 < 6
        #expect(PointwiseActivation.hardSigmoid.derivative(-3) == 0)
        #expect(PointwiseActivation.thresholdedReLU(theta: 0.5).derivative(0.5) == 0)
        #expect(PointwiseActivation.elu(alpha: 0.5).derivative(0) == 0.5)         // where(x > 0, ...)
    }
}
