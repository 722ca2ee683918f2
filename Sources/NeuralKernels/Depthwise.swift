// DepthwiseConv2D, NHWC, kernel (kh, kw, in, multiplier) as Keras stores it. Output channel
// o = c * multiplier + m reads input channel c, so each kernel tap is one contiguous vector over
// output channels and the inner loops run over contiguous channels (LLVM vectorises them).
// Tap (i, j) reads input (top + i * dilationHeight, left + j * dilationWidth).

/// The taps `0..<kernel` of a window starting at `start` with taps `dilation` apart that land
/// inside `0..<size`.
@inline(__always)
func insideTaps(start: Int, kernel: Int, dilation: Int, size: Int) -> Range<Int> {
    // First i with start + i * dilation >= 0; last with start + i * dilation <= size - 1.
    let first = start >= 0 ? 0 : (-start + dilation - 1) / dilation
    let last = size - 1 - start < 0 ? -1 : (size - 1 - start) / dilation
    return first..<max(first, min(kernel, last + 1))
}

/// output (batch, oh, ow, in*multiplier) = depthwise(input, kernel) + bias; with `epilogue`, each
/// output pixel's channels mapped by it in place while in L1 (the bits of the separate
/// `channelAffineReLUForward` pass, over the in * multiplier output channels).
public func depthwiseForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, batch: Int, geometry g: WindowGeometry, channels: Int, multiplier: Int,
    epilogue: ChannelAffineReLU? = nil
) {
    let outChannels = channels * multiplier
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            let top = oh * g.strideHeight - g.padTop
            let rows = insideTaps(start: top, kernel: g.kernelHeight, dilation: g.dilationHeight, size: g.inputHeight)
            for ow in 0..<g.outputWidth {
                let left = ow * g.strideWidth - g.padLeft
                let columns = insideTaps(start: left, kernel: g.kernelWidth, dilation: g.dilationWidth, size: g.inputWidth)
                let y = output + ((n * g.outputHeight + oh) * g.outputWidth + ow) * outChannels
                if multiplier == 1 {
                    depthwisePixel(y, image, kernel, bias, channels: channels, g: g, top: top, left: left,
                                   rows: rows, columns: columns, epilogue: epilogue)
                    continue
                }
                if let bias { y.update(from: bias, count: outChannels) } else { y.update(repeating: 0, count: outChannels) }
                for i in rows {
                    for j in columns {
                        let x = image + ((top + i * g.dilationHeight) * g.inputWidth + left + j * g.dilationWidth) * channels
                        let k = kernel + (i * g.kernelWidth + j) * outChannels
                        for c in 0..<channels {
                            let value = x[c]
                            for m in 0..<multiplier { y[c * multiplier + m] += value * k[c * multiplier + m] }
                        }
                    }
                }
                epilogue?.apply(y, rows: 1, channels: outChannels)
            }
        }
    }
}

/// One output pixel of a multiplier-1 depthwise convolution. Sixteen channels at a time are kept
/// in a register across all taps and stored once (the plain loop re-read and re-wrote the output
/// once per tap). The additions happen in the same order as the scalar loop (bias, then taps row
/// by row), and multiply and add stay separate, so results are bit-identical to it.
@inline(__always)
private func depthwisePixel(
    _ y: UnsafeMutablePointer<Float>, _ image: UnsafePointer<Float>, _ kernel: UnsafePointer<Float>,
    _ bias: UnsafePointer<Float>?, channels: Int, g: WindowGeometry, top: Int, left: Int,
    rows: Range<Int>, columns: Range<Int>, epilogue: ChannelAffineReLU?
) {
    typealias Vector = SIMD16<Float>
    let width = Vector.scalarCount
    var c = 0
    while c + width <= channels {
        var accumulator = bias.map { UnsafeRawPointer($0 + c).loadUnaligned(as: Vector.self) } ?? Vector()
        for i in rows {
            for j in columns {
                let x = UnsafeRawPointer(image + ((top + i * g.dilationHeight) * g.inputWidth + left + j * g.dilationWidth) * channels + c)
                    .loadUnaligned(as: Vector.self)
                let k = UnsafeRawPointer(kernel + (i * g.kernelWidth + j) * channels + c).loadUnaligned(as: Vector.self)
                let product = x * k
                accumulator = accumulator + product
            }
        }
        UnsafeMutableRawPointer(y + c).storeBytes(of: accumulator, as: Vector.self)
        c += width
    }
    while c < channels {
        var accumulator = bias?[c] ?? 0
        for i in rows {
            for j in columns {
                accumulator += image[((top + i * g.dilationHeight) * g.inputWidth + left + j * g.dilationWidth) * channels + c]
                    * kernel[(i * g.kernelWidth + j) * channels + c]
            }
        }
        y[c] = accumulator
        c += 1
    }
    // On the pixel's outputs while they are in L1.
    epilogue?.apply(y, rows: 1, channels: channels)
}

/// Adds the gradients of depthwiseForward into `kernelGradient`, `biasGradient` and (when not
/// nil) `inputGradient`.
public func depthwiseBackward(
    inputGradient: UnsafeMutablePointer<Float>?, kernelGradient: UnsafeMutablePointer<Float>,
    biasGradient: UnsafeMutablePointer<Float>?, outputGradient: UnsafePointer<Float>,
    input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    batch: Int, geometry g: WindowGeometry, channels: Int, multiplier: Int
) {
    let outChannels = channels * multiplier
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        let imageGradient = inputGradient.map { $0 + n * g.inputHeight * g.inputWidth * channels }
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let dy = outputGradient + ((n * g.outputHeight + oh) * g.outputWidth + ow) * outChannels
                if let biasGradient { for o in 0..<outChannels { biasGradient[o] += dy[o] } }
                for i in 0..<g.kernelHeight {
                    let ih = oh * g.strideHeight - g.padTop + i * g.dilationHeight
                    if ih < 0 || ih >= g.inputHeight { continue }
                    for j in 0..<g.kernelWidth {
                        let iw = ow * g.strideWidth - g.padLeft + j * g.dilationWidth
                        if iw < 0 || iw >= g.inputWidth { continue }
                        let offset = (ih * g.inputWidth + iw) * channels
                        let x = image + offset
                        let k = kernel + (i * g.kernelWidth + j) * outChannels
                        let dk = kernelGradient + (i * g.kernelWidth + j) * outChannels
                        if multiplier == 1 {
                            for c in 0..<channels { dk[c] += x[c] * dy[c] }
                            if let imageGradient {
                                let dx = imageGradient + offset
                                for c in 0..<channels { dx[c] += k[c] * dy[c] }
                            }
                        } else {
                            for c in 0..<channels {
                                var sum: Float = 0
                                for m in 0..<multiplier {
                                    let o = c * multiplier + m
                                    dk[o] += x[c] * dy[o]
                                    sum += k[o] * dy[o]
                                }
                                if let imageGradient { imageGradient[offset + c] += sum }
                            }
                        }
                    }
                }
            }
        }
    }
}
