import Foundation
import Testing
@testable import NeuralKernels

/// Dilated, grouped, 1-D (height 1, causal) and transposed convolutions: forwards on hand-checked
/// cases, backwards against central finite differences with 16 and 19 channels (a full 16-lane
/// vector and one with a tail of 3).
///
/// Tolerance of the finite differences: each convolution is linear in its input, its kernel and
/// its bias, so the central difference has no truncation error at any step; what is left is the
/// float32 rounding of the outputs the perturbed entry reaches (at most a few hundred here, each
/// off by about (taps) * 2^-24 * |y| ~ 1e-5), divided by the step's 2. With a step of 1 that is
/// below 1e-4 of the gradient's scale, the bound the other kernels' checks use.
@Suite struct ConvolutionFamilyTests {
    func zeros(_ n: Int) -> [Float] { [Float](repeating: 0, count: n) }

    @Test func dilatedAndCausalGeometryByHand() {
        // A 1 x 5 single-channel row, kernel [1, 10] with its taps 2 apart.
        let x: [Float] = [1, 2, 3, 4, 5], k: [Float] = [1, 10]
        func run(_ padding: WindowGeometry.Padding) -> [Float] {
            let g = WindowGeometry(inputHeight: 1, inputWidth: 5, kernelHeight: 1, kernelWidth: 2, strideHeight: 1,
                                   strideWidth: 1, padding: padding, dilationWidth: 2)
            var y = zeros(g.outputWidth), scratch = zeros(conv2dScratchCount(g, inputChannels: 1, outputChannels: 1, batch: 1))
            conv2dForward(output: &y, input: x, kernel: k, bias: nil, scratch: &scratch, batch: 1, geometry: g,
                          inputChannels: 1, outputChannels: 1)
            return y
        }
        #expect(run(.valid) == [31, 42, 53])  // y[i] = x[i] + 10 x[i + 2]
        #expect(run(.causal) == [10, 20, 31, 42, 53])  // 2 zeros before: x[i - 2] + 10 x[i]
        #expect(run(.same) == [20, 31, 42, 53, 4])  // extent 3, one zero each side: x[i - 1] + 10 x[i + 1]
        // TensorFlow's same padding on the dilated extent: 3x3 dilated by 2 is 5 wide, 4 pads on 7.
        let g = WindowGeometry(inputHeight: 7, inputWidth: 8, kernelHeight: 3, kernelWidth: 3, strideHeight: 1, strideWidth: 2,
                               padding: .same, dilationHeight: 2, dilationWidth: 2)
        #expect(g.outputHeight == 7 && g.padTop == 2 && g.outputWidth == 4 && g.padLeft == 1)
        let valid = WindowGeometry(inputHeight: 7, inputWidth: 7, kernelHeight: 3, kernelWidth: 3, strideHeight: 1,
                                   strideWidth: 1, padding: .valid, dilationHeight: 3, dilationWidth: 1)
        #expect(valid.outputHeight == 1 && valid.outputWidth == 5)
        // Causal with stride 2 over 5 steps: ceil(5 / 2) outputs, (3 - 1) * 2 zeros before.
        let causal = WindowGeometry(inputHeight: 1, inputWidth: 5, kernelHeight: 1, kernelWidth: 3, strideHeight: 1,
                                    strideWidth: 2, padding: .causal, dilationWidth: 2)
        #expect(causal.outputWidth == 3 && causal.padLeft == 4 && causal.padTop == 0 && causal.outputHeight == 1)
    }

