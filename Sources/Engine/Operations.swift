import KerasCheckpoint
import ModelState
import NeuralKernels

/// What one operation sees during a pass: its inputs' activations, its output, and for the
/// backward pass the gradient buffers. Pointers are into the chunk's workspace.
struct PassContext {
    var batch: Int
    var inputs: [UnsafeMutablePointer<Float>]
    var output: UnsafeMutablePointer<Float>
    /// Gradients of the inputs (added into); nil for inputs that need none (the image).
    var inputGradients: [UnsafeMutablePointer<Float>?]
    var outputGradient: UnsafeMutablePointer<Float>
    var scratch: UnsafeMutablePointer<Float>?
    var workspace: Workspace
    /// Set in training passes: BatchNorm uses batch statistics, Dropout drops.
    var training: TrainingContext? = nil
    /// This node's index (BatchNorm keeps its batch statistics per node).
    var node: Int = 0
    /// The chunk of the batch, and its first image's index in the batch (Dropout seeds per image).
    var chunk: Int = 0
    var firstImage: Int = 0
}

/// One node's computation. Shapes are per sample (no batch axis), NHWC.
protocol Operation: AnyObject {
    /// Weights read by this operation.
    var parameters: [Parameter] { get }
    /// Floats of scratch the forward/backward need for a chunk of `batch` samples.
    func scratchCount(batch: Int) -> Int
    func forward(_ context: PassContext)
    func backward(_ context: PassContext)
    /// Recomputes anything derived from the parameters (BatchNorm's folded scale and shift).
    /// `Network` calls it before a pass whenever one of `parameters` changed.
    func parametersChanged()
}

extension Operation {
    func scratchCount(batch: Int) -> Int { 0 }
    func parametersChanged() {}
    var parameters: [Parameter] { [] }
}

// MARK: - Operations

/// The model input: the workspace fills its buffer with images.
final class InputOperation: Operation {
    func forward(_ context: PassContext) {}
    func backward(_ context: PassContext) {}
}

/// Conv2D, Conv1D (a height-1 Conv2D), the pointwise half of SeparableConv2D, and Dense (a 1x1
/// convolution over rows).
final class ConvolutionOperation: Operation {
    let kernel: Parameter
    let bias: Parameter?
    let geometry: WindowGeometry
    let inputChannels: Int
    let outputChannels: Int
    /// Keras' `groups`: the kernel is (kh, kw, in / groups, out), each group of out / groups
    /// outputs reading its in / groups inputs. A grouped convolution runs dense only: a sparse
    /// export's CSR rows index one group's (kh, kw, in / groups) columns, not the im2col columns
    /// of all channels the CSR kernel multiplies (`GraphBuilder.attachSparse` leaves it dense).
    let groups: Int
    /// Rows per sample for Dense on inputs of rank > 1 (it applies to the last axis).
    let rowsPerSample: Int
    /// When set, the forward pass may multiply by this sparse kernel (same values as `kernel`).
    var sparse: SparseKernel?
    /// Which kernel the forward pass runs when `sparse` is set (`runsSparse`).
    var kernels: KernelChoice = .dense
    /// The BatchNormalization + ReLU that consumed this layer's output, fused into the forward
    /// pass of a sparse export (`GraphBuilder.fuseSparseEpilogues`, inference only): the sparse
    /// kernel applies it to each output in a register, the dense one in place after its product,
    /// both with `channelAffineReLUForward`'s float operations (the unfused pass's bits).
    var epilogue: BatchNormReLUOperation?
    /// The name of the node `epilogue` was (for reports: `SparseLayerUse.epilogueNode`).
    var epilogueNode: String?

    init(kernel: Parameter, bias: Parameter?, geometry: WindowGeometry, inputChannels: Int, outputChannels: Int,
         rowsPerSample: Int = 1, groups: Int = 1) {
        self.kernel = kernel
        self.bias = bias
        self.geometry = geometry
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
        self.rowsPerSample = rowsPerSample
        self.groups = groups
    }

