import Testing
@testable import NeuralKernels

/// The narrow product's documented order, one entry at a time: its k products added onto 0 in
/// order by fused multiply-adds, then C's old value added once.
private func sequentialProduct(m: Int, n: Int, k: Int, a: [Float], lda: Int, b: [Float], c: [Float], accumulate: Bool) -> [Float] {
    var out = c
    for i in 0..<m {
        for j in 0..<n {
            var sum: Float = 0
            for p in 0..<k { sum = sum.addingProduct(a[i * lda + p], b[p * n + j]) }
            out[i * n + j] = accumulate ? sum + c[i * n + j] : sum
        }
    }
    return out
}

@Suite struct NarrowGEMMTests {
    /// Every register tile (8, 4 and single rows) and every width, against the order written out
    /// in scalar code: the bits must be the same, as the kernel documents.
    @Test(arguments: [16, 32, 48, 64])
    func bitsAreTheSequentialFusedSums(n: Int) {
        var random = SeededRandom(seed: UInt64(n))
        for (m, k) in [(1, 1), (3, 7), (4, 16), (5, 27), (8, 3), (9, 144), (13, 33), (21, 64)] {
            let lda = k + 3
            let a = random.array(m * lda), b = random.array(k * n), c = random.array(m * n)
            for accumulate in [false, true] {
                var out = c
                gemm(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: n, beta: accumulate ? 1 : 0, c: &out, ldc: n)
                let expected = sequentialProduct(m: m, n: n, k: k, a: a, lda: lda, b: b, c: c, accumulate: accumulate)
                #expect(out.map(\.bitPattern) == expected.map(\.bitPattern), "m \(m) k \(k) n \(n) accumulate \(accumulate)")
            }
        }
    }

    /// The narrow product is the same product OpenBLAS computes, up to float32 summation order:
    /// each entry within k * 2^-23 of the sum of |a||b| (the bound on any order's rounding error
    /// for k terms), checked against a Double reference.
    @Test func agreesWithDoubleWithinSummationBound() {
        var random = SeededRandom(seed: 7)
        let (m, n, k) = (37, 48, 200)
        let a = random.array(m * k), b = random.array(k * n)
        var out = [Float](repeating: .nan, count: m * n)
        gemm(m: m, n: n, k: k, a: a, lda: k, b: b, ldb: n, beta: 0, c: &out, ldc: n)
        for i in 0..<m {
            for j in 0..<n {
                var exact = 0.0, magnitude = 0.0
                for p in 0..<k {
                    exact += Double(a[i * k + p]) * Double(b[p * n + j])
                    magnitude += abs(Double(a[i * k + p]) * Double(b[p * n + j]))
                }
                #expect(abs(Double(out[i * n + j]) - exact) <= Double(k) * 0x1p-23 * magnitude)
            }
        }
    }
}

@Suite struct NarrowConvolutionTests {
    /// Reading windows in place gives the bits of im2col followed by the narrow product (the
    /// padding's zeros are multiplied in both), for paddings that reach over every edge, strides
    /// 1 and 2, window sizes 1-5, rows that are not a multiple of the 8-row tile, and input
    /// channels with and without a vector's tail.
    @Test(arguments: [
        // (h, w, cin, cout, kh, kw, stride, same)
        (9, 11, 16, 16, 3, 3, 1, true), (8, 8, 19, 32, 3, 3, 2, true), (7, 13, 3, 48, 5, 3, 1, true),
        (10, 9, 16, 64, 3, 3, 2, false), (6, 6, 17, 16, 1, 1, 2, true), (12, 5, 8, 32, 2, 2, 2, true),
        (5, 5, 16, 64, 5, 5, 1, false),
    ])
    func windowsReadInPlaceGiveIm2colBits(h: Int, w: Int, cin: Int, cout: Int, kh: Int, kw: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 131 + w * 17 + cin + cout * 3 + kh))
        let batch = 3
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: kh, kernelWidth: kw, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let input = random.array(batch * h * w * cin), kernel = random.array(kh * kw * cin * cout), bias = random.array(cout)
        let rows = batch * g.outputHeight * g.outputWidth, patch = kh * kw * cin
        var columns = [Float](repeating: 0, count: rows * patch)
        im2col(&columns, input, rows: 0..<rows, g, channels: cin)
        var expected = [Float](repeating: 0, count: rows * cout)
        for r in 0..<rows { for o in 0..<cout { expected[r * cout + o] = bias[o] } }
        gemm(m: rows, n: cout, k: patch, a: columns, lda: patch, b: kernel, ldb: cout, beta: 1, c: &expected, ldc: cout)

        var output = [Float](repeating: .nan, count: rows * cout)
        var scratch = [Float](repeating: .nan, count: max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch)))
        conv2dForward(output: &output, input: input, kernel: kernel, bias: bias, scratch: &scratch, batch: batch,
                      geometry: g, inputChannels: cin, outputChannels: cout)
        #expect(output.map(\.bitPattern) == expected.map(\.bitPattern))
    }
}

