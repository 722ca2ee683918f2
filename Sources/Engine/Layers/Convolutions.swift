import KerasCheckpoint
import NeuralKernels

/// Conv2D, Conv1D and Dense: the layers that run as im2col + GEMM (`ConvolutionOperation`, kernels
/// in `NeuralKernels/Convolution.swift`; Conv1D is a height-1 Conv2D, its kernel (k, in, out)
/// laid out as (1, k, in, out); Dense is a 1x1 convolution over its input's leading axes), with
/// Keras' `dilation_rate` and `groups`; and Conv2DTranspose, the adjoint of a Conv2D
/// (`TransposedConvolutionOperation`). Their kernels are prunable, and a sparse export's CSR
/// kernel can run the ungrouped im2col ones (`attachSparse`); a grouped convolution and
/// Conv2DTranspose run dense from an export.
enum Convolutions: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        "Conv2D": LayerDefinition(
            weights: { layer in
                let filters = layer.config["filters"]?.int
                return [WeightSpec(role: .kernel, shape: LayerSpecs.kernelSize(layer) + [nil, filters])]
                    + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [filters])] : [])
            },
            prunable: [.kernel],
            build: { builder, layer, inputs in try builder.addConv2D(layer, input: inputs[0]) }),
        "Conv1D": LayerDefinition(
            weights: { layer in
                let filters = layer.config["filters"]?.int
                return [WeightSpec(role: .kernel, shape: LayerSpecs.kernelSize1D(layer) + [nil, filters])]
                    + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [filters])] : [])
            },
            prunable: [.kernel],
            build: { builder, layer, inputs in try builder.addConv1D(layer, input: inputs[0]) }),
        "Conv2DTranspose": LayerDefinition(
            weights: { layer in
                let filters = layer.config["filters"]?.int
                // Keras' order: (kh, kw, filters, input channels).
                return [WeightSpec(role: .kernel, shape: LayerSpecs.kernelSize(layer) + [filters, nil])]
                    + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [filters])] : [])
            },
            prunable: [.kernel],
            build: { builder, layer, inputs in try builder.addConv2DTranspose(layer, input: inputs[0]) }),
        "Dense": LayerDefinition(
            weights: { layer in
                let units = layer.config["units"]?.int
                return [WeightSpec(role: .kernel, shape: [nil, units])]
                    + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [units])] : [])
            },
            prunable: [.kernel],
            build: { builder, layer, inputs in try builder.addDense(layer, input: inputs[0]) }),
    ]
}

