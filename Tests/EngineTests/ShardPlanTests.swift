import Engine
import KerasCheckpoint
import Testing

/// The shards of a pass tile its images: contiguous, in order, each starting on a unit boundary
/// (a batch group for gradients, a batch for evaluations), none empty; more shards than units
/// are refused.
@Suite struct ShardPlanTests {
    @Test func shardsTileThePassOnUnitBoundaries() throws {
        for kind in [ShardFile.Kind.gradients, .evaluation] {
            for images in [1, 2, 29, 30, 31, 130, 999, 1000, 1001, 10_000] {
                for batch in [1, 3, 7, 100] {
                    let first = try ShardPlan(index: 0, count: 1, totalImages: images, batchSize: batch, kind: kind)
                    let unitImages = batch * (kind == .gradients ? Network.gradientGroupBatches : 1)
                    #expect(first.unitCount == (images + unitImages - 1) / unitImages)
                    for count in Set([1, 2, 3, 4, first.unitCount]) where count <= first.unitCount {
                        var next = 0
                        for index in 0..<count {
                            let plan = try ShardPlan(index: index, count: count, totalImages: images, batchSize: batch, kind: kind)
                            #expect(plan.images.lowerBound == next && !plan.images.isEmpty, "\(kind) \(images)/\(batch) \(index)/\(count)")
                            #expect(plan.images.lowerBound % unitImages == 0)
                            next = plan.images.upperBound
                        }
                        #expect(next == images)
                    }
                    #expect(throws: CheckpointError.self) {
                        try ShardPlan(index: 0, count: first.unitCount + 1, totalImages: images, batchSize: batch, kind: kind)
                    }
                }
            }
        }
    }
}