    var parameters: [Parameter] { [kernel] + (bias.map { [$0] } ?? []) + (epilogue?.parameters ?? []) }
    func parametersChanged() { epilogue?.parametersChanged() }
    func scratchCount(batch: Int) -> Int {
        conv2dScratchCount(geometry, inputChannels: inputChannels, outputChannels: outputChannels, batch: batch * rowsPerSample,
                           groups: groups)
    }
    /// Rows of the matrix product per image (output positions times Dense's leading axes).
    var rowsPerImage: Int { rowsPerSample * geometry.outputHeight * geometry.outputWidth }
    var patch: Int { geometry.kernelHeight * geometry.kernelWidth * inputChannels }

    /// Whether a forward call over `batch` images runs the sparse kernel: always or never when
    /// forced, else where the cost model (`KernelCost`) predicts it faster for these sizes. The
    /// choice depends only on the file's kernel and the batch's chunk size, never on timings, so
    /// the same file and batch size give the same bits on every run and machine.
    func runsSparse(batch: Int) -> Bool {
        guard let sparse, groups == 1 else { return false }
        switch kernels {
        case .sparse: return true
        case .dense: return false
        case .auto:
            let cost = KernelCost(rows: batch * rowsPerImage, inputs: patch, outputs: outputChannels, stored: sparse.values.count,
                                  pointwise: geometry.isPointwise)
            return cost.sparseIsFaster
        }
    }

    func forward(_ c: PassContext) { forward(c, storing: nil) }

    /// The forward pass followed by `next` (the inference BatchNorm node this convolution feeds,
    /// `Node.epilogue`), which `conv2dForward` applies as it stores the output where it can.
    func forward(_ c: PassContext, storing next: ChannelAffineEpilogue?) {
        let rows = c.batch * rowsPerImage
        if let sparse, runsSparse(batch: c.batch) {
            defer { next?.apply(c.output, firstRow: 0, count: rows, channels: outputChannels) }
            let bias = bias.map { UnsafePointer($0.pointer) }
            withEpilogue(epilogue) { epilogue in
                if geometry.isPointwise {
                    csrMatmulForward(output: c.output, input: c.inputs[0], rows: rows, inputs: patch, outputs: outputChannels,
                                     rowOffsets: sparse.rowOffsets, columns: sparse.columns, values: sparse.values, bias: bias,
                                     epilogue: epilogue)
                    return
                }
                // Tile by tile, as conv2dForward (each output row depends on its own columns alone).
                forEachTile(rows: rows, patch: patch) { tile in
                    im2col(c.scratch!, c.inputs[0], rows: tile, geometry, channels: inputChannels)
                    csrMatmulForward(output: c.output + tile.lowerBound * outputChannels, input: c.scratch!, rows: tile.count,
                                     inputs: patch, outputs: outputChannels, rowOffsets: sparse.rowOffsets, columns: sparse.columns,
                                     values: sparse.values, bias: bias, epilogue: epilogue)
                }
            }
            return
        }
        conv2dForward(output: c.output, input: c.inputs[0], kernel: kernel.pointer, bias: bias.map { UnsafePointer($0.pointer) },
                      scratch: c.scratch, batch: c.batch * rowsPerSample, geometry: geometry,
                      inputChannels: inputChannels, outputChannels: outputChannels, groups: groups, epilogue: next)
        withEpilogue(epilogue) { $0?.apply(c.output, rows: rows, channels: outputChannels) }
    }

    func backward(_ c: PassContext) {
        precondition(epilogue == nil, "a convolution fused with its BatchNormalization + ReLU runs inference only")
        conv2dBackward(inputGradient: c.inputGradients[0], kernelGradient: c.workspace.gradient(kernel),
                       biasGradient: bias.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient,
                       input: c.inputs[0], kernel: kernel.pointer, scratch: c.scratch,
                       batch: c.batch * rowsPerSample, geometry: geometry, inputChannels: inputChannels,
                       outputChannels: outputChannels, groups: groups)
    }
}

/// Conv2DTranspose: the adjoint of the Conv2D with `geometry` from this layer's output (the
/// geometry's input, `outputChannels`) to its input (the geometry's output, `inputChannels`);
/// kernels in `NeuralKernels/Convolution.swift`. It always runs dense: a sparse export's CSR
/// kernel multiplies im2col columns, which the transposed product does not have (its columns
/// are scattered back by col2im), so `attachSparse` is not asked.
final class TransposedConvolutionOperation: Operation {
    let kernel: Parameter
    let bias: Parameter?
    let geometry: WindowGeometry
    let inputChannels: Int
    let outputChannels: Int

