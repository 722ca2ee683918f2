import Foundation
import Testing
@testable import NeuralKernels

/// The fused kernels (Add + ReLU, a convolution storing its BatchNorm(+ReLU)) and the vector
/// paths of the BatchNorm kernels give the bits of the layers run apart, and Add + ReLU's
/// backward agrees with finite differences.
@Suite struct FusedKernelTests {
    static let relus: [ReLUParameters] = [ReLUParameters(), ReLUParameters(maxValue: 6), ReLUParameters(negativeSlope: 0.1)]

    /// Inputs in [-scale, scale) with exact zeros (both signs) and, for two inputs, sums that
    /// are exactly 0 (x and -x), where the ReLU and its gradient switch.
    func inputs(_ count: Int, inputCount: Int, seed: UInt64, scale: Float = 1) -> [[Float]] {
        var random = SeededRandom(seed: seed)
        var all = (0..<inputCount).map { _ in random.array(count, scale: scale) }
        for i in stride(from: 0, to: count, by: 7) { all[0][i] = i % 2 == 0 ? 0 : -0.0 }
        if inputCount > 1 { for i in stride(from: 3, to: count, by: 11) { all[1][i] = -all[0][i] } }
        return all
    }

    @Test func addReLUHandChecked() {
        let a: [Float] = [1, -2, 0.5, -0.0, 3, 2], b: [Float] = [-0.5, 1, -1, 0, 4, -2]
        var y = [Float](repeating: .nan, count: 6)
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
            addReLUForward(output: &y, inputs: [a.baseAddress!, b.baseAddress!], count: 6, ReLUParameters())
        } }
        #expect(y == [0.5, 0, 0, 0, 7, 0])
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
            addReLUForward(output: &y, inputs: [a.baseAddress!, b.baseAddress!, b.baseAddress!], count: 6, ReLUParameters(maxValue: 6))
        } }
        // a + b + b: 0, 0, -1.5, 0, 11 -> 6, -2
        #expect(y == [0, 0, 0, 0, 6, 0])
        // Gradient: dy passes where 0 < a + b < cap, into both inputs, added onto what they hold.
        var da = [Float](repeating: 1, count: 6), db = [Float](repeating: 0, count: 6)
        let dy: [Float] = [2, 3, 4, 5, 6, 7]
        a.withUnsafeBufferPointer { a in b.withUnsafeBufferPointer { b in
            da.withUnsafeMutableBufferPointer { da in db.withUnsafeMutableBufferPointer { db in
                addReLUBackward(inputGradients: [da.baseAddress!, db.baseAddress!], outputGradient: dy,
                                inputs: [a.baseAddress!, b.baseAddress!], count: 6, ReLUParameters())
            } }
        } }
        #expect(da == [3, 1, 1, 1, 7, 1])
        #expect(db == [2, 0, 0, 0, 6, 0])
    }

    /// Add then ReLU as the layers run them: copy, add each other input in order, reluForward;
    /// backward: reluBackward into a zeroed buffer, added into each input gradient.
    @Test(arguments: [16, 19])
    func addReLUGivesTheLayersBits(channels: Int) {
        let count = 3 * 5 * channels
        for inputCount in [2, 3] {
            for p in Self.relus {
                let x = inputs(count, inputCount: inputCount, seed: UInt64(channels * 10 + inputCount), scale: 8)
                var dyRandom = SeededRandom(seed: 5)
                let dy = dyRandom.array(count)
                var separate = x[0]
                for other in x.dropFirst() { for i in 0..<count { separate[i] += other[i] } }
                let sum = separate
                reluForward(output: &separate, input: sum, count: count, p)
                var g = [Float](repeating: 0, count: count)
                reluBackward(inputGradient: &g, outputGradient: dy, input: sum, count: count, p)
                let start = (0..<inputCount).map { index -> [Float] in
                    var random = SeededRandom(seed: 40 + UInt64(index))
                    return random.array(count)
                }
                let separateGradients = start.map { d in zip(d, g).map { $0 + $1 } }

                var fused = [Float](repeating: .nan, count: count)
                var gradients = start
                withPointers(x) { pointers in
                    addReLUForward(output: &fused, inputs: pointers, count: count, p)
                    withMutablePointers(&gradients) { dx in
                        addReLUBackward(inputGradients: dx, outputGradient: dy, inputs: pointers, count: count, p)
                    }
                }
                #expect(fused.map(\.bitPattern) == separate.map(\.bitPattern), "\(channels) \(inputCount) \(p)")
                #expect(gradients.map { $0.map { $0.bitPattern } } == separateGradients.map { $0.map { $0.bitPattern } },
                        "\(channels) \(inputCount) \(p)")
            }
        }
    }

    /// L = sum(probe * relu(a + b)) differentiated in Double by central differences (step 1e-2)
    /// against the backward. Sums within 2 steps of the kinks (0, the cap) are moved away first,
    /// so the difference is exact but for the float32 rounding of the one output a perturbed input
    /// moves: |y| < 4, so each of y(+) and y(-) is within half an ulp, 2^-23, and their difference
    /// over the 2e-2 step within 2 * 2^-23 / 2e-2 = 1.2e-5 (|probe| <= 1).
    @Test(arguments: [16, 19])
    func addReLUBackwardMatchesFiniteDifferences(channels: Int) {
        let count = 2 * 3 * channels, step: Float = 1e-2
        for p in [ReLUParameters(), ReLUParameters(maxValue: 1)] {
            var random = SeededRandom(seed: UInt64(channels))
            let a = random.array(count)
            var b = random.array(count)
            let cap = p.maxValue ?? .infinity
            for i in 0..<count where abs(a[i] + b[i]) < 2 * step || abs(a[i] + b[i] - cap) < 2 * step { b[i] += 5 * step }
            let probe = random.array(count)
            func forward(_ a: [Float], _ b: [Float]) -> [Float] {
                var y = [Float](repeating: 0, count: count)
                withPointers([a, b]) { addReLUForward(output: &y, inputs: $0, count: count, p) }
                return y
            }
            var gradients = [[Float](repeating: 0, count: count), [Float](repeating: 0, count: count)]
            withPointers([a, b]) { pointers in
                withMutablePointers(&gradients) { addReLUBackward(inputGradients: $0, outputGradient: probe, inputs: pointers, count: count, p) }
            }
            let bound = 2 * 0x1p-23 / (2 * Double(step))
            let first = finiteDifferenceError(input: a, step: step, forward: { forward($0, b) }, analytic: gradients[0], probe: probe)
            let second = finiteDifferenceError(input: b, step: step, forward: { forward(a, $0) }, analytic: gradients[1], probe: probe)
            #expect(first.maxError <= bound && second.maxError <= bound, "\(p): \(first.maxError), \(second.maxError)")
            #expect(first.scale > 0.5)
        }
    }

    /// The BatchNorm kernels' 16-lane paths (channels a multiple of 16), forward and backward,
    /// against the scalar expressions (x * scale + shift, min(max(z, 0), cap), the gradients'
    /// sums in row order), bit for bit; 19 channels take the scalar path.
    @Test(arguments: [16, 32, 19])
    func batchNormVectorsGiveScalarBits(channels: Int) {
        var random = SeededRandom(seed: UInt64(channels) + 100)
        let rows = 7
        var x = random.array(rows * channels, scale: 4)
        for i in stride(from: 0, to: x.count, by: 5) { x[i] = i % 2 == 0 ? 0 : -0.0 }
        let scale = random.array(channels, scale: 2)
        var shift = random.array(channels)
        shift[1] = 0
        for p in [ReLUParameters(), ReLUParameters(maxValue: 1)] {
            var affine = [Float](repeating: .nan, count: x.count), relu = affine
            channelAffineForward(output: &affine, input: x, scale: scale, shift: shift, rows: rows, channels: channels)
            channelAffineReLUForward(output: &relu, input: x, scale: scale, shift: shift, rows: rows, channels: channels, p)
            let cap = p.maxValue ?? .infinity
            let z = x.indices.map { x[$0] * scale[$0 % channels] + shift[$0 % channels] }
            #expect(affine.map(\.bitPattern) == z.map(\.bitPattern))
            #expect(relu.map(\.bitPattern) == z.map { min(max($0, 0), cap) }.map(\.bitPattern))

            // The backwards: dGamma += dz (x - mean) invStd, dBeta += dz, dx += dz scale row by
            // row, dz = dy (BatchNorm) or dy * slope, slope 1 where 0 < z < cap else 0.
            let mean = random.array(channels), inverseStd = random.array(channels, scale: 2), dy = random.array(x.count)
            for withReLU in [false, true] {
                var dx = random.array(x.count), gamma = random.array(channels), beta = random.array(channels)
                var (rdx, rgamma, rbeta) = (dx, gamma, beta)
                for i in x.indices {
                    let c = i % channels
                    let dz = withReLU ? dy[i] * ((z[i] > 0 && z[i] < cap) ? 1 : 0) : dy[i]
                    rgamma[c] += dz * (x[i] - mean[c]) * inverseStd[c]
                    rbeta[c] += dz
                    rdx[i] += dz * scale[c]
                }
                if withReLU {
                    batchNormReLUBackward(inputGradient: &dx, gammaGradient: &gamma, betaGradient: &beta, outputGradient: dy, input: x,
                                          scale: scale, shift: shift, mean: mean, inverseStd: inverseStd, rows: rows,
                                          channels: channels, p)
                } else {
                    batchNormInferenceBackward(inputGradient: &dx, gammaGradient: &gamma, betaGradient: &beta, outputGradient: dy,
                                               input: x, scale: scale, mean: mean, inverseStd: inverseStd, rows: rows, channels: channels)
                }
                #expect(dx.map(\.bitPattern) == rdx.map(\.bitPattern) && gamma.map(\.bitPattern) == rgamma.map(\.bitPattern)
                        && beta.map(\.bitPattern) == rbeta.map(\.bitPattern), "relu \(withReLU) \(p)")
            }
        }
    }

    /// conv2dForward with a BatchNorm(+ReLU) epilogue against the convolution and then
    /// channelAffine(ReLU)Forward, bit for bit: the narrow kernel (16 and 32 outputs, 'same' and
    /// 'valid', stride 1 and 2), im2col + GEMM (19 outputs) and a pointwise product; the
    /// convolution's output kept or not (then left unwritten by the narrow kernel).
    @Test(arguments: [
        // (h, w, cin, cout, k, stride, same)
        (9, 11, 16, 16, 3, 1, true), (8, 8, 19, 32, 3, 2, true), (7, 6, 3, 16, 3, 1, false), (6, 7, 16, 19, 3, 1, true),
        (5, 5, 16, 16, 1, 1, false),
    ])
    func convolutionEpilogueGivesTheLayersBits(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 31 + cin + cout + k))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let input = random.array(batch * h * w * cin), kernel = random.array(k * k * cin * cout), bias = random.array(cout)
        let scale = random.array(cout, scale: 2), shift = random.array(cout)
        let rows = batch * g.outputHeight * g.outputWidth
        let scratchCount = max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch))
        var convolution = [Float](repeating: .nan, count: rows * cout)
        var scratch = [Float](repeating: .nan, count: scratchCount)
        conv2dForward(output: &convolution, input: input, kernel: kernel, bias: bias, scratch: &scratch, batch: batch,
                      geometry: g, inputChannels: cin, outputChannels: cout)
        for relu in [nil, ReLUParameters(maxValue: 1)] as [ReLUParameters?] {
            var expected = [Float](repeating: .nan, count: rows * cout)
            if let relu {
                channelAffineReLUForward(output: &expected, input: convolution, scale: scale, shift: shift, rows: rows, channels: cout, relu)
            } else {
                channelAffineForward(output: &expected, input: convolution, scale: scale, shift: shift, rows: rows, channels: cout)
            }
            for keeps in [true, false] {
                var output = [Float](repeating: .nan, count: rows * cout), normalized = output
                scratch = [Float](repeating: .nan, count: scratchCount)
                normalized.withUnsafeMutableBufferPointer { normalized in
                    let epilogue = ChannelAffineEpilogue(scale: scale, shift: shift, relu: relu, output: normalized.baseAddress!,
                                                         keepsConvolutionOutput: keeps)
                    conv2dForward(output: &output, input: input, kernel: kernel, bias: bias, scratch: &scratch, batch: batch,
                                  geometry: g, inputChannels: cin, outputChannels: cout, epilogue: epilogue)
                }
                #expect(normalized.map(\.bitPattern) == expected.map(\.bitPattern), "relu \(String(describing: relu)) keeps \(keeps)")
                if keeps { #expect(output.map(\.bitPattern) == convolution.map(\.bitPattern)) }
            }
        }
    }
}

/// Pointers to each array's elements, valid inside `body`.
func withPointers<T>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>]) -> T) -> T {
    let copies = arrays.map { array -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, array.count))
        p.initialize(from: array, count: array.count)
        return p
    }
    defer { copies.forEach { $0.deallocate() } }
    return body(copies.map { UnsafePointer($0) })
}

/// Mutable pointers to copies of each array, copied back after `body`.
func withMutablePointers<T>(_ arrays: inout [[Float]], _ body: ([UnsafeMutablePointer<Float>?]) -> T) -> T {
    let copies = arrays.map { array -> UnsafeMutablePointer<Float> in
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, array.count))
        p.initialize(from: array, count: array.count)
        return p
    }
    defer { copies.forEach { $0.deallocate() } }
    let result = body(copies)
    for index in arrays.indices { arrays[index] = Array(UnsafeBufferPointer(start: copies[index], count: arrays[index].count)) }
    return result
}
