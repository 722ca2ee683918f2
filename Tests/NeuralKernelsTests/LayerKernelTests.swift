import Foundation
import Testing
@testable import NeuralKernels

/// PReLU, layer normalization and resizing (the Activations, Normalization and Preprocessing
/// families' kernels): forwards on hand-checked cases, backwards against central finite
/// differences with 16 channels (a full vector) and 19 (a vector plus a tail of 3).
@Suite struct LayerKernelTests {
    // MARK: PReLU

    @Test func preluForwardAndBackwardByHand() {
        // Shape (2, 2) with alpha shared over axis 1 (alpha shape (2, 1): one per row).
        let layout = preluAlphaLayout(shape: [2, 2], alphaShape: [2, 1])
        #expect(layout.rowOffsets == [0, 1] && layout.columnStride == 0)
        let x: [Float] = [-2, 3, -4, 0], alpha: [Float] = [0.5, -0.25]
        var y = [Float](repeating: 9, count: 4)
        preluForward(output: &y, input: x, alpha: alpha, batch: 1, rowOffsets: layout.rowOffsets, columns: 2,
                     columnStride: layout.columnStride)
        #expect(y == [-1, 3, 1, 0])
        var dx = [Float](repeating: 0, count: 4), dalpha = [Float](repeating: 0, count: 2)
        preluBackward(inputGradient: &dx, alphaGradient: &dalpha, outputGradient: [1, 2, 3, 4], input: x, alpha: alpha, alphaCount: 2,
                      batch: 1, rowOffsets: layout.rowOffsets, columns: 2, columnStride: layout.columnStride)
        // dx: alpha dy below 0, dy above, 0 at 0; dalpha: dy x over the negative inputs.
        #expect(dx == [0.5, 2, -0.75, 0])
        #expect(dalpha == [-2, -12])
        // Alpha (1, 1, c) over (h, w, c): every row reads offset 0, columns stride 1.
        let shared = preluAlphaLayout(shape: [2, 3, 4], alphaShape: [1, 1, 4])
        #expect(shared.rowOffsets == [0, 0, 0, 0, 0, 0] && shared.columnStride == 1)
        // Alpha (2, 1, 4) over (2, 3, 4): rows of the first plane read 0, of the second 4.
        let perHeight = preluAlphaLayout(shape: [2, 3, 4], alphaShape: [2, 1, 4])
        #expect(perHeight.rowOffsets == [0, 0, 0, 4, 4, 4] && perHeight.columnStride == 1)
        let full = preluAlphaLayout(shape: [2, 3, 4], alphaShape: [2, 3, 4])
        #expect(full.rowOffsets == [0, 4, 8, 12, 16, 20] && full.columnStride == 1)
        #expect(preluAlphaLayout(shape: [5], alphaShape: [5]) == ([0], 1))
    }

    @Test(arguments: [[3, 2, 16], [3, 2, 19]])
    func preluBackwardMatchesFiniteDifferences(shape: [Int]) {
        var random = SeededRandom(seed: 41)
        let batch = 2, count = shape.reduce(1, *)
        for alphaShape in [shape, [1, 1, shape[2]], [shape[0], 1, 1], [1, shape[1], shape[2]]] {
            let layout = preluAlphaLayout(shape: shape, alphaShape: alphaShape)
            let alphaCount = alphaShape.reduce(1, *)
            // PReLU is linear on each side of 0: differences that do not cross 0 are exact.
            let x = awayFromKinks(random.array(batch * count, scale: 3), kinks: [0])
            let alpha = random.array(alphaCount), probe = random.array(batch * count)
            func forward(_ x: [Float], _ alpha: [Float]) -> [Float] {
                var y = [Float](repeating: 0, count: batch * count)
                preluForward(output: &y, input: x, alpha: alpha, batch: batch, rowOffsets: layout.rowOffsets, columns: shape[2],
                             columnStride: layout.columnStride)
                return y
            }
            var dx = [Float](repeating: 0, count: x.count), dalpha = [Float](repeating: 0, count: alphaCount)
            preluBackward(inputGradient: &dx, alphaGradient: &dalpha, outputGradient: probe, input: x, alpha: alpha,
                          alphaCount: alphaCount, batch: batch, rowOffsets: layout.rowOffsets, columns: shape[2],
                          columnStride: layout.columnStride)
            let ex = finiteDifferenceError(input: x, forward: { forward($0, alpha) }, analytic: dx, probe: probe)
            #expect(ex.maxError <= 1e-4 * max(1, ex.scale), "\(shape) alpha \(alphaShape) dx: \(ex.maxError)")
            let ea = finiteDifferenceError(input: alpha, forward: { forward(x, $0) }, analytic: dalpha, probe: probe)
            #expect(ea.maxError <= 1e-4 * max(1, ea.scale), "\(shape) alpha \(alphaShape) dalpha: \(ea.maxError)")
        }
    }