    init(kernel: Parameter, bias: Parameter?, geometry: WindowGeometry, inputChannels: Int, outputChannels: Int) {
        self.kernel = kernel
        self.bias = bias
        self.geometry = geometry
        self.inputChannels = inputChannels
        self.outputChannels = outputChannels
    }

    var parameters: [Parameter] { [kernel] + (bias.map { [$0] } ?? []) }
    func scratchCount(batch: Int) -> Int { conv2dScratchCount(geometry, inputChannels: outputChannels, outputChannels: inputChannels, batch: batch) }

    func forward(_ c: PassContext) {
        conv2dTransposeForward(output: c.output, input: c.inputs[0], kernel: kernel.pointer,
                               bias: bias.map { UnsafePointer($0.pointer) }, scratch: c.scratch, batch: c.batch,
                               geometry: geometry, inputChannels: inputChannels, outputChannels: outputChannels)
    }

    func backward(_ c: PassContext) {
        conv2dTransposeBackward(inputGradient: c.inputGradients[0], kernelGradient: c.workspace.gradient(kernel),
                                biasGradient: bias.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient,
                                input: c.inputs[0], kernel: kernel.pointer, scratch: c.scratch, batch: c.batch,
                                geometry: geometry, inputChannels: inputChannels, outputChannels: outputChannels)
    }
}

/// A fused BatchNormalization + ReLU as the kernels take it (nil where none).
private func withEpilogue(_ epilogue: BatchNormReLUOperation?, _ body: (ChannelAffineReLU?) -> Void) {
    guard let epilogue else { return body(nil) }
    let bn = epilogue.batchNorm
    bn.scale.withUnsafeBufferPointer { scale in
        bn.shift.withUnsafeBufferPointer { shift in
            body(ChannelAffineReLU(scale: scale.baseAddress!, shift: shift.baseAddress!, relu: epilogue.relu))
        }
    }
}

/// The kernel of a convolution or Dense layer as CSR, one row per output channel, for inference
/// straight from a sparse export.
final class SparseKernel {
    let rowOffsets: [Int32]
    let columns: [Int32]
    let values: [Float]
    init(_ matrix: CSRMatrix) {
        rowOffsets = matrix.rowOffsets.map { Int32($0) }
        columns = matrix.columnIndices
        values = matrix.values
    }
}

/// DepthwiseConv2D and the depthwise half of SeparableConv2D.
final class DepthwiseOperation: Operation {
    let kernel: Parameter
    let bias: Parameter?
    let geometry: WindowGeometry
    let channels: Int
    let multiplier: Int

    init(kernel: Parameter, bias: Parameter?, geometry: WindowGeometry, channels: Int, multiplier: Int) {
        self.kernel = kernel
        self.bias = bias
        self.geometry = geometry
        self.channels = channels
        self.multiplier = multiplier
    }

    /// The BatchNormalization + ReLU that consumed this layer's output, fused into the forward
    /// pass of a sparse export (`GraphBuilder.fuseSparseEpilogues`, inference only).
    var epilogue: BatchNormReLUOperation?

    var parameters: [Parameter] { [kernel] + (bias.map { [$0] } ?? []) + (epilogue?.parameters ?? []) }
    func parametersChanged() { epilogue?.parametersChanged() }

    func forward(_ c: PassContext) {
        withEpilogue(epilogue) { epilogue in
            depthwiseForward(output: c.output, input: c.inputs[0], kernel: kernel.pointer, bias: bias.map { UnsafePointer($0.pointer) },
                             batch: c.batch, geometry: geometry, channels: channels, multiplier: multiplier, epilogue: epilogue)
        }
    }

