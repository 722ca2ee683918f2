import CIFAR
import Foundation
import Testing

private let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Every batch of a source, as (labels, a hash of the images' bits).
private func batches(_ source: ImageBatchSource, size: Int, from first: Int? = nil) throws -> [([Int32], UInt64)] {
    var result: [([Int32], UInt64)] = []
    let floats = 32 * 32 * 3
    let body: (UnsafePointer<Float>, UnsafePointer<Int32>, Int) throws -> Void = { x, y, n in
        var hash: UInt64 = 14_695_981_039_346_656_037
        for value in UnsafeBufferPointer(start: x, count: n * floats) { hash = (hash ^ UInt64(value.bitPattern)) &* 1_099_511_628_211 }
        result.append((Array(UnsafeBufferPointer(start: y, count: n)), hash))
    }
    if let first { try source.forEachBatch(size: size, from: first, body) } else { try source.forEachBatch(size: size, body) }
    return result
}

/// `forEachBatch(size:from:)`, which shards read their ranges with, delivers exactly the batches
/// `forEachBatch(size:)` delivers after the first `from / size`, for the sources that seek
/// (CIFAR-10 binary, across file boundaries; a limit that ends inside a file) and for one that
/// uses the default (the Python pickles).
@Suite struct BatchesFromTests {
    @Test func batchesFromAnImageAreTheWholeSourcesTail() throws {
        let binary = repository.deletingLastPathComponent().appendingPathComponent("shared/data/cifar10-jpeg").path
        let sources: [(String, ImageBatchSource)] = [
            ("binary train, 10,000 images per file", try CIFARDataset(paths: [binary], split: .train, limit: 10_030, scaling: .unit)),
            ("python pickles", try CIFARPythonDataset(paths: [repository.appendingPathComponent("fixtures/data/cifar-python/cifar-10-batches-py").path], split: .train, scaling: .unit)),
        ]
        for (name, source) in sources {
            for size in [7, 50] {
                let all = try batches(source, size: size)
                // The skips: none, one batch, the batch that holds the first file's end, the last.
                for skip in Set([0, 1, min(all.count - 1, 10_000 / size), all.count - 1]) {
                    let tail = try batches(source, size: size, from: skip * size)
                    #expect(tail.count == all.count - skip, "\(name), batches of \(size) from \(skip * size)")
                    #expect(zip(tail, all.dropFirst(skip)).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }, "\(name), batches of \(size) from \(skip * size)")
                }
            }
        }
    }
}
