import Foundation
import Testing
@testable import NeuralKernels

/// Inputs kept at least `gap` away from `kinks`, so finite differences never straddle one.
func awayFromKinks(_ values: [Float], kinks: [Float], gap: Float = 0.05) -> [Float] {
    values.map { v in
        var x = v
        for k in kinks where abs(x - k) < gap { x = k + (x < k ? -gap : gap) * 2 }
        return x
    }
}

@Suite struct ElementwiseTests {
    @Test func reluFamilyForwardByHand() {
        let x: [Float] = [-2, -0.5, 0, 0.5, 5, 7]
        var y = [Float](repeating: 0, count: 6)
        reluForward(output: &y, input: x, count: 6, ReLUParameters())
        #expect(y == [0, 0, 0, 0.5, 5, 7])
        reluForward(output: &y, input: x, count: 6, ReLUParameters(maxValue: 6))
        #expect(y == [0, 0, 0, 0.5, 5, 6])
        reluForward(output: &y, input: x, count: 6, ReLUParameters(maxValue: 6, negativeSlope: 0.1, threshold: 1))
        #expect(y.map { ($0 * 1000).rounded() / 1000 } == [-0.3, -0.15, -0.1, -0.05, 5, 6])
    }

    @Test(arguments: [ReLUParameters(), ReLUParameters(maxValue: 6), ReLUParameters(maxValue: 3, negativeSlope: 0.2, threshold: 0.5)])
    func reluBackwardMatchesFiniteDifferences(p: ReLUParameters) {
        var random = SeededRandom(seed: 7)
        let x = awayFromKinks(random.array(64, scale: 8), kinks: [0, p.threshold, p.maxValue ?? 1e9])
        let probe = random.array(64)
        var dx = [Float](repeating: 0, count: 64)
        reluBackward(inputGradient: &dx, outputGradient: probe, input: x, count: 64, p)
        let e = finiteDifferenceError(input: x, forward: { input in
            var y = [Float](repeating: 0, count: 64)
            reluForward(output: &y, input: input, count: 64, p)
            return y
        }, analytic: dx, probe: probe)
        #expect(e.maxError <= 1e-4 * max(1, e.scale))
    }

    @Test func smoothActivationsMatchFiniteDifferences() {
        var random = SeededRandom(seed: 11)
        let x = random.array(40, scale: 3)
        let probe = random.array(40)
        for (forward, backward) in [(sigmoidForward, sigmoidBackward), (tanhForward, tanhBackward)] {
            var y = [Float](repeating: 0, count: 40), dx = [Float](repeating: 0, count: 40)
            forward(&y, x, 40)
            backward(&dx, probe, y, 40)
            let e = finiteDifferenceError(input: x, step: 1e-3, forward: { input in
                var out = [Float](repeating: 0, count: 40)
                forward(&out, input, 40)
                return out
            }, analytic: dx, probe: probe)
            #expect(e.maxError <= 1e-3 * max(1, e.scale))
        }
    }

