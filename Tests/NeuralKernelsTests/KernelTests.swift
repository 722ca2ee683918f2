import Foundation
import Testing
@testable import NeuralKernels

@Suite struct WindowGeometryTests {
    @Test func samePaddingFollowsTensorFlow() {
        // 32 -> 16 with a 3x3 stride-2 window: total padding 1, all of it at the bottom/right.
        let g = WindowGeometry(inputHeight: 32, inputWidth: 32, kernelHeight: 3, kernelWidth: 3, strideHeight: 2,
                               strideWidth: 2, padding: .same)
        #expect(g.outputHeight == 16 && g.padTop == 0)
        let odd = WindowGeometry(inputHeight: 5, inputWidth: 5, kernelHeight: 3, kernelWidth: 3, strideHeight: 1,
                                 strideWidth: 1, padding: .same)
        #expect(odd.outputHeight == 5 && odd.padTop == 1 && odd.padLeft == 1)
        let valid = WindowGeometry(inputHeight: 33, inputWidth: 33, kernelHeight: 3, kernelWidth: 3, strideHeight: 2,
                                   strideWidth: 2, padding: .valid)
        #expect(valid.outputHeight == 16 && valid.padTop == 0)
    }
}

@Suite struct ConvolutionTests {
    @Test func handComputedConvolution() {
        // 1 image 3x3x1, kernel 2x2x1x1 of ones, valid: each output is a 2x2 window sum.
        let input: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        let kernel: [Float] = [1, 1, 1, 1]
        let g = WindowGeometry(inputHeight: 3, inputWidth: 3, kernelHeight: 2, kernelWidth: 2, strideHeight: 1,
                               strideWidth: 1, padding: .valid)
        var output = [Float](repeating: 0, count: 4)
        var scratch = [Float](repeating: 0, count: conv2dScratchCount(g, inputChannels: 1, outputChannels: 1, batch: 1))
        let bias: [Float] = [0.5]
        conv2dForward(output: &output, input: input, kernel: kernel, bias: bias, scratch: &scratch, batch: 1,
                      geometry: g, inputChannels: 1, outputChannels: 1)
        #expect(output == [12.5, 16.5, 24.5, 28.5])
    }

    @Test(arguments: [
        // (h, w, cin, cout, k, stride, same)
        (5, 5, 3, 4, 3, 1, true), (6, 7, 2, 3, 3, 2, true), (7, 6, 3, 2, 3, 2, false), (4, 4, 5, 6, 1, 1, false),
        (5, 4, 2, 3, 1, 2, true), (6, 6, 2, 2, 2, 2, true),
    ])
    func conv2dBackwardMatchesFiniteDifferences(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 1000 + w * 100 + cin * 10 + cout + k * 7 + stride))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let input = random.array(batch * h * w * cin)
        let kernel = random.array(k * k * cin * cout)
        let bias = random.array(cout)
        let outCount = batch * g.outputHeight * g.outputWidth * cout
        let probe = random.array(outCount)
        func forward(_ x: [Float], _ kern: [Float], _ b: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: outCount)
            var scratch = [Float](repeating: 0, count: max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch)))
            conv2dForward(output: &out, input: x, kernel: kern, bias: b, scratch: &scratch, batch: batch, geometry: g,
                          inputChannels: cin, outputChannels: cout)
            return out
        }
        var dx = [Float](repeating: 0, count: input.count)
        var dk = [Float](repeating: 0, count: kernel.count)
        var db = [Float](repeating: 0, count: cout)
        var scratch = [Float](repeating: 0, count: max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch)))
        conv2dBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                       kernel: kernel, scratch: &scratch, batch: batch, geometry: g,
                       inputChannels: cin, outputChannels: cout)
        let ex = finiteDifferenceError(input: input, forward: { forward($0, kernel, bias) }, analytic: dx, probe: probe)
        let ek = finiteDifferenceError(input: kernel, forward: { forward(input, $0, bias) }, analytic: dk, probe: probe)
        let eb = finiteDifferenceError(input: bias, forward: { forward(input, kernel, $0) }, analytic: db, probe: probe)
        #expect(ex.maxError <= 1e-4 * max(1, ex.scale), "dx max error \(ex.maxError)")
        #expect(ek.maxError <= 1e-4 * max(1, ek.scale), "dk max error \(ek.maxError)")
        #expect(eb.maxError <= 1e-4 * max(1, eb.scale), "db max error \(eb.maxError)")
    }
}