@Suite struct NarrowConvolutionGradientTests {
    /// The kernel gradient (read in place over each tap's rectangle of pixels) and the stride-1
    /// input gradient (the flipped-kernel convolution) against sums in Double: each entry within
    /// terms * 2^-24 of the sum of its products' magnitudes, for 'same' padding at stride 2 (taps
    /// that reach the bottom/right only), images of one and two pixels under a 3x3 window, and
    /// 'valid' windows.
    @Test(arguments: [
        // (h, w, cin, cout, k, stride, same)
        (9, 8, 16, 32, 3, 2, true), (1, 2, 16, 16, 3, 2, true), (2, 1, 32, 16, 3, 1, true), (7, 9, 19, 48, 3, 1, false),
        (6, 5, 16, 64, 5, 1, true), (5, 7, 3, 16, 3, 2, true),
    ])
    func gradientsAgreeWithDouble(h: Int, w: Int, cin: Int, cout: Int, k: Int, stride: Int, same: Bool) {
        var random = SeededRandom(seed: UInt64(h * 7 + w * 5 + cin + cout + k + stride))
        let batch = 2
        let g = WindowGeometry(inputHeight: h, inputWidth: w, kernelHeight: k, kernelWidth: k, strideHeight: stride,
                               strideWidth: stride, padding: same ? .same : .valid)
        let input = random.array(batch * h * w * cin), kernel = random.array(k * k * cin * cout)
        let rows = batch * g.outputHeight * g.outputWidth
        let dy = random.array(rows * cout)
        var dx = [Float](repeating: 0, count: input.count), dk = [Float](repeating: 0, count: kernel.count)
        var scratch = [Float](repeating: .nan, count: max(1, conv2dScratchCount(g, inputChannels: cin, outputChannels: cout, batch: batch)))
        conv2dBackward(inputGradient: &dx, kernelGradient: &dk, biasGradient: nil, outputGradient: dy, input: input, kernel: kernel,
                       scratch: &scratch, batch: batch, geometry: g, inputChannels: cin, outputChannels: cout)
        var rdx = [Double](repeating: 0, count: dx.count), mdx = rdx, rdk = [Double](repeating: 0, count: dk.count), mdk = rdk
        for row in 0..<rows {
            let n = row / (g.outputHeight * g.outputWidth), oh = row / g.outputWidth % g.outputHeight, ow = row % g.outputWidth
            for i in 0..<k {
                let ih = oh * stride - g.padTop + i
                guard ih >= 0 && ih < h else { continue }
                for j in 0..<k {
                    let iw = ow * stride - g.padLeft + j
                    guard iw >= 0 && iw < w else { continue }
                    for c in 0..<cin {
                        let xi = ((n * h + ih) * w + iw) * cin + c, ki = ((i * k + j) * cin + c) * cout
                        for o in 0..<cout {
                            let d = Double(dy[row * cout + o])
                            rdx[xi] += d * Double(kernel[ki + o]); mdx[xi] += abs(d * Double(kernel[ki + o]))
                            rdk[ki + o] += d * Double(input[xi]); mdk[ki + o] += abs(d * Double(input[xi]))
                        }
                    }
                }
            }
        }
        let u = 0x1p-24
        for (got, (exact, magnitude)) in zip(dk, zip(rdk, mdk)) { #expect(abs(Double(got) - exact) <= Double(rows + 1) * u * magnitude) }
        for (got, (exact, magnitude)) in zip(dx, zip(rdx, mdx)) { #expect(abs(Double(got) - exact) <= Double(k * k * (cout + 1)) * u * magnitude) }
    }
}
