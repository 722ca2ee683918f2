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

    @Test func upsampleNearestForwardByHand() {
        // A 2x2 single-channel image by (2, 3): each cell becomes a 2x3 block.
        var y = [Float](repeating: 0, count: 24)
        upsampleNearestForward(output: &y, input: [1, 2, 3, 4], batch: 1, height: 2, width: 2, channels: 1, sizeHeight: 2, sizeWidth: 3)
        #expect(y == [1, 1, 1, 2, 2, 2,
                      1, 1, 1, 2, 2, 2,
                      3, 3, 3, 4, 4, 4,
                      3, 3, 3, 4, 4, 4])
        // Two channels stay apart; the backward sums each block.
        var y2 = [Float](repeating: 0, count: 8)
        upsampleNearestForward(output: &y2, input: [1, -1, 2, -2], batch: 1, height: 1, width: 2, channels: 2, sizeHeight: 2, sizeWidth: 1)
        #expect(y2 == [1, -1, 2, -2, 1, -1, 2, -2])
        var dx = [Float](repeating: 0, count: 4)
        upsampleNearestBackward(inputGradient: &dx, outputGradient: [1, 2, 3, 4, 5, 6, 7, 8], batch: 1, height: 1, width: 2,
                                channels: 2, sizeHeight: 2, sizeWidth: 1)
        #expect(dx == [6, 8, 10, 12])
    }

    @Test func upsampleNearestBackwardMatchesFiniteDifferences() {
        var random = SeededRandom(seed: 29)
        // 16 channels (a full vector) and 19 (a vector plus a tail of 3).
        for c in [16, 19] {
            let batch = 2, h = 3, w = 2, sh = 2, sw = 3
            let x = random.array(batch * h * w * c, scale: 3)
            let outCount = batch * h * sh * w * sw * c
            let probe = random.array(outCount)
            var dx = [Float](repeating: 0, count: x.count)
            upsampleNearestBackward(inputGradient: &dx, outputGradient: probe, batch: batch, height: h, width: w, channels: c,
                                    sizeHeight: sh, sizeWidth: sw)
            let e = finiteDifferenceError(input: x, forward: { input in
                var y = [Float](repeating: 0, count: outCount)
                upsampleNearestForward(output: &y, input: input, batch: batch, height: h, width: w, channels: c, sizeHeight: sh, sizeWidth: sw)
                return y
            }, analytic: dx, probe: probe)
            #expect(e.maxError <= 1e-4 * max(1, e.scale), "channels \(c): \(e.maxError)")
        }
    }

    @Test func permuteForwardByHand() {
        // A (2, 3) matrix transposed: Permute((2, 1)).
        var y = [Float](repeating: 0, count: 6)
        gatherForward(output: &y, input: [1, 2, 3, 4, 5, 6], batch: 1, sources: permutationSources(shape: [2, 3], order: [1, 0]))
        #expect(y == [1, 4, 2, 5, 3, 6])
        // (h, w, c) = (1, 2, 2) to (c, h, w), Permute((3, 1, 2)): x[0][w][c] = 10 w + c.
        #expect(permutationSources(shape: [1, 2, 2], order: [2, 0, 1]) == [0, 2, 1, 3])
        var z = [Float](repeating: 0, count: 8)
        gatherForward(output: &z, input: [0, 1, 10, 11, 100, 101, 110, 111], batch: 2, sources: permutationSources(shape: [1, 2, 2], order: [2, 0, 1]))
        #expect(z == [0, 10, 1, 11, 100, 110, 101, 111])
        #expect(permutationSources(shape: [2, 3, 4], order: [0, 1, 2]) == Array(0..<24))
    }

    @Test func permuteBackwardMatchesFiniteDifferences() {
        var random = SeededRandom(seed: 31)
        // 16 channels (a full vector) and 19 (a vector plus a tail of 3), every order of 3 axes.
        for c in [16, 19] {
            let batch = 2, shape = [3, 2, c], count = 6 * c
            for order in [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
                let sources = permutationSources(shape: shape, order: order)
                #expect(Set(sources).count == count)
                let x = random.array(batch * count, scale: 3), probe = random.array(batch * count)
                var dx = [Float](repeating: 0, count: x.count)
                gatherBackward(inputGradient: &dx, outputGradient: probe, batch: batch, sources: sources)
                let e = finiteDifferenceError(input: x, forward: { input in
                    var y = [Float](repeating: 0, count: batch * count)
                    gatherForward(output: &y, input: input, batch: batch, sources: sources)
                    return y
                }, analytic: dx, probe: probe)
                #expect(e.maxError <= 1e-4 * max(1, e.scale), "channels \(c) order \(order): \(e.maxError)")
                // Row-major offsets: output (i, j, k) reads input axis order[0] = i, ...
                let outShape = order.map { shape[$0] }
                let (i, j, k) = (outShape[0] - 1, 0, outShape[2] - 1)
                var inputIndex = [0, 0, 0]
                inputIndex[order[0]] = i; inputIndex[order[1]] = j; inputIndex[order[2]] = k
                let expected = (inputIndex[0] * shape[1] + inputIndex[1]) * shape[2] + inputIndex[2]
                #expect(sources[(i * outShape[1] + j) * outShape[2] + k] == expected, "\(order)")
            }
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
