import KerasCheckpoint
import NeuralKernels

/// DepthwiseConv2D and SeparableConv2D (`DepthwiseOperation`, kernels in
/// `NeuralKernels/Depthwise.swift`). SeparableConv2D becomes a depthwise node and a pointwise
/// 1x1 convolution node; `dilation_rate` spaces the depthwise taps. Keras 3 stores the depthwise kernel as `kernel`; its position here makes
/// it a `depthwise_kernel`.
enum Depthwise: LayerFamily {
    static let layers: [String: LayerDefinition] = [
        "DepthwiseConv2D": LayerDefinition(
            weights: { layer in
                [WeightSpec(role: .depthwiseKernel, shape: LayerSpecs.kernelSize(layer) + [nil, layer.config["depth_multiplier"]?.int ?? 1])]
                    + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [nil])] : [])
            },
            // `kernel` is Keras 3's name for the depthwise kernel; a weight's role comes from its
            // position above, so it only applies where a role is read from a name instead.
            prunable: [.depthwiseKernel, .kernel],
            build: { builder, layer, inputs in try builder.addDepthwiseConv2D(layer, input: inputs[0]) }),
        "SeparableConv2D": LayerDefinition(
            weights: { layer in
                let filters = layer.config["filters"]?.int
                return [
                    WeightSpec(role: .depthwiseKernel, shape: LayerSpecs.kernelSize(layer) + [nil, layer.config["depth_multiplier"]?.int ?? 1]),
                    WeightSpec(role: .pointwiseKernel, shape: [1, 1, nil, filters]),
                ] + (LayerSpecs.usesBias(layer) ? [WeightSpec(role: .bias, shape: [filters])] : [])
            },
            prunable: [.depthwiseKernel, .pointwiseKernel],
            build: { builder, layer, inputs in try builder.addSeparableConv2D(layer, input: inputs[0]) }),
    ]
}

extension GraphBuilder {
    mutating func addDepthwiseConv2D(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let multiplier = layer.config["depth_multiplier"]?.int ?? 1
        let kernelSize = try ints(layer, "kernel_size")
        let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]),
                           dilation: try ints(layer, "dilation_rate", default: [1, 1]))
        let kernel = try parameter(layer, .depthwiseKernel, shape: [kernelSize[0], kernelSize[1], input.c, multiplier])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [input.c * multiplier]) : nil
        let op = DepthwiseOperation(kernel: kernel, bias: bias, geometry: g, channels: input.c, multiplier: multiplier)
        return try withActivation(layer, node(layer, op, [g.outputHeight, g.outputWidth, input.c * multiplier], inputs: [inputNode]))
    }

    mutating func addSeparableConv2D(_ layer: LayerConfig, input inputNode: Int) throws -> Int {
        let input = try image(layer, nodes[inputNode].shape)
        let multiplier = layer.config["depth_multiplier"]?.int ?? 1
        guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
        let kernelSize = try ints(layer, "kernel_size")
        let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]),
                           dilation: try ints(layer, "dilation_rate", default: [1, 1]))
        let depthwiseKernel = try parameter(layer, .depthwiseKernel, shape: [kernelSize[0], kernelSize[1], input.c, multiplier])!
        let pointwiseKernel = try parameter(layer, .pointwiseKernel, shape: [1, 1, input.c * multiplier, filters])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [filters]) : nil
        let depthwise = append(node(layer, DepthwiseOperation(kernel: depthwiseKernel, bias: nil, geometry: g, channels: input.c,
                                                              multiplier: multiplier),
                                    [g.outputHeight, g.outputWidth, input.c * multiplier], inputs: [inputNode],
                                    name: "\(layer.name)/depthwise"))
        let pointwise = ConvolutionOperation(
            kernel: pointwiseKernel, bias: bias,
            geometry: WindowGeometry(inputHeight: g.outputHeight, inputWidth: g.outputWidth, kernelHeight: 1, kernelWidth: 1,
                                     strideHeight: 1, strideWidth: 1, padding: .valid),
            inputChannels: input.c * multiplier, outputChannels: filters)
        try attachSparse(pointwise)
        return try withActivation(layer, node(layer, pointwise, [g.outputHeight, g.outputWidth, filters], inputs: [depthwise]))
    }
}