    // MARK: Layer normalization

    @Test func layerNormForwardByHand() {
        // Row [1, 2, 3, 6]: mean 3, variance (4 + 1 + 0 + 9) / 4 = 3.5; with epsilon 0.5, r = 1/2.
        var y = [Float](repeating: 0, count: 4)
        layerNormForward(output: &y, input: [1, 2, 3, 6], gamma: nil, beta: nil, rows: 1, channels: 4, epsilon: 0.5)
        #expect(y == [-1, -0.5, 0, 1.5])
        layerNormForward(output: &y, input: [1, 2, 3, 6], gamma: [2, 1, 1, -2], beta: [0, 1, 0.5, 0], rows: 1, channels: 4,
                         epsilon: 0.5)
        #expect(y == [-2, 0.5, 0.5, -3])
        // Rows are independent: a constant row is beta; [1, 3] has mean 2 and variance 1, and with
        // epsilon 3, r = 1/2.
        var two = [Float](repeating: 0, count: 4)
        layerNormForward(output: &two, input: [7, 7, 1, 3], gamma: nil, beta: [0.25, 0.5], rows: 2, channels: 2, epsilon: 3)
        #expect(two == [0.25, 0.5, -0.25, 1] as [Float])
    }

    /// The float32 backward against central differences of the textbook formula in Double
    /// (step 1e-6: truncation ~1e-12, rounding ~1e-10); the bound is float32 rounding of the
    /// analytic gradient's terms (a few ulps of the largest of them, sums in Double).
    @Test(arguments: [16, 19])
    func layerNormBackwardMatchesFiniteDifferencesInDouble(channels: Int) {
        var random = SeededRandom(seed: 43)
        let rows = 5, epsilon = 1e-3
        let x = random.array(rows * channels, scale: 2)
        let gamma = random.array(channels).map { $0 + 1.5 }, beta = random.array(channels), probe = random.array(rows * channels)
        func objective(_ x: [Double], _ gamma: [Double], _ beta: [Double]) -> Double {
            var total = 0.0
            for r in 0..<rows {
                let row = x[(r * channels)..<((r + 1) * channels)]
                let mean = row.reduce(0, +) / Double(channels)
                let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(channels)
                for (c, v) in row.enumerated() {
                    total += Double(probe[r * channels + c]) * ((v - mean) / (variance + epsilon).squareRoot() * gamma[c] + beta[c])
                }
            }
            return total
        }
        var dx = [Float](repeating: 0, count: x.count), dgamma = [Float](repeating: 0, count: channels)
        var dbeta = [Float](repeating: 0, count: channels)
        layerNormBackward(inputGradient: &dx, gammaGradient: &dgamma, betaGradient: &dbeta, outputGradient: probe, input: x,
                          gamma: gamma, rows: rows, channels: channels, epsilon: Float(epsilon))
        let x64 = x.map(Double.init), g64 = gamma.map(Double.init), b64 = beta.map(Double.init)
        func check(_ name: String, _ values: [Double], _ analytic: [Float], _ f: ([Double]) -> Double) {
            var worst = 0.0, scale = 0.0
            for i in values.indices {
                let h = 1e-6 * max(1, abs(values[i]))
                var plus = values, minus = values
                plus[i] += h
                minus[i] -= h
                let numeric = (f(plus) - f(minus)) / (2 * h)
                worst = max(worst, abs(numeric - Double(analytic[i])))
                scale = max(scale, abs(numeric))
            }
            // float32 inputs to the formula (mean, r, x̂ rounded to float32 at most twice each)
            // and the float32 result: 64 ulps of the largest gradient covers them with room.
            #expect(worst <= 64 * Double(Float.ulpOfOne) * max(1, scale), "\(name) channels \(channels): \(worst) of \(scale)")
        }
        check("dx", x64, dx) { objective($0, g64, b64) }
        check("dgamma", g64, dgamma) { objective(x64, $0, b64) }
        check("dbeta", b64, dbeta) { objective(x64, g64, $0) }
        // Without gamma and beta the input gradient is the same formula with gamma 1.
        var dxPlain = [Float](repeating: 0, count: x.count)
        layerNormBackward(inputGradient: &dxPlain, gammaGradient: nil, betaGradient: nil, outputGradient: probe, input: x,
                          gamma: nil, rows: rows, channels: channels, epsilon: Float(epsilon))
        check("dx without gamma", x64, dxPlain) { objective($0, [Double](repeating: 1, count: channels), b64) }
    }

