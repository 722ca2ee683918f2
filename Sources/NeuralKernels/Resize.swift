// Image resizing as TensorFlow does it for Keras (tf.image.resize with antialias=False and
// half-pixel centres), used by the Resizing and CenterCrop layers and by the data side's image
// folders (`resizeBilinear`, which reads decoded 8-bit pixels).

/// Where one output row (or column) of a bilinear resize reads: the two source rows and the
/// weight of the upper one.
public struct BilinearTap: Sendable, Equatable {
    public var lower: Int, upper: Int, lerp: Float
}

/// TensorFlow's ResizeBilinear taps with half_pixel_centers, in its float32 operations: source
/// coordinate (i + 0.5) * scale - 0.5 with scale = in/out, floor and ceil clamped to the input,
/// lerp = source - floor(source).
public func bilinearTaps(outSize: Int, inSize: Int) -> [BilinearTap] {
    let scale = Float(inSize) / Float(outSize)
    return (0..<outSize).map { i in
        let source = (Float(i) + 0.5) * scale - 0.5
        let floor = source.rounded(.down)
        return BilinearTap(lower: max(Int(floor), 0), upper: min(Int(source.rounded(.up)), inSize - 1), lerp: source - floor)
    }
}

/// Keras' crop to the target's aspect ratio before a resize (`smart_resize`, `Resizing` with
/// crop_to_aspect_ratio, `CenterCrop` to a larger size): the largest centred window of the target's
/// aspect ratio, in TensorFlow's graph arithmetic (float32 products and quotients cast to int32).
public func aspectRatioCrop(height: Int, width: Int, targetHeight: Int, targetWidth: Int)
    -> (top: Int, left: Int, height: Int, width: Int) {
    let cropHeight = max(min(height, Int(Float(width * targetHeight) / Float(targetWidth))), 1)
    let cropWidth = max(min(width, Int(Float(height * targetWidth) / Float(targetHeight))), 1)
    return (Int(Float(height - cropHeight) / 2), Int(Float(width - cropWidth) / 2), cropHeight, cropWidth)
}

/// tf.image.resize(image, (outHeight, outWidth), "bilinear") of one image of height x width x
/// channels whose value at (y, x, k) is `at(y, x, k)`, written HWC to `output`: lerp along x on
/// the two rows, then along y, as TensorFlow's float32 `compute_lerp`.
@inlinable
public func resizeBilinear(height: Int, width: Int, channels c: Int, output: UnsafeMutablePointer<Float>,
                           outHeight: Int, outWidth: Int, at: (Int, Int, Int) -> Float) {
    if height == outHeight && width == outWidth {
        // Every tap is (i, i, 0): the lerps return their first operand exactly.
        for y in 0..<outHeight { for x in 0..<outWidth { for k in 0..<c { output[(y * outWidth + x) * c + k] = at(y, x, k) } } }
        return
    }
    let ys = bilinearTaps(outSize: outHeight, inSize: height), xs = bilinearTaps(outSize: outWidth, inSize: width)
    for (y, wy) in ys.enumerated() {
        for (x, wx) in xs.enumerated() {
            for k in 0..<c {
                let topLeft = at(wy.lower, wx.lower, k), topRight = at(wy.lower, wx.upper, k)
                let bottomLeft = at(wy.upper, wx.lower, k), bottomRight = at(wy.upper, wx.upper, k)
                let upper = topLeft + (topRight - topLeft) * wx.lerp
                let lower = bottomLeft + (bottomRight - bottomLeft) * wx.lerp
                output[(y * outWidth + x) * c + k] = upper + (lower - upper) * wy.lerp
            }
        }
    }
}

/// The geometry of a resize of (height, width, channels) images: the window (top, left,
/// cropHeight, cropWidth) of each input that is resized (the whole image, or Keras' aspect-ratio
/// crop) to outHeight x outWidth.
public struct ResizeGeometry: Sendable, Equatable {
    public var height: Int, width: Int, channels: Int
    public var top: Int, left: Int, cropHeight: Int, cropWidth: Int
    public var outHeight: Int, outWidth: Int

