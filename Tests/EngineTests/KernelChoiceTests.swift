import Testing
@testable import Engine

/// The cost model behind `--kernels auto` on the shapes it was fitted to. These check the
/// direction of its choices where the measurements were unambiguous (2x or more either way in
/// `gmtool-bench layers`), not the fitted constants themselves.
@Suite struct KernelChoiceTests {
    func cost(rows: Int, _ inputs: Int, _ outputs: Int, density: Double, pointwise: Bool = true) -> KernelCost {
        KernelCost(rows: rows, inputs: inputs, outputs: outputs, stored: Int(density * Double(inputs * outputs)), pointwise: pointwise)
    }

    @Test func denseKernelsNeverRunSparse() {
        for rows in [1, 4, 16, 50, 200, 3200, 12800] {
            for (k, n) in [(27, 32), (32, 64), (512, 512), (1024, 1024), (1024, 10)] {
                #expect(!cost(rows: rows, k, n, density: 1).sparseIsFaster, "\(rows) rows \(k)x\(n)")
                #expect(!cost(rows: rows, k, n, density: 0.7).sparseIsFaster, "\(rows) rows \(k)x\(n) at 70% density")
            }
        }
    }

    @Test func ninetyPercentSparseMiddleLayersRunSparse() {
        // MobileNet alpha 1.0's 512x512 pointwise layers: 4 rows per image at batch 1, 200 per
        // chunk at batch 100; measured 3-8x faster sparse at 10% density.
        #expect(cost(rows: 4, 512, 512, density: 0.1).sparseIsFaster)
        #expect(cost(rows: 200, 512, 512, density: 0.1).sparseIsFaster)
        #expect(cost(rows: 1, 1024, 1024, density: 0.1).sparseIsFaster)
        // The first layers' huge row counts with few channels are bound by moving activations:
        // dense there, even at 10%.
        #expect(!cost(rows: 12800, 32, 64, density: 0.1).sparseIsFaster)
    }

    @Test func anAllZeroKernelCostsOnlyItsTransposes() {
        let empty = cost(rows: 200, 512, 512, density: 0)
        #expect(empty.sparseIsFaster)
        #expect(empty.sparseSeconds < cost(rows: 200, 512, 512, density: 0.01).sparseSeconds)
    }
}