/// A convolution whose im2col columns exceed `convolutionTileFloats` runs in tiles of output rows
/// (the boundary falls inside an output row, and the last tile is short): forward and all three
/// gradients against a Double reference over the same images. Float32 sums of n terms in any order
/// are within n * 2^-24 * (sum of the terms' magnitudes) of the exact sum (Higham, 3.1; an FMA only
/// rounds less), so each entry is checked against that bound computed beside it in Double.
@Suite struct TiledConvolutionTests {
    /// 19 output channels run im2col + GEMM tile by tile (and, at stride 1, the narrow input
    /// gradient: 16 input channels); 32 and 48 the narrow kernels of `NarrowGEMM.swift`.
    @Test(arguments: [(1, true, 19), (2, false, 19), (1, true, 32), (2, false, 48)])
    func tilesAgreeWithADoubleReference(stride: Int, same: Bool, cout: Int) {
        let (batch, h, w, cin, k) = (stride == 1 ? 4 : 20, 32, 32, 16, 3)
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let rows = batch * g.outputHeight * g.outputWidth, patch = k * k * cin
        let tile = convolutionTileRows(rows: rows, patch: patch)
        #expect(tile < rows && rows % tile != 0 && tile % g.outputWidth != 0, "more than one tile, a short last one, a split row")
        var random = SeededRandom(seed: UInt64(17 + stride))
        let input = random.array(batch * h * w * cin), kernel = random.array(patch * cout, scale: 0.2)
        let bias = random.array(cout), probe = random.array(rows * cout)
        var output = [Float](repeating: 0, count: rows * cout)
        var scratch = [Float](repeating: 0, count: conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch))
        #expect(scratch.count == tile * patch)
        conv2dForward(output: &output, input: input, kernel: kernel, bias: bias, scratch: &scratch, batch: batch,
                      geometry: g, inputChannels: cin, outputChannels: cout)
        var dx = [Float](repeating: 0, count: input.count), dk = [Float](repeating: 0, count: kernel.count)
        var db = [Float](repeating: 0, count: cout)
        conv2dBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                       kernel: kernel, scratch: &scratch, batch: batch, geometry: g, inputChannels: cin, outputChannels: cout)

        // The reference: every (output row, window tap, channel) product, summed in Double with its magnitude.
        var y = [Double](repeating: 0, count: rows * cout), yMagnitude = y
        var rdx = [Double](repeating: 0, count: input.count), rdxMagnitude = rdx
        var rdk = [Double](repeating: 0, count: kernel.count), rdkMagnitude = rdk
        for row in 0..<rows {
            let n = row / (g.outputHeight * g.outputWidth), oh = row / g.outputWidth % g.outputHeight, ow = row % g.outputWidth
            for o in 0..<cout { y[row * cout + o] = Double(bias[o]); yMagnitude[row * cout + o] = abs(Double(bias[o])) }
            for i in 0..<k {
                let ih = oh * stride - g.padTop + i
                guard ih >= 0 && ih < h else { continue }
                for j in 0..<k {
                    let iw = ow * stride - g.padLeft + j
                    guard iw >= 0 && iw < w else { continue }
                    for c in 0..<cin {
                        let xi = ((n * h + ih) * w + iw) * cin + c, ki = ((i * k + j) * cin + c) * cout
                        let x = Double(input[xi])
                        for o in 0..<cout {
                            let wv = Double(kernel[ki + o]), dy = Double(probe[row * cout + o])
                            y[row * cout + o] += x * wv; yMagnitude[row * cout + o] += abs(x * wv)
                            rdx[xi] += dy * wv; rdxMagnitude[xi] += abs(dy * wv)
                            rdk[ki + o] += dy * x; rdkMagnitude[ki + o] += abs(dy * x)
                        }
                    }
                }
            }
        }
        let u = pow(2.0, -24.0)
        func worst(_ got: [Float], _ exact: [Double], _ magnitude: [Double], terms: Int) -> Double {
            zip(zip(got, exact), magnitude).map { abs(Double($0.0) - $0.1) / (Double(terms) * u * $1 + 1e-30) }.max() ?? 0
        }
        // Output: patch products and the bias; dX: each input is in at most k*k windows of cout
        // outputs (and added once per window, as col2im adds); dK: one product per output row.
        #expect(worst(output, y, yMagnitude, terms: patch + 1) <= 1)
        #expect(worst(dx, rdx, rdxMagnitude, terms: k * k * (cout + 1)) <= 1)
        #expect(worst(dk, rdk, rdkMagnitude, terms: rows + 1) <= 1)
        let rdb = (0..<cout).map { o in (0..<rows).reduce(0.0) { $0 + Double(probe[$1 * cout + o]) } }
        let rdbMagnitude = (0..<cout).map { o in (0..<rows).reduce(0.0) { $0 + abs(Double(probe[$1 * cout + o])) } }
        #expect(worst(db, rdb, rdbMagnitude, terms: rows + 1) <= 1)
    }
}

