/// Which kernels a sparse export's convolution and Dense layers run in the forward pass.
public enum KernelChoice: String, CaseIterable, Sendable {
    /// Sparse where `KernelCost` predicts it faster than dense, per layer and batch size.
    case auto
    /// Every kernel stored sparse runs sparse.
    case sparse
    /// Every kernel runs dense (the values decoded from the file).
    case dense
}

/// Predicted seconds of one forward call of a convolution/Dense layer over `rows` rows, dense
/// (im2col + sgemm) and sparse (`csrMatmulForward`), on one core. A fixed model, not a measurement at load:
/// the choice it makes depends only on the file and the batch size, so results are reproducible
/// bit for bit across runs and machines (a timing-based choice could flip a layer between runs
/// and with it the float32 summation order). The constants were fitted to per-layer timings of
/// MobileNet alpha 1.0 at 50-95% sparsity, batch 1 and 100 (150 layer timings; weighted
/// non-negative least squares on relative error, median error 9% dense, 23% sparse: the
/// machine was shared while measuring), on the
/// 2-core AVX-512 machine this project is benchmarked on (`gmtool-bench layers`, see
/// docs/ARCHITECTURE.md). The terms: a call's fixed cost; dense, seconds per multiply-add
/// (2.27e-11: 44 GFMA/s), per kernel weight read and per im2col float; sparse, seconds per stored
/// weight per row tile (1.36e-9 per 32 rows: 23.5 GFMA/s; 9.05e-10 per 16-lane tail; 6.97e-10
/// per 4- or 8-lane tail), per float transposed in or out, per im2col float. On another machine they
/// can only misplace the break-even point, never change a result beyond summation order.
/// Not refitted since the transposes moved to `gm_transpose16` and BatchNorm + ReLU fused into
/// the layers (`GraphBuilder.fuseSparseEpilogues`): both make sparse cheaper than predicted, so
/// the choices err toward dense (at 90% and 50%, batch 1 and 100, the same layers run sparse as
/// before).
struct KernelCost {
    var rows: Int
    var inputs: Int
    var outputs: Int
    var stored: Int
    var pointwise: Bool

    var denseSeconds: Double {
        let r = Double(rows), k = Double(inputs), n = Double(outputs)
        return 4.4e-7 + 2.27e-11 * r * k * n + 3.35e-10 * k * n + (pointwise ? 0 : 1.95e-9 * r * k)
    }

    var sparseSeconds: Double {
        let r = Double(rows), k = Double(inputs), n = Double(outputs), s = Double(stored)
        // csrMatmulForward's tiles: 32 rows (two SIMD16 per stored weight), then one tail tile of
        // 16 lanes or of 8/4 lanes.
        let tail = rows % 32
        let wide = Double(rows / 32 + (tail > 16 ? 1 : 0))
        let sixteen: Double = tail > 8 && tail <= 16 ? 1 : 0, narrow: Double = tail > 0 && tail <= 8 ? 1 : 0
        return 8.1e-7 + s * (1.36e-9 * wide + 9.05e-10 * sixteen + 6.97e-10 * narrow) + 3.85e-10 * r * (k + n)
            + (pointwise ? 0 : 1.65e-9 * r * k)
    }

    /// Sparse runs only where predicted at least this much faster: the fit's median error is
    /// 10-25% and a wrong sparse pick is what would make a sparse file slower than dense.
    static let margin = 0.9

    var sparseIsFaster: Bool { sparseSeconds < Self.margin * denseSeconds }
}
