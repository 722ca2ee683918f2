// gmtool-bench: micro-benchmarks of gmtool's kernels, run by benchmarks/bench.py next to the peer
// tools. Not part of the user-facing tool.
//
//   gmtool-bench rule MODEL.h5 [--params N] [--repeats R]
//     The pruning rule over N float32 weights (default 14,000,000) in tensors of MODEL's kernel
//     sizes, cycled, w ~ N(0, 0.05), g ~ N(0, 0.001), beta and gamma set so that ~90% is pruned
//     (the NumPy peer's setting), against memcpy of the same arrays (the memory-bandwidth floor).
//
//   gmtool-bench layers EXPORT.h5 [--batch B] [--repeats R]
//     Each sparse-stored convolution/Dense layer of a sparse export, forward over a batch of B
//     random images (default 100) cut into chunks as eval cuts them, on one thread, best of R:
//     seconds sparse, seconds dense, the cost model's two predictions and the kernel auto picks.
//     One JSON object per layer (the data the cost model's constants were fitted to); a layer's
//     times include the BatchNormalization + ReLU fused into it. Then seconds per call by layer
//     class, dense and auto, and their totals.
import Engine
import Foundation
import KerasCheckpoint
import ModelState
import Pruning

struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func uniform() -> Double { Double(next() >> 11) / Double(1 << 53) }
    /// Box-Muller.
    mutating func normal() -> Double { (-2 * log(max(uniform(), 1e-300))).squareRoot() * cos(2 * .pi * uniform()) }
}

/// The z with P(|N(0,1)| < z) = p, by bisection on erf.
func twoSidedQuantile(_ p: Double) -> Double {
    var low = 0.0, high = 10.0
    for _ in 0..<200 {
        let mid = (low + high) / 2
        if erf(mid / 2.0.squareRoot()) < p { low = mid } else { high = mid }
    }
    return (low + high) / 2
}

func seconds(_ body: () -> Void) -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func benchRule(_ arguments: [String]) throws {
    guard let model = arguments.first else { print("usage: gmtool-bench rule MODEL.h5 [--params N] [--repeats R]"); exit(2) }
    var total = 14_000_000, repeats = 5
    if let i = arguments.firstIndex(of: "--params"), i + 1 < arguments.count { total = Int(arguments[i + 1]) ?? total }
    if let i = arguments.firstIndex(of: "--repeats"), i + 1 < arguments.count { repeats = Int(arguments[i + 1]) ?? repeats }
    let kernels = try Checkpoint.open(model).weights.filter(\.prunable).map(\.elementCount)
    var sizes: [Int] = []
    var filled = 0, index = 0
    while filled < total {
        let size = min(kernels[index % kernels.count], total - filled)
        sizes.append(size)
        filled += size
        index += 1
    }
    var random = SplitMix(state: 1234)
    let pristine = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    let weights = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    let gradients = UnsafeMutableBufferPointer<Float>.allocate(capacity: total)
    let masks = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: total)
    let copyFloats = UnsafeMutableBufferPointer<Float>.allocate(capacity: 2 * total)
    let copyBytes = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: total)
    for i in 0..<total {
        pristine[i] = Float(random.normal() * 0.05)
        gradients[i] = Float(random.normal() * 0.001)
    }
    let z = twoSidedQuantile(0.9.squareRoot())
    let beta = Float(z * 0.05), gamma = Float(z * 0.001)
    var bestRule = Double.infinity, bestParallel = Double.infinity, bestCopy = Double.infinity, pruned = 0, prunedParallel = 0
    var jobs: [PruningJob] = []
    var start = 0
    for size in sizes {
        jobs.append(PruningJob(weights: weights.baseAddress! + start, gradients: gradients.baseAddress! + start,
                               mask: masks.baseAddress! + start, count: size, beta: beta, gamma: gamma))
        start += size
    }
    for _ in 0..<(repeats + 1) {
        _ = weights.update(fromContentsOf: pristine)
        masks.update(repeating: 1)
        let t = seconds {
            pruned = 0
            var offset = 0
            for size in sizes {
                pruned += applyPruningRule(weights: weights.baseAddress! + offset, gradients: gradients.baseAddress! + offset,
                                           mask: masks.baseAddress! + offset, count: size, beta: beta, gamma: gamma)
                offset += size
            }
        }
        bestRule = min(bestRule, t)
        _ = weights.update(fromContentsOf: pristine)
        masks.update(repeating: 1)
        let p = seconds { prunedParallel = applyPruningRule(to: jobs).reduce(0, +) }
        bestParallel = min(bestParallel, p)
        precondition(prunedParallel == pruned, "parallel and serial rule disagree")
        let c = seconds {
            var offset = 0
            for size in sizes {
                memcpy(copyFloats.baseAddress! + offset, weights.baseAddress! + offset, size * 4)
                memcpy(copyFloats.baseAddress! + total + offset, gradients.baseAddress! + offset, size * 4)
                memcpy(copyBytes.baseAddress! + offset, masks.baseAddress! + offset, size)
                offset += size
            }
        }
        bestCopy = min(bestCopy, c)
    }
    let result: [String: Any] = [
        "params": total, "arrays": sizes.count, "beta": Double(beta), "gamma": Double(gamma),
        "pruned_fraction": Double(pruned) / Double(total), "rule_s": bestRule, "rule_parallel_s": bestParallel,
        "threads": ProcessInfo.processInfo.activeProcessorCount, "copy_s": bestCopy, "repeats": repeats,
    ]
    let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys])
    print(String(decoding: data, as: UTF8.self))
}

