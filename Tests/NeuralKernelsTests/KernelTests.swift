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
        var scratch = [Float](repeating: 0, count: conv2dScratchCount(g, inputChannels: 1, batch: 1))
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
            var scratch = [Float](repeating: 0, count: max(1, conv2dScratchCount(g, inputChannels: cin, batch: batch)))
            conv2dForward(output: &out, input: x, kernel: kern, bias: b, scratch: &scratch, batch: batch, geometry: g,
                          inputChannels: cin, outputChannels: cout)
            return out
        }
        var dx = [Float](repeating: 0, count: input.count)
        var dk = [Float](repeating: 0, count: kernel.count)
        var db = [Float](repeating: 0, count: cout)
        var scratch = [Float](repeating: 0, count: max(1, conv2dScratchCount(g, inputChannels: cin, batch: batch)))
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
}