    @Test func groupedConvolutionByHand() {
        // One pixel of 4 channels, 2 groups of 2 inputs -> 1 output: kernel (1, 1, 2, 2) is
        // [[1, 10], [100, 1000]] (row: input in the group, column: output).
        var y = zeros(2)
        let pixel: [Float] = [1, 2, 3, 4], k: [Float] = [1, 10, 100, 1000]
        let g1 = WindowGeometry(inputHeight: 1, inputWidth: 1, kernelHeight: 1, kernelWidth: 1, strideHeight: 1, strideWidth: 1,
                                padding: .valid)
        conv2dForward(output: &y, input: pixel, kernel: k, bias: [0.5, -0.5], scratch: nil, batch: 1, geometry: g1,
                      inputChannels: 4, outputChannels: 2, groups: 2)
        #expect(y == [201.5, 4029.5])  // 1 * 1 + 2 * 100 + 0.5, 3 * 10 + 4 * 1000 - 0.5
        // A 1 x 2 window over a 1 x 2 image (the im2col path): kernel[j][c][o] = 4 j + 2 c + o + 1.
        let image: [Float] = [1, 2, 3, 4, 5, 6, 7, 8]
        let kernel: [Float] = (0..<8).map { Float($0 + 1) }
        let g = WindowGeometry(inputHeight: 1, inputWidth: 2, kernelHeight: 1, kernelWidth: 2, strideHeight: 1, strideWidth: 1,
                               padding: .valid)
        var scratch = zeros(conv2dScratchCount(g, inputChannels: 4, outputChannels: 2, batch: 1, groups: 2))
        #expect(scratch.count == 4)  // one group's 1 x 2 x 2 columns
        conv2dForward(output: &y, input: image, kernel: kernel, bias: nil, scratch: &scratch, batch: 1, geometry: g,
                      inputChannels: 4, outputChannels: 2, groups: 2)
        // Output 0 reads channels 0, 1 of both pixels; output 1 channels 2, 3.
        #expect(y == [74, 128])  // 1 * 1 + 2 * 3 + 5 * 5 + 6 * 7, 3 * 2 + 4 * 4 + 7 * 6 + 8 * 8
    }

