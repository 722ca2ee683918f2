import Engine
import Foundation
import KerasCheckpoint
import Pruning

/// `gmtool sweep --shard K/N`: shard K measures its contiguous run of the grid's points (a
/// `ShardPlan` of kind `.sweep`, one point per unit). Every shard takes the same gradient pass and
/// the same baseline evaluation, so a point's outcome does not depend on the shard that measured
/// it; `gmtool merge` puts the runs back in grid order and writes the folder the single sweep
/// writes (docs/SCALE.md).
///
/// The shard's outcomes travel as `/sweep/shard.json`: the shard's `SweepResult` (its points
/// only, nothing selected) and, per point, the `gmtool prune` command that reproduces it (the
/// merge has no command line to make it from). JSON numbers are the shortest decimals that read
/// back to the same Double or Float, so the merge re-encodes exactly the single run's numbers.
public enum SweepShard {
    static let payloadPath = "sweep/shard.json"

    struct Payload: Codable {
        var result: SweepResult
        var commands: [String]
    }

    /// Writes shard `plan.index`'s outcomes (`result.points`, the plan's points in order, and
    /// one reproducing command each) atomically to `path`. `grid` names the whole grid and every
    /// setting the points depend on; shards merge only with the same text.
    public static func write(_ result: SweepResult, commands: [String], plan: ShardPlan, provenance p: ShardProvenance, grid: String,
                             to path: String) throws {
        precondition(result.points.count == plan.images.count && commands.count == plan.images.count)
        let header = ShardFile.Header(kind: .sweep, index: plan.index, count: plan.count, totalImages: plan.totalImages, images: plan.images,
                                      units: plan.units, batchSize: plan.batchSize, unitBatches: plan.unitBatches,
                                      weightsDigest: p.weightsDigest, dataDigest: p.dataDigest, model: p.model, data: p.data,
                                      scaling: p.scaling, tool: p.tool, weights: [], grid: grid)
        let bytes = [UInt8](try jsonData(Payload(result: result, commands: commands)))
        try ShardFile.write(to: path, header: header, body: { try $0.addBytes(payloadPath, bytes) }, batches: nil)
    }

    /// The single sweep's result from sweep shards (from `openShards`, in point order): the
    /// points concatenated, the point selected and its command as the single run selects them.
    /// Timings are not the single run's: `gradient_seconds` is the first shard's pass (every
    /// shard takes the same one), `point_seconds` the shards' point times added.
    public static func merge(_ shards: [ShardFile.Reader]) throws -> SweepResult {
        guard let first = shards.first, first.header.kind == .sweep else {
            throw CheckpointError(file: shards.first?.path ?? "merge", problem: "is not a sweep shard")
        }
        var merged: SweepResult?
        var commands: [String] = []
        for shard in shards {
            let payload: Payload
            do {
                payload = try JSONDecoder().decode(Payload.self, from: Data(try shard.bytes(payloadPath)))
            } catch is DecodingError {
                throw CheckpointError(file: shard.path, object: "/" + payloadPath, problem: "is not a sweep shard's outcomes (unreadable JSON)")
            }
            let r = payload.result
            let grid = SweepPoint.grid(betas: r.betas, gammas: r.gammas)
            guard grid.count == shard.header.totalImages, payload.commands.count == r.points.count,
                  r.points.map({ SweepPoint(beta: $0.beta, gamma: $0.gamma) }) == Array(grid[shard.header.images]) else {
                throw CheckpointError(file: shard.path, object: "/" + payloadPath,
                                      problem: "does not hold points \(shard.header.images.lowerBound)-\(shard.header.images.upperBound - 1) of its grid")
            }
            guard var total = merged else {
                merged = r
                commands = payload.commands
                continue
            }
            // The same pass and baseline in every shard (the grid attribute already matched).
            // Paths may differ between nodes (the digests matched); the first shard's are written.
            guard r.gradientImages == total.gradientImages, r.evaluationImages == total.evaluationImages,
                  r.baselineTop1 == total.baselineTop1, r.baselineTop5 == total.baselineTop5, r.baselineLoss == total.baselineLoss,
                  r.baselineSparsity == total.baselineSparsity, r.maxDrop == total.maxDrop else {
                throw CheckpointError(file: shard.path, problem: "measured another unpruned model or data than \(first.path) (its baseline or data differ)")
            }
            total.points += r.points
            total.pointSeconds += r.pointSeconds
            commands += payload.commands
            merged = total
        }
        guard var result = merged else { throw CheckpointError(file: "merge", problem: "no shard files given") }
        result.selected = sparsestWithin(result.points, baseline: result.baselineTop1, maxDrop: result.maxDrop)
        result.command = result.selected.map { commands[$0] }
        return result
    }
}