func benchLayers(_ arguments: [String]) throws {
    guard let path = arguments.first else { print("usage: gmtool-bench layers EXPORT.h5 [--batch B] [--repeats R]"); exit(2) }
    var batch = 100, repeats = 5
    if let i = arguments.firstIndex(of: "--batch"), i + 1 < arguments.count { batch = Int(arguments[i + 1]) ?? batch }
    if let i = arguments.firstIndex(of: "--repeats"), i + 1 < arguments.count { repeats = Int(arguments[i + 1]) ?? repeats }
    let model = try Model(checkpoint: try Checkpoint.open(path))
    let sparse = try Network(model: model, workers: 1, kernels: .sparse)
    let dense = try Network(model: model, workers: 1, kernels: .dense)
    let auto = try Network(model: model, workers: 1, kernels: .auto)
    var random = SplitMix(state: 7)
    let images = (0..<(batch * sparse.inputCount)).map { _ in Float(random.uniform() * 2 - 1) }
    let (s, d, a) = images.withUnsafeBufferPointer {
        (sparse.forwardSecondsPerNode(images: $0.baseAddress!, count: batch, repeats: repeats),
         dense.forwardSecondsPerNode(images: $0.baseAddress!, count: batch, repeats: repeats),
         auto.forwardSecondsPerNode(images: $0.baseAddress!, count: batch, repeats: repeats))
    }
    let sparseSeconds = Dictionary(uniqueKeysWithValues: s.map { ($0.node, $0.seconds) })
    let denseNodes = Dictionary(uniqueKeysWithValues: d.map { ($0.node, $0.seconds) })
    // A sparse network's convolution carries the BatchNormalization + ReLU fused into it; the
    // dense network runs that as its own node, which the layer's dense time includes.
    func denseSeconds(_ layer: SparseLayerUse) -> Double {
        denseNodes[layer.node]! + (layer.epilogueNode.map { denseNodes[$0]! } ?? 0)
    }
    // Where the rest of the time goes: every node's class, summed, per call, dense and auto.
    let calls = Double(Network.chunks(batch).count)
    var byKind: [String: Double] = [:], autoByKind: [String: Double] = [:]
    for (node, timing) in zip(dense.nodeClasses, d) { byKind[node, default: 0] += timing.seconds / calls }
    for (node, timing) in zip(auto.nodeClasses, a) { autoByKind[node, default: 0] += timing.seconds / calls }
    for layer in auto.sparseLayers(batch: batch) {
        let (sparseSeconds, denseSeconds) = (sparseSeconds[layer.node]!, denseSeconds(layer))
        let row: [String: Any] = [
            "layer": layer.node, "batch": batch, "rows": layer.rows, "inputs": layer.inputs, "outputs": layer.outputs,
            "stored": layer.stored, "density": layer.density, "calls": Int(calls),
            "sparse_s": sparseSeconds / calls, "dense_s": denseSeconds / calls,
            "predicted_sparse_s": layer.predictedSparse, "predicted_dense_s": layer.predictedDense, "auto_sparse": layer.runsSparse,
        ]
        print(String(decoding: try JSONSerialization.data(withJSONObject: row, options: [.sortedKeys]), as: UTF8.self))
    }
    let summary: [String: Any] = ["batch": batch, "dense_seconds_by_class": byKind, "auto_seconds_by_class": autoByKind,
                                  "dense_seconds": byKind.values.reduce(0, +), "auto_seconds": autoByKind.values.reduce(0, +)]
    print(String(decoding: try JSONSerialization.data(withJSONObject: summary, options: [.sortedKeys]), as: UTF8.self))
}

let arguments = Array(CommandLine.arguments.dropFirst())
switch arguments.first {
case "rule": try benchRule(Array(arguments.dropFirst()))
case "layers": try benchLayers(Array(arguments.dropFirst()))
default:
    print("usage: gmtool-bench rule MODEL.h5 [--params N] [--repeats R] | layers EXPORT.h5 [--batch B] [--repeats R]")
    exit(2)
}
