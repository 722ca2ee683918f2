import KerasCheckpoint
import NeuralKernels

/// Conv2D and Dense: the layers that run as im2col + GEMM (`ConvolutionOperation`, kernels in
/// `NeuralKernels/Convolution.swift`; Dense is a 1x1 convolution over its input's leading axes).
/// Their kernels are prunable, and a sparse export's CSR kernel can run them (`attachSparse`).
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
        if let groups = layer.config["groups"]?.int, groups != 1 { throw error(layer, "groups=\(groups) is not supported") }
        guard let filters = layer.config["filters"]?.int else { throw error(layer, "config has no filters") }
        let kernelSize = try ints(layer, "kernel_size")
        let g = try window(layer, input, kernel: kernelSize, strides: try ints(layer, "strides", default: [1, 1]))
        let kernel = try parameter(layer, .kernel, shape: [kernelSize[0], kernelSize[1], input.c, filters])!
        let bias = LayerSpecs.usesBias(layer) ? try parameter(layer, .bias, shape: [filters]) : nil
        let op = ConvolutionOperation(kernel: kernel, bias: bias, geometry: g, inputChannels: input.c, outputChannels: filters)
        try attachSparse(op)
        return try withActivation(layer, node(layer, op, [g.outputHeight, g.outputWidth, filters], inputs: [inputNode]))
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
