import Foundation
import KerasCheckpoint
import ModelState
import Testing
@testable import Engine

/// The graph rewrites for inference (`GraphBuilder.foldZeroPadding`, `fuseSparseEpilogues`) on the
/// MobileNet fixture (ZeroPadding2D before its stride-2 depthwise convolutions, BatchNormalization
/// + ReLU6 after every convolution) and its sparse export.
@Suite struct InferenceFusionTests {
    @Test func exportFusesBatchNormReLUIntoItsConvolutionsAndFoldsZeroPadding() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-fusion-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let source = fixtures.appendingPathComponent("mobilenet_k2.h5").path
        let export = directory.appendingPathComponent("m.csr.h5").path
        _ = try Checkpoint.open(source).exportSparse(to: export, encoding: .csr, compress: false)
        #expect(try Checkpoint.open(source).modelConfig!.layers.contains { $0.className == "ZeroPadding2D" })
        let model = try Model(checkpoint: try Checkpoint.open(export))
        let dense = try Network(model: model, workers: 1, kernels: .dense)
        let sparse = try Network(model: model, workers: 1, kernels: .sparse)
        // Folded everywhere; fused only where sparse kernels run (dense keeps its ReLU nodes).
        #expect(!dense.nodeClasses.contains("ZeroPadding2D") && !sparse.nodeClasses.contains("ZeroPadding2D"))
        let denseReLUs = dense.nodeClasses.filter { $0 == "ReLU" }.count
        #expect(denseReLUs > 0)
        #expect(sparse.nodeClasses.count == dense.nodeClasses.count - denseReLUs + sparse.nodeClasses.filter { $0 == "ReLU" }.count)
        #expect(sparse.nodeClasses.filter { $0 == "ReLU" }.count < denseReLUs)
        let layers = sparse.sparseLayers(batch: 6)
        #expect(layers.contains { $0.epilogueNode != nil })
        // Same predictions within float32 summation order: the sparse kernels add each output's
        // products in CSR order rather than sgemm's, a relative error of ~K * 2^-24 of sum |w||x|
        // per layer; the golden bound for this fixture (1e-4 on probabilities, GoldenTests) covers
        // it with room, and a wrongly fused or folded layer moves probabilities by far more.
        let images = (0..<(6 * dense.inputCount)).map { Float(($0 * 7919) % 1000) / 1000 }
        let p = images.withUnsafeBufferPointer { dense.predict(images: $0.baseAddress!, count: 6) }
        let q = images.withUnsafeBufferPointer { sparse.predict(images: $0.baseAddress!, count: 6) }
        #expect(zip(p, q).map { abs($0 - $1) }.max()! <= 1e-4)
    }
}