    func backward(_ c: PassContext) {
        precondition(epilogue == nil, "a depthwise convolution fused with its BatchNormalization + ReLU runs inference only")
        depthwiseBackward(inputGradient: c.inputGradients[0], kernelGradient: c.workspace.gradient(kernel),
                          biasGradient: bias.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient,
                          input: c.inputs[0], kernel: kernel.pointer, batch: c.batch, geometry: geometry,
                          channels: channels, multiplier: multiplier)
    }
}

/// BatchNormalization in inference mode (moving statistics), folded to a per-channel affine map.
final class BatchNormOperation: Operation {
    let gamma: Parameter?, beta: Parameter?, movingMean: Parameter, movingVariance: Parameter
    let epsilon: Float
    /// Keras' moving-average momentum (0.99 by default).
    let momentum: Float
    let channels: Int
    /// Rows per sample: every position of the feature map.
    let positions: Int
    private(set) var scale: [Float], shift: [Float], inverseStd: [Float]

    init(gamma: Parameter?, beta: Parameter?, movingMean: Parameter, movingVariance: Parameter, epsilon: Float,
         momentum: Float, channels: Int, positions: Int) {
        self.momentum = momentum
        self.gamma = gamma
        self.beta = beta
        self.movingMean = movingMean
        self.movingVariance = movingVariance
        self.epsilon = epsilon
        self.channels = channels
        self.positions = positions
        scale = [Float](repeating: 0, count: channels)
        shift = scale
        inverseStd = scale
        parametersChanged()
    }

    var parameters: [Parameter] { [gamma, beta].compactMap { $0 } + [movingMean, movingVariance] }

    func parametersChanged() {
        for c in 0..<channels {
            // TensorFlow's fused batch norm computes rsqrt(var + eps) * gamma in float32.
            let inv = 1 / (movingVariance.values[c] + epsilon).squareRoot()
            inverseStd[c] = inv
            scale[c] = inv * (gamma?.values[c] ?? 1)
            shift[c] = (beta?.values[c] ?? 0) - movingMean.values[c] * scale[c]
        }
    }

    func forward(_ c: PassContext) {
        precondition(c.training == nil, "training passes go through trainingForward")
        channelAffineForward(output: c.output, input: c.inputs[0], scale: scale, shift: shift,
                             rows: c.batch * positions, channels: channels)
    }

    /// This forward (with `relu` after it) as the epilogue of the convolution it reads, writing
    /// `output` (this node's buffer).
    func epilogue(relu: ReLUParameters?, output: UnsafeMutablePointer<Float>, keepsConvolutionOutput: Bool) -> ChannelAffineEpilogue {
        ChannelAffineEpilogue(scale: scale, shift: shift, relu: relu, output: output, keepsConvolutionOutput: keepsConvolutionOutput)
    }

    func backward(_ c: PassContext) {
        precondition(c.training == nil, "training passes go through trainingBackward")
        batchNormInferenceBackward(
            inputGradient: c.inputGradients[0], gammaGradient: gamma.map { c.workspace.gradient($0) },
            betaGradient: beta.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient, input: c.inputs[0],
            scale: scale, mean: movingMean.pointer, inverseStd: inverseStd, rows: c.batch * positions, channels: channels)
    }
}

/// BatchNormalization whose only consumer is a ReLU, fused into one pass each way.
final class BatchNormReLUOperation: Operation {
    let batchNorm: BatchNormOperation
    let relu: ReLUParameters

    init(batchNorm: BatchNormOperation, relu: ReLUParameters) {
        self.batchNorm = batchNorm
        self.relu = relu
    }

    var parameters: [Parameter] { batchNorm.parameters }
    func parametersChanged() { batchNorm.parametersChanged() }

    func forward(_ c: PassContext) {
        precondition(c.training == nil, "training passes go through trainingForward")
        let bn = batchNorm
        channelAffineReLUForward(output: c.output, input: c.inputs[0], scale: bn.scale, shift: bn.shift,
                                 rows: c.batch * bn.positions, channels: bn.channels, relu)
    }

    func backward(_ c: PassContext) {
        precondition(c.training == nil, "training passes go through trainingBackward")
        let bn = batchNorm
        batchNormReLUBackward(
            inputGradient: c.inputGradients[0], gammaGradient: bn.gamma.map { c.workspace.gradient($0) },
            betaGradient: bn.beta.map { c.workspace.gradient($0) }, outputGradient: c.outputGradient, input: c.inputs[0],
            scale: bn.scale, shift: bn.shift, mean: bn.movingMean.pointer, inverseStd: bn.inverseStd,
            rows: c.batch * bn.positions, channels: bn.channels, relu)
    }
}