    @Test func transposedConvolutionByHand() {
        // A 2x2 single-channel input, kernel 2x2 [[1, 10], [100, 1000]], stride 2, valid: each
        // input cell stamps its multiple of the kernel into its own 2x2 block of the 4x4 output.
        let g = WindowGeometry(inputHeight: 4, inputWidth: 4, kernelHeight: 2, kernelWidth: 2, strideHeight: 2, strideWidth: 2,
                               padding: .valid)
        var y = zeros(16), scratch = zeros(conv2dScratchCount(g, inputChannels: 1, outputChannels: 1, batch: 1))
        conv2dTransposeForward(output: &y, input: [1, 2, 3, 4], kernel: [1, 10, 100, 1000], bias: [0.5], scratch: &scratch,
                               batch: 1, geometry: g, inputChannels: 1, outputChannels: 1)
        #expect(y == [1, 10, 2, 20,
                      100, 1000, 200, 2000,
                      3, 30, 4, 40,
                      300, 3000, 400, 4000].map { $0 + 0.5 })
        // Stride 1, one input cell, 3x3 kernel, 'same' (pad 1): the output is the kernel's centre
        // row/column neighbourhood flipped onto the cell, i.e. y[i][j] = x * k[1 - i + 1][...];
        // with a single 1x1 input and a 1x1 output map only the kernel centre reaches it.
        let same = WindowGeometry(inputHeight: 1, inputWidth: 1, kernelHeight: 3, kernelWidth: 3, strideHeight: 1,
                                  strideWidth: 1, padding: .same)
        var one = zeros(1), scratch3 = zeros(conv2dScratchCount(same, inputChannels: 1, outputChannels: 1, batch: 1))
        conv2dTransposeForward(output: &one, input: [2], kernel: (1...9).map(Float.init), bias: nil, scratch: &scratch3,
                               batch: 1, geometry: same, inputChannels: 1, outputChannels: 1)
        #expect(one == [10])
        // Two input channels to one output through a pointwise kernel (1, 1, out 1, in 2).
        let point = WindowGeometry(inputHeight: 1, inputWidth: 2, kernelHeight: 1, kernelWidth: 1, strideHeight: 1,
                                   strideWidth: 1, padding: .valid)
        var two = zeros(2)
        conv2dTransposeForward(output: &two, input: [1, 2, 3, 4], kernel: [10, 100], bias: nil, scratch: nil, batch: 1,
                               geometry: point, inputChannels: 2, outputChannels: 1)
        #expect(two == [210, 430])
    }

    /// The transposed convolution is the adjoint of the Conv2D with the same geometry:
    /// <convT(x), y> = <x, conv(y)> for any x and y (checked in Double over float32 results).
    @Test(arguments: [(2, true), (2, false), (1, true), (3, false)])
    func transposedIsTheAdjointOfConv2D(stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(41 + stride * 2 + (same ? 1 : 0)))
        let (batch, h, w, cin, cout, k) = (2, 7, 6, 16, 19, 3)  // g: (h, w, cout) -> (oh, ow, cin)
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let kernel = random.array(k * k * cout * cin)
        let x = random.array(batch * g.outputHeight * g.outputWidth * cin), y = random.array(batch * h * w * cout)
        var transposed = zeros(y.count), convolved = zeros(x.count)
        var scratch = zeros(max(1, conv2dScratchCount(g, inputChannels: cout, outputChannels: cin, batch: batch)))
        conv2dTransposeForward(output: &transposed, input: x, kernel: kernel, bias: nil, scratch: &scratch, batch: batch,
                               geometry: g, inputChannels: cin, outputChannels: cout)
        conv2dForward(output: &convolved, input: y, kernel: kernel, bias: nil, scratch: &scratch, batch: batch, geometry: g,
                      inputChannels: cout, outputChannels: cin)
        let left = zip(transposed, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let right = zip(x, convolved).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let magnitude = zip(transposed, y).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
        // Each side's float32 entries carry k*k*channels-term rounding: 2^-24 * 500 relative is ample.
        #expect(abs(left - right) <= 500 * pow(2, -24) * magnitude, "\(left) vs \(right)")
    }

    /// conv2dBackward against finite differences for dilated, grouped and height-1 causal
    /// convolutions: (h, w, cin, cout, kh, kw, stride, dilation, groups, padding).
    @Test(arguments: [
        (5, 6, 16, 19, 3, 3, 1, 2, 1, WindowGeometry.Padding.same), (6, 5, 19, 16, 3, 2, 2, 2, 1, .valid),
        (4, 5, 32, 38, 3, 3, 1, 1, 2, .same), (4, 4, 32, 38, 1, 1, 1, 1, 2, .valid), (5, 5, 38, 32, 2, 3, 2, 2, 2, .same),
        (1, 9, 16, 19, 1, 3, 1, 2, 1, .causal), (1, 8, 19, 16, 1, 2, 2, 3, 1, .causal), (1, 7, 32, 38, 1, 3, 1, 1, 2, .causal),
    ])
    func conv2dBackwardMatchesFiniteDifferences(h: Int, w: Int, cin: Int, cout: Int, kh: Int, kw: Int, stride: Int,
                                                dilation: Int, groups: Int, padding: WindowGeometry.Padding) {
        var random = SeededRandom(seed: UInt64(h * 1000 + w * 100 + cin + cout * 7 + kh * 3 + kw + dilation * 11 + groups))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: kh, kernelWidth: kw, strideHeight: h == 1 ? 1 : stride,
                               strideWidth: stride, padding: padding, dilationHeight: h == 1 ? 1 : dilation, dilationWidth: dilation)
        #expect(g.outputHeight > 0 && g.outputWidth > 0)
        let input = random.array(batch * h * w * cin), kernel = random.array(kh * kw * cin / groups * cout, scale: 0.3)
        let bias = random.array(cout)
        let outCount = batch * g.outputHeight * g.outputWidth * cout
        let probe = random.array(outCount)
        let scratchCount = max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch, groups: groups))
        func forward(_ x: [Float], _ kern: [Float], _ b: [Float]) -> [Float] {
            var out = zeros(outCount), scratch = zeros(scratchCount)
            conv2dForward(output: &out, input: x, kernel: kern, bias: b, scratch: &scratch, batch: batch, geometry: g,
                          inputChannels: cin, outputChannels: cout, groups: groups)
            return out
        }
        var dx = zeros(input.count), dk = zeros(kernel.count), db = zeros(cout), scratch = zeros(scratchCount)
        conv2dBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                       kernel: kernel, scratch: &scratch, batch: batch, geometry: g, inputChannels: cin, outputChannels: cout,
                       groups: groups)
        let ex = finiteDifferenceError(input: input, step: 1, forward: { forward($0, kernel, bias) }, analytic: dx, probe: probe)
        let ek = finiteDifferenceError(input: kernel, step: 1, forward: { forward(input, $0, bias) }, analytic: dk, probe: probe)
        let eb = finiteDifferenceError(input: bias, step: 1, forward: { forward(input, kernel, $0) }, analytic: db, probe: probe)
        #expect(ex.maxError <= 1e-4 * max(1, ex.scale), "dx max error \(ex.maxError) of \(ex.scale)")
        #expect(ek.maxError <= 1e-4 * max(1, ek.scale), "dk max error \(ek.maxError) of \(ek.scale)")
        #expect(eb.maxError <= 1e-4 * max(1, eb.scale), "db max error \(eb.maxError) of \(eb.scale)")
        if groups > 1 {
            // The grouped forward equals each group run as its own ungrouped convolution.
            let y = forward(input, kernel, bias)
            let (gi, go) = (cin / groups, cout / groups)
            for group in 0..<groups {
                /// Columns `first..<first + count` of the rows of `values`, `width` wide.
                func columns(_ values: [Float], width: Int, first: Int, count: Int) -> [Float] {
                    var out: [Float] = []
                    for row in 0..<(values.count / width) { out += values[(row * width + first)..<(row * width + first + count)] }
                    return out
                }
                let part = columns(input, width: cin, first: group * gi, count: gi)
                let partKernel = columns(kernel, width: cout, first: group * go, count: go)
                var out = zeros(batch * g.outputHeight * g.outputWidth * go)
                var s = zeros(max(1, conv2dScratchCount(g, inputChannels: gi, outputChannels: go, batch: batch)))
                conv2dForward(output: &out, input: part, kernel: partKernel, bias: columns(bias, width: cout, first: group * go, count: go),
                              scratch: &s, batch: batch, geometry: g, inputChannels: gi, outputChannels: go)
                let mine = columns(y, width: cout, first: group * go, count: go)
                #expect(mine == out, "group \(group)")
            }
        }
    }

    /// conv2dTransposeBackward against finite differences: (h, w, cin, cout, k, stride, padding),
    /// h x w the transposed convolution's output.
    @Test(arguments: [(7, 6, 16, 19, 3, 2, true), (8, 8, 19, 16, 3, 2, false), (5, 6, 16, 19, 3, 1, true),
                      (6, 6, 19, 16, 2, 2, true), (4, 5, 16, 19, 1, 1, false), (9, 9, 16, 19, 1, 2, false)])
    func transposedBackwardMatchesFiniteDifferences(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 100 + w * 10 + cin + cout * 3 + k * 5 + stride))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let input = random.array(batch * g.outputHeight * g.outputWidth * cin), kernel = random.array(k * k * cout * cin, scale: 0.3)
        let bias = random.array(cout)
        let outCount = batch * h * w * cout
        let probe = random.array(outCount)
        let scratchCount = max(1, conv2dScratchCount(g, inputChannels: cout, outputChannels: cin, batch: batch))
        func forward(_ x: [Float], _ kern: [Float], _ b: [Float]) -> [Float] {
            var out = zeros(outCount), scratch = zeros(scratchCount)
            conv2dTransposeForward(output: &out, input: x, kernel: kern, bias: b, scratch: &scratch, batch: batch, geometry: g,
                                   inputChannels: cin, outputChannels: cout)
            return out
        }
        var dx = zeros(input.count), dk = zeros(kernel.count), db = zeros(cout), scratch = zeros(scratchCount)
        conv2dTransposeBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                                kernel: kernel, scratch: &scratch, batch: batch, geometry: g, inputChannels: cin,
                                outputChannels: cout)
        let ex = finiteDifferenceError(input: input, step: 1, forward: { forward($0, kernel, bias) }, analytic: dx, probe: probe)
        let ek = finiteDifferenceError(input: kernel, step: 1, forward: { forward(input, $0, bias) }, analytic: dk, probe: probe)
        let eb = finiteDifferenceError(input: bias, step: 1, forward: { forward(input, kernel, $0) }, analytic: db, probe: probe)
        #expect(ex.maxError <= 1e-4 * max(1, ex.scale), "dx max error \(ex.maxError) of \(ex.scale)")
        #expect(ek.maxError <= 1e-4 * max(1, ek.scale), "dk max error \(ek.maxError) of \(ek.scale)")
        #expect(eb.maxError <= 1e-4 * max(1, eb.scale), "db max error \(eb.maxError) of \(eb.scale)")
    }

    @Test func dilatedDepthwiseByHand() {
        // A 1 x 5 row of 2 channels, taps 2 apart, 'same' (one zero each side): channel 0's kernel
        // [1, 10], channel 1's [100, 1000]; y[i][c] = x[i - 1][c] k0[c] + x[i + 1][c] k1[c].
        let g = WindowGeometry(inputHeight: 1, inputWidth: 5, kernelHeight: 1, kernelWidth: 2, strideHeight: 1, strideWidth: 1,
                               padding: .same, dilationWidth: 2)
        let x: [Float] = [1, -1, 2, -2, 3, -3, 4, -4, 5, -5]
        var y = zeros(10)
        depthwiseForward(output: &y, input: x, kernel: [1, 100, 10, 1000], bias: nil, batch: 1, geometry: g, channels: 2, multiplier: 1)
        #expect(y == [20, -2000, 31, -3100, 42, -4200, 53, -5300, 4, -400])
        // The same taps with multiplier 2 (the other loop): kernel (1, 2, 1, 2) [[1, 2], [10, 20]].
        var y2 = zeros(10)
        depthwiseForward(output: &y2, input: [1, 2, 3, 4, 5], kernel: [1, 2, 10, 20], bias: nil, batch: 1, geometry: g,
                         channels: 1, multiplier: 2)
        #expect(y2 == [20, 40, 31, 62, 42, 84, 53, 106, 4, 8])
    }

    /// depthwiseBackward against finite differences with dilated taps: (h, w, channels,
    /// multiplier, k, stride, dilation, same).
    @Test(arguments: [(7, 6, 16, 1, 3, 1, 2, true), (7, 7, 19, 1, 3, 1, 3, false), (6, 7, 19, 1, 3, 2, 2, true),
                      (6, 6, 16, 2, 3, 1, 2, true), (5, 7, 19, 2, 2, 1, 3, false)])
    func dilatedDepthwiseBackwardMatchesFiniteDifferences(h: Int, w: Int, c: Int, multiplier: Int, k: Int, stride: Int,
                                                          dilation: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 100 + w * 10 + c + multiplier * 7 + dilation * 3 + stride))
        let batch = 2, outChannels = c * multiplier
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid, dilationHeight: dilation, dilationWidth: dilation)
        #expect(g.outputHeight > 0 && g.outputWidth > 0)
        let input = random.array(batch * h * w * c), kernel = random.array(k * k * outChannels), bias = random.array(outChannels)
        let outCount = batch * g.outputHeight * g.outputWidth * outChannels
        let probe = random.array(outCount)
        func forward(_ x: [Float], _ kern: [Float], _ b: [Float]) -> [Float] {
            var out = zeros(outCount)
            depthwiseForward(output: &out, input: x, kernel: kern, bias: b, batch: batch, geometry: g, channels: c, multiplier: multiplier)
            return out
        }
        var dx = zeros(input.count), dk = zeros(kernel.count), db = zeros(outChannels)
        depthwiseBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: &db, outputGradient: probe, input: input,
                          kernel: kernel, batch: batch, geometry: g, channels: c, multiplier: multiplier)
        let ex = finiteDifferenceError(input: input, step: 1, forward: { forward($0, kernel, bias) }, analytic: dx, probe: probe)
        let ek = finiteDifferenceError(input: kernel, step: 1, forward: { forward(input, $0, bias) }, analytic: dk, probe: probe)
        let eb = finiteDifferenceError(input: bias, step: 1, forward: { forward(input, kernel, $0) }, analytic: db, probe: probe)
        #expect(ex.maxError <= 1e-4 * max(1, ex.scale), "dx max error \(ex.maxError) of \(ex.scale)")
        #expect(ek.maxError <= 1e-4 * max(1, ek.scale), "dk max error \(ek.maxError) of \(ek.scale)")
        #expect(eb.maxError <= 1e-4 * max(1, eb.scale), "db max error \(eb.maxError) of \(eb.scale)")
        // Against the taps written out plainly, in Double: a float32 sum of at most k*k + 1 terms
        // of magnitude below 1 is within (k*k + 1) * 2^-24 * (1 + |sum|) of it, under 1e-5 here.
        let y = forward(input, kernel, bias)
        for n in 0..<batch {
            for oh in 0..<g.outputHeight {
                for ow in 0..<g.outputWidth {
                    for o in 0..<outChannels {
                        var sum = Double(bias[o])
                        for i in 0..<k {
                            for j in 0..<k {
                                let ih = oh * stride - g.padTop + i * dilation, iw = ow * stride - g.padLeft + j * dilation
                                guard ih >= 0 && ih < h && iw >= 0 && iw < w else { continue }
                                sum += Double(input[((n * h + ih) * w + iw) * c + o / multiplier]) * Double(kernel[(i * k + j) * outChannels + o])
                            }
                        }
                        let got = y[((n * g.outputHeight + oh) * g.outputWidth + ow) * outChannels + o]
                        #expect(abs(Double(got) - sum) <= 1e-5 * (1 + abs(sum)))
                    }
                }
            }
        }
    }
}