extension PointOutcome: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(beta: try c.decode(Float.self, forKey: .beta), gamma: try decodeGamma(c, value: .gamma, flag: .gammaIsInfinite),
                  sparsity: try c.decode(Double.self, forKey: .sparsity), kernelSparsity: try c.decode(Double.self, forKey: .kernelSparsity),
                  nonzero: try c.decode(Int.self, forKey: .nonzero), parameters: try c.decode(Int.self, forKey: .parameters),
                  prunedNow: try c.decode(Int.self, forKey: .prunedNow), csrBytes: try c.decode(Int.self, forKey: .csrBytes),
                  bitmaskBytes: try c.decode(Int.self, forKey: .bitmaskBytes), smallerBytes: try c.decode(Int.self, forKey: .smallerBytes),
                  denseKernelBytes: try c.decode(Int.self, forKey: .denseKernelBytes), top1: try c.decode(Double.self, forKey: .top1),
                  top5: try c.decode(Double.self, forKey: .top5), loss: try c.decode(Double.self, forKey: .loss),
                  layers: try c.decode([LayerOutcome].self, forKey: .layers))
    }
}

extension SweepResult: Decodable {
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        guard try c.decode(String.self, forKey: .format) == sweepFormatName, try c.decode(Int.self, forKey: .formatVersion) == 1 else {
            throw DecodingError.dataCorruptedError(forKey: .format, in: c, debugDescription: "not a \(sweepFormatName) version 1 result")
        }
        let baseline = try c.decode([String: Double].self, forKey: .baseline)
        func base(_ key: String) throws -> Double {
            guard let value = baseline[key] else {
                throw DecodingError.dataCorruptedError(forKey: .baseline, in: c, debugDescription: "no baseline \(key)")
            }
            return value
        }
        self.init(model: try c.decode(String.self, forKey: .model), gradientData: try c.decode([String].self, forKey: .gradientData),
                  gradientImages: try c.decode(Int.self, forKey: .gradientImages),
                  evaluationData: try c.decode([String].self, forKey: .evaluationData),
                  evaluationImages: try c.decode(Int.self, forKey: .evaluationImages), baselineTop1: try base("top1"),
                  baselineTop5: try base("top5"), baselineLoss: try base("loss"), baselineSparsity: try base("sparsity"),
                  betas: try c.decode([Float].self, forKey: .betas),
                  // null: gamma = inf (JSON has no infinity).
                  gammas: try c.decode([Double?].self, forKey: .gammas).map { $0.map(Float.init) ?? .infinity },
                  points: try c.decode([PointOutcome].self, forKey: .points), maxDrop: try c.decode(Double.self, forKey: .maxDrop),
                  selected: try c.decodeIfPresent(Int.self, forKey: .selected), command: try c.decodeIfPresent(String.self, forKey: .command),
                  gradientSeconds: try c.decode(Double.self, forKey: .gradientSeconds),
                  pointSeconds: try c.decode(Double.self, forKey: .pointSeconds))
    }
}

/// Reads what `encodeGamma` wrote: the number, or infinity where `flag` is true.
func decodeGamma<Key: CodingKey>(_ c: KeyedDecodingContainer<Key>, value: Key, flag: Key) throws -> Float {
    if try c.decode(Bool.self, forKey: flag) { return .infinity }
    return Float(try c.decode(Double.self, forKey: value))
}
