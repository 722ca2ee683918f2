/// The paper's rule (Belay 2022, Algorithm 1) on one tensor: where the mask bit is 1,
/// |w| < beta and |g| < gamma (both strict), set w = 0 and the bit to 0. Where the bit is already
/// 0 the weight is forced to exactly 0, so pruned weights stay pruned. A NaN never satisfies `<`,
/// so it is never pruned. Returns how many bits went from 1 to 0.
///
/// The rule is memory-bound: sixteen lanes at a time, branch-free, each byte read once and written
/// once. (`|w| < beta` is written `-beta < w < beta`: the same for beta >= 0, and it vectorises
/// where `abs` on SIMD vectors does not exist.)
@discardableResult
public func applyPruningRule(
    weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, mask: UnsafeMutablePointer<UInt8>,
    count: Int, beta: Float, gamma: Float
) -> Int {
    precondition(beta >= 0 && gamma >= 0, "thresholds must be non-negative")
    typealias Vector = SIMD16<Float>
    typealias Lanes = SIMD16<Int32>
    let lanes = Vector.scalarCount
    let betaHigh = Vector(repeating: beta), betaLow = -betaHigh
    let gammaHigh = Vector(repeating: gamma), gammaLow = -gammaHigh
    var counts = Lanes()
    var i = 0
    while i + lanes <= count {
        let w = UnsafeRawPointer(weights + i).loadUnaligned(as: Vector.self)
        let g = UnsafeRawPointer(gradients + i).loadUnaligned(as: Vector.self)
        let bytes = UnsafeRawPointer(mask + i).loadUnaligned(as: SIMD16<UInt8>.self)
        // Lane-by-lane widening: the generic SIMD conversion initialisers are not inlined,
        // these loops compile to single vector instructions.
        var bits = Lanes()
        for k in 0..<lanes { bits[k] = Int32(bytes[k]) }
        let live = bits .!= 0
        let prune = live .& (w .< betaHigh) .& (w .> betaLow) .& (g .< gammaHigh) .& (g .> gammaLow)
        let keep = live .& .!prune
        UnsafeMutableRawPointer(weights + i).storeBytes(of: Vector().replacing(with: w, where: keep), as: Vector.self)
        let newBits = Lanes().replacing(with: 1, where: keep)
        var out = SIMD16<UInt8>()
        for k in 0..<lanes { out[k] = UInt8(truncatingIfNeeded: newBits[k]) }
        UnsafeMutableRawPointer(mask + i).storeBytes(of: out, as: SIMD16<UInt8>.self)
        counts &+= Lanes().replacing(with: 1, where: prune)
        i += lanes
    }
    var pruned = Int(counts.wrappedSum())
    while i < count {
        if mask[i] != 0 && abs(weights[i]) < beta && abs(gradients[i]) < gamma {
            mask[i] = 0
            pruned += 1
        }
        if mask[i] == 0 { weights[i] = 0 } else { mask[i] = 1 }
        i += 1
    }
    return pruned
}
