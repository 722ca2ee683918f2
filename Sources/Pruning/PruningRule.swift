import Dispatch
import Foundation

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

/// One tensor for `applyPruningRule(to:)`.
public struct PruningJob {
    public var weights: UnsafeMutablePointer<Float>
    public var gradients: UnsafePointer<Float>
    public var mask: UnsafeMutablePointer<UInt8>
    public var count: Int
    public var beta: Float
    public var gamma: Float

    public init(weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, mask: UnsafeMutablePointer<UInt8>,
                count: Int, beta: Float, gamma: Float) {
        (self.weights, self.gradients, self.mask, self.count, self.beta, self.gamma) = (weights, gradients, mask, count, beta, gamma)
    }
}

/// Applies the rule to many tensors on `threads` cores: the elements are cut into equal
/// contiguous slices across the whole list (one core alone does not saturate memory bandwidth).
/// Returns the pruned count of each job.
public func applyPruningRule(to jobs: [PruningJob], threads: Int = ProcessInfo.processInfo.activeProcessorCount) -> [Int] {
    let total = jobs.reduce(0) { $0 + $1.count }
    let workers = max(1, min(threads, total / 65_536 + 1))
    let share = (total + workers - 1) / workers
    let counts = UnsafeMutableBufferPointer<Int>.allocate(capacity: jobs.count * workers)
    counts.initialize(repeating: 0)
    defer { counts.deallocate() }
    nonisolated(unsafe) let shared = counts
    nonisolated(unsafe) let work = jobs
    // Each worker owns elements [worker * share, (worker + 1) * share) of the concatenation and
    // its own row of counts: no two threads touch the same byte.
    DispatchQueue.concurrentPerform(iterations: workers) { worker in
        let begin = worker * share, end = min(total, begin + share)
        var offset = 0
        for (index, job) in work.enumerated() {
            let low = max(begin, offset), high = min(end, offset + job.count)
            if low < high {
                let start = low - offset
                shared[worker * work.count + index] = applyPruningRule(
                    weights: job.weights + start, gradients: job.gradients + start, mask: job.mask + start,
                    count: high - low, beta: job.beta, gamma: job.gamma)
            }
            offset += job.count
        }
    }
    return (0..<jobs.count).map { index in (0..<workers).reduce(0) { $0 + counts[$1 * jobs.count + index] } }
}