    // MARK: Resizing

    @Test func resizeTapsAndCropsByHand() {
        // 2 -> 4: sources -0.25, 0.25, 0.75, 1.25 (clamped to 0 and 1).
        #expect(bilinearTaps(outSize: 4, inSize: 2) == [BilinearTap(lower: 0, upper: 0, lerp: 0.75),
                                                        BilinearTap(lower: 0, upper: 1, lerp: 0.25),
                                                        BilinearTap(lower: 0, upper: 1, lerp: 0.75),
                                                        BilinearTap(lower: 1, upper: 1, lerp: 0.25)])
        // Keras' smart_resize crop: 12x8 to 16x16 keeps the centred 8x8; 10x20 to 10x12 keeps 10x12 at column 4.
        #expect(aspectRatioCrop(height: 12, width: 8, targetHeight: 16, targetWidth: 16) == (2, 0, 8, 8))
        #expect(aspectRatioCrop(height: 10, width: 20, targetHeight: 10, targetWidth: 12) == (0, 4, 10, 12))
    }

    @Test func resizeForwardByHand() {
        // A 1x2 single-channel image [0, 4] to 1x4: lerps 0.75 of the clamped 0 ... (see taps).
        let g = ResizeGeometry(height: 1, width: 2, channels: 1, outHeight: 1, outWidth: 4, cropToAspectRatio: false)
        var y = [Float](repeating: 0, count: 4)
        resizeBilinearForward(output: &y, input: [0, 4], batch: 1, g)
        #expect(y == [0, 1, 3, 4])
        // Nearest, 2 -> 4 and 4 -> 2: floor((i + 0.5) * in/out).
        #expect(resizeNearestSources(g) == [0, 0, 1, 1])
        let down = ResizeGeometry(height: 1, width: 4, channels: 2, outHeight: 1, outWidth: 2, cropToAspectRatio: false)
        #expect(resizeNearestSources(down) == [2, 3, 6, 7])
        // Crop to aspect ratio: a 2x4 image to 1x1 reads the centred 2x2 window (columns 1 and 2).
        let crop = ResizeGeometry(height: 2, width: 4, channels: 1, outHeight: 1, outWidth: 1, cropToAspectRatio: true)
        #expect((crop.top, crop.left, crop.cropHeight, crop.cropWidth) == (0, 1, 2, 2))
        var z: [Float] = [0]
        resizeBilinearForward(output: &z, input: [0, 1, 2, 100, 0, 3, 4, 100], batch: 1, crop)
        #expect(z == [2.5])
    }

    @Test(arguments: [16, 19])
    func resizeBackwardMatchesFiniteDifferences(channels c: Int) {
        var random = SeededRandom(seed: 47)
        let batch = 2
        // Down, up by non-integer factors, and both with an aspect-ratio crop.
        let cases = [(5, 7, 3, 4, false), (3, 4, 7, 6, false), (6, 4, 5, 5, true), (4, 9, 4, 6, true)]
        for (h, w, oh, ow, crop) in cases {
            let g = ResizeGeometry(height: h, width: w, channels: c, outHeight: oh, outWidth: ow, cropToAspectRatio: crop)
            let x = random.array(batch * h * w * c, scale: 3), probe = random.array(batch * oh * ow * c)
            // Bilinear resizing is linear: central differences are exact up to float32 rounding.
            var dx = [Float](repeating: 0, count: x.count)
            resizeBilinearBackward(inputGradient: &dx, outputGradient: probe, batch: batch, g)
            let e = finiteDifferenceError(input: x, forward: { input in
                var y = [Float](repeating: 0, count: batch * oh * ow * c)
                resizeBilinearForward(output: &y, input: input, batch: batch, g)
                return y
            }, analytic: dx, probe: probe)
            #expect(e.maxError <= 1e-4 * max(1, e.scale), "bilinear \(h)x\(w) -> \(oh)x\(ow) crop \(crop): \(e.maxError)")
            let sources = resizeNearestSources(g)
            var dn = [Float](repeating: 0, count: x.count)
            gatherBackward(inputGradient: &dn, outputGradient: probe, batch: batch, sources: sources, inputCount: h * w * c)
            let en = finiteDifferenceError(input: x, forward: { input in
                var y = [Float](repeating: 0, count: batch * oh * ow * c)
                gatherForward(output: &y, input: input, batch: batch, sources: sources, inputCount: h * w * c)
                return y
            }, analytic: dn, probe: probe)
            #expect(en.maxError <= 1e-4 * max(1, en.scale), "nearest \(h)x\(w) -> \(oh)x\(ow) crop \(crop): \(en.maxError)")
        }
    }
}