    public init(height: Int, width: Int, channels: Int, outHeight: Int, outWidth: Int, cropToAspectRatio: Bool) {
        (self.height, self.width, self.channels, self.outHeight, self.outWidth) = (height, width, channels, outHeight, outWidth)
        let crop = cropToAspectRatio ? aspectRatioCrop(height: height, width: width, targetHeight: outHeight, targetWidth: outWidth)
            : (0, 0, height, width)
        (top, left, cropHeight, cropWidth) = crop
    }

    var inputCount: Int { height * width * channels }
    var outputCount: Int { outHeight * outWidth * channels }
}

/// Bilinear resize of `batch` NHWC images (`resizeBilinear` on each image's window).
public func resizeBilinearForward(output: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, batch: Int, _ g: ResizeGeometry) {
    for n in 0..<batch {
        let image = input + n * g.inputCount
        resizeBilinear(height: g.cropHeight, width: g.cropWidth, channels: g.channels, output: output + n * g.outputCount,
                       outHeight: g.outHeight, outWidth: g.outWidth) { y, x, k in
            image[((g.top + y) * g.width + g.left + x) * g.channels + k]
        }
    }
}

/// The adjoint of `resizeBilinearForward` (TensorFlow's ResizeBilinearGrad): each output cell's
/// gradient goes to its four sources with weights (1 - ly)(1 - lx), (1 - ly) lx, ly (1 - lx),
/// ly lx; cells outside the window get nothing.
public func resizeBilinearBackward(inputGradient: UnsafeMutablePointer<Float>, outputGradient: UnsafePointer<Float>, batch: Int,
                                   _ g: ResizeGeometry) {
    let ys = bilinearTaps(outSize: g.outHeight, inSize: g.cropHeight), xs = bilinearTaps(outSize: g.outWidth, inSize: g.cropWidth)
    let c = g.channels
    for n in 0..<batch {
        let dx = inputGradient + n * g.inputCount, dy = outputGradient + n * g.outputCount
        func cell(_ y: Int, _ x: Int) -> UnsafeMutablePointer<Float> { dx + ((g.top + y) * g.width + g.left + x) * c }
        for (y, wy) in ys.enumerated() {
            for (x, wx) in xs.enumerated() {
                let source = dy + (y * g.outWidth + x) * c
                let topLeft = cell(wy.lower, wx.lower), topRight = cell(wy.lower, wx.upper)
                let bottomLeft = cell(wy.upper, wx.lower), bottomRight = cell(wy.upper, wx.upper)
                let top = 1 - wy.lerp, left = 1 - wx.lerp
                for k in 0..<c {
                    let d = source[k]
                    topLeft[k] += d * top * left
                    topRight[k] += d * top * wx.lerp
                    bottomLeft[k] += d * wy.lerp * left
                    bottomRight[k] += d * wy.lerp * wx.lerp
                }
            }
        }
    }
}

/// tf.image.resize(..., "nearest") (TensorFlow's ResizeNearestNeighbor with half_pixel_centers):
/// output (y, x) reads window cell (min(floor((y + 0.5) * scale), size - 1), ...) with scale =
/// in/out in float32. Returns, per output offset of one sample, the input offset it reads (for
/// `gatherForward`).
public func resizeNearestSources(_ g: ResizeGeometry) -> [Int] {
    func indices(_ outSize: Int, _ inSize: Int) -> [Int] {
        let scale = Float(inSize) / Float(outSize)
        return (0..<outSize).map { i in max(0, min(Int(((Float(i) + 0.5) * scale).rounded(.down)), inSize - 1)) }
    }
    let ys = indices(g.outHeight, g.cropHeight), xs = indices(g.outWidth, g.cropWidth)
    var sources: [Int] = []
    sources.reserveCapacity(g.outputCount)
    for y in ys {
        for x in xs {
            let base = ((g.top + y) * g.width + g.left + x) * g.channels
            for k in 0..<g.channels { sources.append(base + k) }
        }
    }
    return sources
}