    @Test func softmaxAndItsBackward() {
        var random = SeededRandom(seed: 3)
        let x = random.array(30, scale: 4)  // 3 rows of 10
        let probe = random.array(30)
        var y = [Float](repeating: 0, count: 30), dx = [Float](repeating: 0, count: 30)
        softmaxForward(output: &y, input: x, rows: 3, classes: 10)
        for r in 0..<3 { #expect(abs(y[(r * 10)..<(r * 10 + 10)].reduce(0, +) - 1) < 1e-6) }
        softmaxBackward(inputGradient: &dx, outputGradient: probe, output: y, rows: 3, classes: 10)
        let e = finiteDifferenceError(input: x, step: 1e-3, forward: { input in
            var out = [Float](repeating: 0, count: 30)
            softmaxForward(output: &out, input: input, rows: 3, classes: 10)
            return out
        }, analytic: dx, probe: probe)
        #expect(e.maxError <= 1e-3 * max(1, e.scale))
    }

    @Test func crossEntropyFromLogits() {
        // Two classes with equal logits: p = 0.5 each, loss = log 2, gradient (p - y) / N.
        let logits: [Float] = [1, 1, 0, 100]
        let labels: [Int32] = [0, 1]
        var gradient = [Float](repeating: 0, count: 4)
        let loss = softmaxCrossEntropy(logits: logits, labels: labels, rows: 2, classes: 2, probabilities: nil,
                                       logitsGradient: &gradient, meanOver: 2)
        #expect(abs(loss - log(2)) < 1e-6)  // the second row's loss is ~0 (no overflow at logit 100)
        #expect(gradient[0] == -0.25 && gradient[1] == 0.25 && abs(gradient[2]) < 1e-30 && gradient[3] == 0)
        var random = SeededRandom(seed: 5)
        let x = random.array(20, scale: 3)
        let rowLabels: [Int32] = [3, 9]
        var dx = [Float](repeating: 0, count: 20)
        _ = softmaxCrossEntropy(logits: x, labels: rowLabels, rows: 2, classes: 10, probabilities: nil, logitsGradient: &dx, meanOver: 1)
        for index in 0..<20 {
            var plus = x, minus = x
            plus[index] += 1e-2
            minus[index] -= 1e-2
            let numeric = (softmaxCrossEntropy(logits: plus, labels: rowLabels, rows: 2, classes: 10, probabilities: nil, logitsGradient: nil, meanOver: 1)
                - softmaxCrossEntropy(logits: minus, labels: rowLabels, rows: 2, classes: 10, probabilities: nil, logitsGradient: nil, meanOver: 1)) / 2e-2
            #expect(abs(numeric - Double(dx[index])) < 2e-4)
        }
    }

    @Test func batchNormBackwardMatchesFiniteDifferences() {
        var random = SeededRandom(seed: 13)
        let rows = 6, channels = 4
        let x = random.array(rows * channels, scale: 2)
        let gamma = random.array(channels), beta = random.array(channels), mean = random.array(channels)
        let variance = random.array(channels).map { abs($0) + 0.5 }
        let probe = random.array(rows * channels)
        func parts(_ g: [Float], _ b: [Float]) -> (scale: [Float], shift: [Float], inv: [Float]) {
            let inv = variance.map { 1 / ($0 + 1e-3).squareRoot() }
            let scale = zip(inv, g).map { $0 * $1 }
            return (scale, (0..<channels).map { b[$0] - mean[$0] * scale[$0] }, inv)
        }
        func forward(_ input: [Float], _ g: [Float], _ b: [Float]) -> [Float] {
            let p = parts(g, b)
            var y = [Float](repeating: 0, count: rows * channels)
            channelAffineForward(output: &y, input: input, scale: p.scale, shift: p.shift, rows: rows, channels: channels)
            return y
        }
        var dx = [Float](repeating: 0, count: x.count), dg = [Float](repeating: 0, count: channels), db = dg
        let p = parts(gamma, beta)
        batchNormInferenceBackward(inputGradient: &dx, gammaGradient: &dg, betaGradient: &db, outputGradient: probe, input: x,
                                   scale: p.scale, mean: mean, inverseStd: p.inv, rows: rows, channels: channels)
        for (name, e) in [("dx", finiteDifferenceError(input: x, forward: { forward($0, gamma, beta) }, analytic: dx, probe: probe)),
                          ("dgamma", finiteDifferenceError(input: gamma, forward: { forward(x, $0, beta) }, analytic: dg, probe: probe)),
                          ("dbeta", finiteDifferenceError(input: beta, forward: { forward(x, gamma, $0) }, analytic: db, probe: probe))] {
            #expect(e.maxError <= 1e-4 * max(1, e.scale), "\(name) \(e.maxError)")
        }
    }

    @Test func paddingAndPoolingBackward() {
        var random = SeededRandom(seed: 17)
        let batch = 2, h = 5, w = 4, c = 3
        let x = random.array(batch * h * w * c, scale: 3)
        // Zero padding ((1, 2), (0, 1)).
        let paddedCount = batch * (h + 3) * (w + 1) * c
        var probe = random.array(paddedCount)
        var dx = [Float](repeating: 0, count: x.count)
        zeroPadBackward(inputGradient: &dx, outputGradient: probe, batch: batch, height: h, width: w, channels: c,
                        top: 1, bottom: 2, left: 0, right: 1)
        var e = finiteDifferenceError(input: x, forward: { input in
            var y = [Float](repeating: 0, count: paddedCount)
            zeroPadForward(output: &y, input: input, batch: batch, height: h, width: w, channels: c, top: 1, bottom: 2, left: 0, right: 1)
            return y
        }, analytic: dx, probe: probe)
        #expect(e.maxError <= 1e-4 * max(1, e.scale))

        for (isMax, same) in [(true, false), (true, true), (false, false), (false, true)] {
            let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: 2, kernelWidth: 2, strideHeight: 2,
                                   strideWidth: 2, padding: same ? .same : .valid)
            let outCount = batch * g.outputHeight * g.outputWidth * c
            probe = random.array(outCount)
            func forward(_ input: [Float]) -> [Float] {
                var y = [Float](repeating: 0, count: outCount)
                if isMax { maxPoolForward(output: &y, input: input, batch: batch, geometry: g, channels: c) }
                else { averagePoolForward(output: &y, input: input, batch: batch, geometry: g, channels: c) }
                return y
            }
            let y = forward(x)
            dx = [Float](repeating: 0, count: x.count)
            if isMax { maxPoolBackward(inputGradient: &dx, outputGradient: probe, input: x, output: y, batch: batch, geometry: g, channels: c) }
            else { averagePoolBackward(inputGradient: &dx, outputGradient: probe, batch: batch, geometry: g, channels: c) }
            // Max pooling is piecewise linear: a small step keeps the same maxima (random inputs
            // are separated by far more than 1e-3).
            e = finiteDifferenceError(input: x, step: 1e-3, forward: forward, analytic: dx, probe: probe)
            #expect(e.maxError <= 1e-3 * max(1, e.scale), "pool max=\(isMax) same=\(same): \(e.maxError)")
        }
        // Average pooling with same padding divides by the cells inside the image only.
        let g = WindowGeometry(inputHeight: 3, inputWidth: 1, kernelHeight: 2, kernelWidth: 1, strideHeight: 2,
                               strideWidth: 1, padding: .same)
        var y = [Float](repeating: 0, count: 2)
        averagePoolForward(output: &y, input: [2, 4, 9], batch: 1, geometry: g, channels: 1)
        #expect(y == [3, 9])

        for isMax in [true, false] {
            let outCount = batch * c
            probe = random.array(outCount)
            func forward(_ input: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: outCount)
                if isMax { globalMaxPoolForward(output: &out, input: input, batch: batch, positions: h * w, channels: c) }
                else { globalAveragePoolForward(output: &out, input: input, batch: batch, positions: h * w, channels: c) }
                return out
            }
            dx = [Float](repeating: 0, count: x.count)
            if isMax { globalMaxPoolBackward(inputGradient: &dx, outputGradient: probe, input: x, output: forward(x), batch: batch, positions: h * w, channels: c) }
            else { globalAveragePoolBackward(inputGradient: &dx, outputGradient: probe, batch: batch, positions: h * w, channels: c) }
            e = finiteDifferenceError(input: x, step: 1e-3, forward: forward, analytic: dx, probe: probe)
            #expect(e.maxError <= 1e-3 * max(1, e.scale), "global max=\(isMax)")
        }
    }
}