/// Elementwise activations and softmax over the last axis.
final class ActivationOperation: Operation {
    enum Kind: Equatable {
        case linear, relu(ReLUParameters), sigmoid, tanh, softmax, pointwise(PointwiseActivation)
    }
    let kind: Kind
    let count: Int
    let lastAxis: Int

    init(kind: Kind, count: Int, lastAxis: Int) {
        self.kind = kind
        self.count = count
        self.lastAxis = lastAxis
    }

    func forward(_ c: PassContext) {
        let n = c.batch * count
        switch kind {
        case .linear: c.output.update(from: c.inputs[0], count: n)
        case .relu(let p): reluForward(output: c.output, input: c.inputs[0], count: n, p)
        case .sigmoid: sigmoidForward(output: c.output, input: c.inputs[0], count: n)
        case .tanh: tanhForward(output: c.output, input: c.inputs[0], count: n)
        case .softmax: softmaxForward(output: c.output, input: c.inputs[0], rows: n / lastAxis, classes: lastAxis)
        case .pointwise(let f): pointwiseForward(output: c.output, input: c.inputs[0], count: n, f)
        }
    }

    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        let n = c.batch * count
        switch kind {
        case .linear: for i in 0..<n { dx[i] += c.outputGradient[i] }
        case .relu(let p): reluBackward(inputGradient: dx, outputGradient: c.outputGradient, input: c.inputs[0], count: n, p)
        case .sigmoid: sigmoidBackward(inputGradient: dx, outputGradient: c.outputGradient, output: c.output, count: n)
        case .tanh: tanhBackward(inputGradient: dx, outputGradient: c.outputGradient, output: c.output, count: n)
        case .softmax:
            softmaxBackward(inputGradient: dx, outputGradient: c.outputGradient, output: c.output, rows: n / lastAxis, classes: lastAxis)
        case .pointwise(let f):
            pointwiseBackward(inputGradient: dx, outputGradient: c.outputGradient, input: c.inputs[0], count: n, f)
        }
    }
}

final class ZeroPadOperation: Operation {
    let height: Int, width: Int, channels: Int, top: Int, bottom: Int, left: Int, right: Int
    init(height: Int, width: Int, channels: Int, top: Int, bottom: Int, left: Int, right: Int) {
        (self.height, self.width, self.channels, self.top, self.bottom, self.left, self.right) =
            (height, width, channels, top, bottom, left, right)
    }
    func forward(_ c: PassContext) {
        zeroPadForward(output: c.output, input: c.inputs[0], batch: c.batch, height: height, width: width,
                       channels: channels, top: top, bottom: bottom, left: left, right: right)
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        zeroPadBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch, height: height, width: width,
                        channels: channels, top: top, bottom: bottom, left: left, right: right)
    }
}

/// Keras' UpSampling2D with nearest interpolation: each cell repeated sizeHeight x sizeWidth times.
final class UpsampleNearestOperation: Operation {
    let height: Int, width: Int, channels: Int, sizeHeight: Int, sizeWidth: Int
    init(height: Int, width: Int, channels: Int, sizeHeight: Int, sizeWidth: Int) {
        (self.height, self.width, self.channels, self.sizeHeight, self.sizeWidth) = (height, width, channels, sizeHeight, sizeWidth)
    }
    func forward(_ c: PassContext) {
        upsampleNearestForward(output: c.output, input: c.inputs[0], batch: c.batch, height: height, width: width,
                               channels: channels, sizeHeight: sizeHeight, sizeWidth: sizeWidth)
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        upsampleNearestBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch, height: height, width: width,
                                channels: channels, sizeHeight: sizeHeight, sizeWidth: sizeWidth)
    }
}

