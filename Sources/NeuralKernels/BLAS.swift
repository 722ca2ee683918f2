internal import CBLAS

/// Row-major single-precision GEMM: C = alpha * op(A) * op(B) + beta * C, where op(A) is m x k
/// and op(B) is k x n. Wraps `cblas_sgemm`; transposes are flags, never materialised copies.
/// Plain products 16-64 columns wide (alpha 1, beta 0 or 1) run `narrowGemm` instead.
@inline(__always)
public func gemm(
    transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
    alpha: Float = 1, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        // BLAS leaves C untouched for k == 0 only when beta == 1; make the contract explicit.
        if beta == 0 { for row in 0..<m { (c + row * ldc).update(repeating: 0, count: n) } }
        else if beta != 1 { for row in 0..<m { for col in 0..<n { c[row * ldc + col] *= beta } } }
        return
    }
    if !transposeA && !transposeB && alpha == 1 && (beta == 0 || beta == 1) && narrowGemmTakes(n: n) {
        narrowGemm(m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, accumulate: beta == 1, c: c, ldc: ldc)
        return
    }
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// BLAS's own thread count. gmtool runs one network copy per core with single-threaded BLAS
/// (small 32x32 GEMMs scale better across samples than inside one GEMM), so `Network` sets it to 1.
public enum BLASThreads {
    public static func set(_ count: Int) { gm_blas_set_threads(Int32(count)) }
}
