// DepthwiseConv2D, NHWC, kernel (kh, kw, in, multiplier) as Keras stores it. Output channel
// o = c * multiplier + m reads input channel c, so each kernel tap is one contiguous vector over
// output channels and the inner loops run over contiguous channels (LLVM vectorises them).

/// output (batch, oh, ow, in*multiplier) = depthwise(input, kernel) + bias.
public func depthwiseForward(
    output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, kernel: UnsafePointer<Float>,
    bias: UnsafePointer<Float>?, batch: Int, geometry g: WindowGeometry, channels: Int, multiplier: Int
) {
    let outChannels = channels * multiplier
    for n in 0..<batch {
        let image = input + n * g.inputHeight * g.inputWidth * channels
        for oh in 0..<g.outputHeight {
            for ow in 0..<g.outputWidth {
                let y = output + ((n * g.outputHeight + oh) * g.outputWidth + ow) * outChannels
                if let bias { y.update(from: bias, count: outChannels) } else { y.update(repeating: 0, count: outChannels) }
                for i in 0..<g.kernelHeight {
                    let ih = oh * g.strideHeight - g.padTop + i
                    if ih < 0 || ih >= g.inputHeight { continue }
                    for j in 0..<g.kernelWidth {
                        let iw = ow * g.strideWidth - g.padLeft + j
                        if iw < 0 || iw >= g.inputWidth { continue }
                        let x = image + (ih * g.inputWidth + iw) * channels
                        let k = kernel + (i * g.kernelWidth + j) * outChannels
                        if multiplier == 1 {
                            for c in 0..<channels { y[c] += x[c] * k[c] }
                        } else {
                            for c in 0..<channels {
                                let value = x[c]
                                for m in 0..<multiplier { y[c * multiplier + m] += value * k[c * multiplier + m] }
                            }
                        }
                    }
                }
            }
        }
    }
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
                    let ih = oh * g.strideHeight - g.padTop + i
                    if ih < 0 || ih >= g.inputHeight { continue }
                    for j in 0..<g.kernelWidth {
                        let iw = ow * g.strideWidth - g.padLeft + j
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