/// Each sample's output offset o read from input offset `sources[o]` (`gatherForward`): Keras'
/// Permute (`permutationSources`) and nearest-neighbour resizing (`resizeNearestSources`).
final class GatherOperation: Operation {
    let sources: [Int]
    /// Values per input sample (the output has `sources.count`).
    let inputCount: Int
    init(sources: [Int], inputCount: Int) { (self.sources, self.inputCount) = (sources, inputCount) }
    func forward(_ c: PassContext) {
        gatherForward(output: c.output, input: c.inputs[0], batch: c.batch, sources: sources, inputCount: inputCount)
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        gatherBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch, sources: sources, inputCount: inputCount)
    }
}

/// Keras' Cropping2D: the (outputHeight, outputWidth) window at (top, left) of each image; the
/// backward adds the output gradient back into that window.
final class CropOperation: Operation {
    let height: Int, width: Int, channels: Int, top: Int, left: Int, outputHeight: Int, outputWidth: Int
    init(height: Int, width: Int, channels: Int, top: Int, left: Int, outputHeight: Int, outputWidth: Int) {
        (self.height, self.width, self.channels, self.top, self.left, self.outputHeight, self.outputWidth) =
            (height, width, channels, top, left, outputHeight, outputWidth)
    }
    private func offsets(_ n: Int, _ h: Int) -> (input: Int, output: Int) {
        (((n * height + h + top) * width + left) * channels, ((n * outputHeight + h) * outputWidth) * channels)
    }
    func forward(_ c: PassContext) {
        for n in 0..<c.batch {
            for h in 0..<outputHeight {
                let (i, o) = offsets(n, h)
                (c.output + o).update(from: c.inputs[0] + i, count: outputWidth * channels)
            }
        }
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        for n in 0..<c.batch {
            for h in 0..<outputHeight {
                let (i, o) = offsets(n, h)
                for k in 0..<(outputWidth * channels) { dx[i + k] += c.outputGradient[o + k] }
            }
        }
    }
}

final class PoolOperation: Operation {
    let isMax: Bool
    let geometry: WindowGeometry
    let channels: Int
    init(isMax: Bool, geometry: WindowGeometry, channels: Int) {
        self.isMax = isMax
        self.geometry = geometry
        self.channels = channels
    }
    func forward(_ c: PassContext) {
        if isMax { maxPoolForward(output: c.output, input: c.inputs[0], batch: c.batch, geometry: geometry, channels: channels) }
        else { averagePoolForward(output: c.output, input: c.inputs[0], batch: c.batch, geometry: geometry, channels: channels) }
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        if isMax {
            maxPoolBackward(inputGradient: dx, outputGradient: c.outputGradient, input: c.inputs[0], output: c.output,
                            batch: c.batch, geometry: geometry, channels: channels)
        } else {
            averagePoolBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch, geometry: geometry,
                                channels: channels)
        }
    }
}

final class GlobalPoolOperation: Operation {
    let isMax: Bool
    let positions: Int, channels: Int
    init(isMax: Bool, positions: Int, channels: Int) {
        self.isMax = isMax
        self.positions = positions
        self.channels = channels
    }
    func forward(_ c: PassContext) {
        if isMax { globalMaxPoolForward(output: c.output, input: c.inputs[0], batch: c.batch, positions: positions, channels: channels) }
        else { globalAveragePoolForward(output: c.output, input: c.inputs[0], batch: c.batch, positions: positions, channels: channels) }
    }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        if isMax {
            globalMaxPoolBackward(inputGradient: dx, outputGradient: c.outputGradient, input: c.inputs[0], output: c.output,
                                  batch: c.batch, positions: positions, channels: channels)
        } else {
            globalAveragePoolBackward(inputGradient: dx, outputGradient: c.outputGradient, batch: c.batch,
                                      positions: positions, channels: channels)
        }
    }
}

/// Flatten, Reshape and Dropout (identity at inference): the data is unchanged, only the shape.
final class CopyOperation: Operation {
    let count: Int
    init(count: Int) { self.count = count }
    func forward(_ c: PassContext) { c.output.update(from: c.inputs[0], count: c.batch * count) }
    func backward(_ c: PassContext) {
        guard let dx = c.inputGradients[0] else { return }
        for i in 0..<(c.batch * count) { dx[i] += c.outputGradient[i] }
    }
}