extension GraphBuilder {
    mutating func addConv2D(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
        let groups = try convolutionGroups(layer, inputChannels: input.c, filters: filters)
        let kernelSize = try ints(layer, "kernel_size")
        let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]),
                           dilation: try ints(layer, "dilation_rate", default: [1, 1]))
        let kernel = try parameter(layer, .kernel, shape: [kernelSize[0], kernelSize[1], input.c / groups, filters])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [filters]) : nil
        let op = ConvolutionOperation(kernel: kernel, bias: bias, geometry: g, inputChannels: input.c, outputChannels: filters,
                                      groups: groups)
        try attachSparse(op)
        return try withActivation(layer, node(layer, op, [g.outputHeight, g.outputWidth, filters], inputs: [inputNode]))
    }

    /// Conv1D over (steps, channels): the Conv2D machinery with height 1 (window 1 x k, stride
    /// 1 x s, dilation 1 x d); `causal` pads (k - 1) * d steps before, as Keras does.
    mutating func addConv1D(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try sequence(layer, nodes[inputNode].shape)
        guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
        let groups = try convolutionGroups(layer, inputChannels: input.c, filters: filters)
        let size = try ints(layer, "kernel_size", count: 1)[0]
        let g = try window(layer, input, kernel: [1, size], strides: [1, try ints(layer, "strides", default: [1], count: 1)[0]],
                           dilation: [1, try ints(layer, "dilation_rate", default: [1], count: 1)[0]],
                           padding: try padding(layer, allowsCausal: true))
        let kernel = try parameter(layer, .kernel, shape: [size, input.c / groups, filters])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [filters]) : nil
        let op = ConvolutionOperation(kernel: kernel, bias: bias, geometry: g, inputChannels: input.c, outputChannels: filters,
                                      groups: groups)
        try attachSparse(op)
        return try withActivation(layer, node(layer, op, [g.outputWidth, filters], inputs: [inputNode]))
    }

    /// Keras' `groups` (1 unless the config says otherwise), which must divide both channel counts.
    func convolutionGroups(_ layer: LayerConfig, inputChannels: Int, filters: Int) throws -> Int {
        let groups = layer.config["groups"]?.int ?? 1
        guard groups >= 1, inputChannels % groups == 0, filters % groups == 0 else {
            throw error(layer, "groups=\(groups) does not divide its \(inputChannels) input channels and \(filters) filters")
        }
        return groups
    }

    /// Conv2DTranspose: the output size is Keras' (`deconv_output_length`: (in - 1) * s + k +
    /// output_padding - 2 * pad, pad k / 2 for `same` and 0 for `valid`; without output_padding
    /// in * s for `same` and in * s + max(k - s, 0) for `valid`), and the padding is TensorFlow's
    /// for the Conv2D from that size back to the input, which must give the input's size.
    mutating func addConv2DTranspose(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
        if let groups = layer.config["groups"]?.int, groups != 1 { throw error(layer, "groups=\(groups) is not supported for Conv2DTranspose") }
        let kernelSize = try ints(layer, "kernel_size"), strides = try ints(layer, "strides", default: [1, 1])
        let padding = try padding(layer)
        let outputPadding = try ints(layer, "output_padding", default: [], positive: false)
        if !outputPadding.isEmpty, zip(outputPadding, strides).contains(where: { $0 >= $1 }) {
            throw error(layer, "output_padding \(outputPadding) must be smaller than strides \(strides)")
        }
        func length(_ axis: Int) -> Int {
            let (size, k, s) = (axis == 0 ? input.h : input.w, kernelSize[axis], strides[axis])
            if outputPadding.isEmpty { return padding == .same ? size * s : size * s + max(k - s, 0) }
            return (size - 1) * s + k - 2 * (padding == .same ? k / 2 : 0) + outputPadding[axis]
        }
        let output = (h: length(0), w: length(1), c: filters)
        // window() refuses a dilation_rate other than 1.
        let g = try window(layer, output, kernel: kernelSize, strides: strides)
        guard g.outputHeight == input.h, g.outputWidth == input.w else {
            throw error(layer, "its \(output.h)x\(output.w) output does not convolve back to its \(input.h)x\(input.w) input")
        }
        let kernel = try parameter(layer, .kernel, shape: [kernelSize[0], kernelSize[1], filters, input.c])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [filters]) : nil
        let op = TransposedConvolutionOperation(kernel: kernel, bias: bias, geometry: g, inputChannels: input.c,
                                                outputChannels: filters)
        return try withActivation(layer, node(layer, op, [output.h, output.w, filters], inputs: [inputNode]))
    }

    mutating func addDense(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let shape = nodes[inputNode].shape
        guard let units = layer.config["units"]?.int else { throw error(layer, "config has no units") }
        guard let inputWidth = shape.last else { throw error(layer, "needs an input with at least one axis") }
        let kernel = try parameter(layer, .kernel, shape: [inputWidth, units])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [units]) : nil
        let rows = shape.dropLast().reduce(1, *)
        let op = ConvolutionOperation(
            kernel: kernel, bias: bias,
            geometry: WindowGeometry(inputHeight: 1, inputWidth: 1, kernelHeight: 1, kernelWidth: 1,
                                     strideHeight: 1, strideWidth: 1, padding: .valid),
            inputChannels: inputWidth, outputChannels: units, rowsPerSample: rows)
        try attachSparse(op)
        return try withActivation(layer, node(layer, op, Array(shape.dropLast()) + [units], inputs: [inputNode]))
    }
}