@Suite struct DepthwiseTests {
    @Test func handComputedDepthwise() {
        // 2 channels, 2x2 image, 2x2 kernel, valid: one output per channel = dot of window and kernel.
        let input: [Float] = [1, 10, 2, 20, 3, 30, 4, 40]  // (h, w, c)
        let kernel: [Float] = [1, 0, 1, 0, 1, 0, 1, 1]     // (kh, kw, c, 1)
        let g = WindowGeometry(inputHeight: 2, inputWidth: 2, kernelHeight: 2, kernelWidth: 2, strideHeight: 1,
                               strideWidth: 1, padding: .valid)
        var output = [Float](repeating: 0, count: 2)
        depthwiseForward(output: &output, input: input, kernel: kernel, bias: nil, batch: 1, geometry: g, channels: 2, multiplier: 1)
        #expect(output == [10, 40])
    }

    @Test(arguments: [
        (5, 5, 3, 1, 3, 1, true), (6, 6, 4, 1, 3, 2, true), (5, 5, 3, 1, 3, 2, false), (4, 5, 2, 2, 3, 1, true),
        (5, 5, 2, 3, 3, 2, false), (2, 2, 3, 1, 3, 1, true),
    ])
    func depthwiseBackwardMatchesFiniteDifferences(h: Int, w: Int, c: Int, multiplier: Int, k: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 1000 + w * 100 + c * 10 + multiplier + stride * 3))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let outChannels = c * multiplier
        let input = random.array(batch * h * w * c)
        let kernel = random.array(k * k * outChannels)
        let bias = random.array(outChannels)
        let outCount = batch * g.outputHeight * g.outputWidth * outChannels
        let probe = random.array(outCount)
        func forward(_ x: [Float], _ kern: [Float], _ b: [Float]) -> [Float] {
            var out = [Float](repeating: 0, count: outCount)
            depthwiseForward(output: &out, input: x, kernel: kern, bias: b, batch: batch, geometry: g, channels: c, multiplier: multiplier)
            return out
        }
        var dx = [Float](repeating: 0, count: input.count)
        var dk = [Float](repeating: 0, count: kernel.count)
        var db = [Float](repeating: 0, count: outChannels)
        depthwiseBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                          kernel: kernel, batch: batch, geometry: g, channels: c, multiplier: multiplier)
        for (name, e) in [("dx", finiteDifferenceError(input: input, forward: { forward($0, kernel, bias) }, analytic: dx, probe: probe)),
                          ("dk", finiteDifferenceError(input: kernel, forward: { forward(input, $0, bias) }, analytic: dk, probe: probe)),
                          ("db", finiteDifferenceError(input: bias, forward: { forward(input, kernel, $0) }, analytic: db, probe: probe))] {
            #expect(e.maxError <= 1e-4 * max(1, e.scale), "\(name) max error \(e.maxError)")
        }
    }

    /// Multiplier 1 gives each output the bits of the scalar loop `depthwisePixel` promises: the
    /// bias, then each inside tap's product (rounded) added row by row, at the edges (taps skipped)
    /// and inside alike; 16 and 19 channels (the vector loop and its tail), strides 1 and 2, 3 x 3
    /// and 2 x 2 kernels. The fused epilogue and the ZeroPadding2D fold rely on this order.
    @Test(arguments: [(16, 3, 1), (19, 3, 1), (19, 3, 2), (16, 2, 1)])
    func multiplierOneGivesTheScalarLoopsBits(channels: Int, k: Int, stride: Int) {
        var random = SeededRandom(seed: UInt64(channels * 10 + k + stride))
        let h = 6, w = 7, batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: .same)
        let x = random.array(batch * h * w * channels, scale: 3), kernel = random.array(k * k * channels), bias = random.array(channels)
        var y = [Float](repeating: .nan, count: batch * g.outputHeight * g.outputWidth * channels)
        depthwiseForward(output: &y, input: x, kernel: kernel, bias: bias, batch: batch, geometry: g, channels: channels, multiplier: 1)
        for n in 0..<batch {
            for oh in 0..<g.outputHeight {
                for ow in 0..<g.outputWidth {
                    for c in 0..<channels {
                        var a = bias[c]
                        for i in 0..<k {
                            for j in 0..<k {
                                let ih = oh * stride - g.padTop + i, iw = ow * stride - g.padLeft + j
                                guard ih >= 0, ih < h, iw >= 0, iw < w else { continue }
                                let product = x[((n * h + ih) * w + iw) * channels + c] * kernel[(i * k + j) * channels + c]
                                a = a + product
                            }
                        }
                        let got = y[((n * g.outputHeight + oh) * g.outputWidth + ow) * channels + c]
                        #expect(got.bitPattern == a.bitPattern, "(\(n), \(oh), \(ow), \(c))")
                    }
                }
            }
        }
    }

    /// The fused epilogue gives the bits of the depthwise convolution followed by the separate
    /// `channelAffineReLUForward` pass (16 and 19 channels: the vector loop and its tail;
    /// multiplier 1 and 2: both loops), for ReLU6 and a leaky ReLU with a threshold.
    @Test(arguments: [(16, 1), (19, 1), (16, 2), (19, 2)])
    func epilogueGivesTheSeparatePassBits(channels: Int, multiplier: Int) {
        var random = SeededRandom(seed: UInt64(channels * 10 + multiplier))
        let g = WindowGeometry(inputHeight: 7, inputWidth: 6, kernelHeight: 3, kernelWidth: 3, strideHeight: 2,
                               strideWidth: 2, padding: .same)
        let batch = 2, outChannels = channels * multiplier
        let x = random.array(batch * 7 * 6 * channels, scale: 3), kernel = random.array(9 * outChannels), bias = random.array(outChannels)
        let scale = random.array(outChannels, scale: 2), shift = random.array(outChannels)
        let count = batch * g.outputHeight * g.outputWidth * outChannels
        for relu in [ReLUParameters(maxValue: 6), ReLUParameters(maxValue: 0.8, negativeSlope: 0.2, threshold: 0.1)] {
            var fused = [Float](repeating: .nan, count: count), separate = fused
            scale.withUnsafeBufferPointer { s in
                shift.withUnsafeBufferPointer { t in
                    depthwiseForward(output: &fused, input: x, kernel: kernel, bias: bias, batch: batch, geometry: g, channels: channels,
                                     multiplier: multiplier, epilogue: ChannelAffineReLU(scale: s.baseAddress!, shift: t.baseAddress!, relu: relu))
                }
            }
            depthwiseForward(output: &separate, input: x, kernel: kernel, bias: bias, batch: batch, geometry: g, channels: channels,
                             multiplier: multiplier)
            let product = separate
            channelAffineReLUForward(output: &separate, input: product, scale: scale, shift: shift, rows: count / outChannels,
                                     channels: outChannels, relu)
            #expect(fused.map(\.bitPattern) == separate.map(\.bitPattern), "\(relu)")
            #expect(Set(separate).count > count / 4, "the ReLU clamps some outputs, not all")
        }
    }

    /// A ZeroPadding2D folded into the depthwise geometry (`GraphBuilder.foldZeroPadding`: padTop
    /// and padLeft grow, the input is the unpadded one, the output size stays) gives the padded
    /// copy's valid convolution: the skipped taps read zeros there. Exactly equal (== treats the
    /// only possible difference, a zero's sign, as equal): each output adds the same nonzero
    /// products in the same order. MobileNet's stride-2 padding ((0, 1), (0, 1)) and a symmetric one.
    @Test(arguments: [(16, 0, 1, 0, 1, 2), (19, 1, 1, 1, 1, 1), (19, 0, 1, 0, 1, 2)])
    func foldedZeroPaddingEqualsThePaddedCopy(channels: Int, top: Int, bottom: Int, left: Int, right: Int, stride: Int) {
        var random = SeededRandom(seed: UInt64(channels + top * 3 + stride))
        let h = 8, w = 8, batch = 2
        let x = random.array(batch * h * w * channels), kernel = random.array(9 * channels), bias = random.array(channels)
        let ph = h + top + bottom, pw = w + left + right
        var padded = [Float](repeating: .nan, count: batch * ph * pw * channels)
        zeroPadForward(output: &padded, input: x, batch: batch, height: h, width: w, channels: channels, top: top, bottom: bottom,
                       left: left, right: right)
        let g = WindowGeometry(inputHeight: ph, inputWidth: pw, kernelHeight: 3, kernelWidth: 3, strideHeight: stride,
                               strideWidth: stride, padding: .valid)
        var folded = g
        folded.inputHeight = h
        folded.inputWidth = w
        folded.padTop += top
        folded.padLeft += left
        let count = batch * g.outputHeight * g.outputWidth * channels
        var expected = [Float](repeating: .nan, count: count), got = expected
        depthwiseForward(output: &expected, input: padded, kernel: kernel, bias: bias, batch: batch, geometry: g, channels: channels, multiplier: 1)
        depthwiseForward(output: &got, input: x, kernel: kernel, bias: bias, batch: batch, geometry: folded, channels: channels, multiplier: 1)
        #expect(got == expected)
        #expect(g.outputHeight == (stride == 2 ? 4 : 8))
    }
}
