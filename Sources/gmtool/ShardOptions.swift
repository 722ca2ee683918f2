import ArgumentParser
import CIFAR
import Engine
import Foundation
import KerasCheckpoint
import ModelState

/// `--shard K/N` (K from 0) or `--shard auto/N`, for `grad` and `eval` (docs/SCALE.md).
struct ShardOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Compute only shard K of N (K from 0) and write its partial sums for `gmtool merge`; auto/N takes K from SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN) or Kubernetes' JOB_COMPLETION_INDEX.",
        valueName: "K/N"))
    var shard: ShardSelection?

    /// The shard's plan for a pass over `images` images.
    func plan(images: Int, batchSize: Int, kind: ShardFile.Kind) throws -> ShardPlan? {
        guard let shard else { return nil }
        let index = try shard.resolvedIndex(ProcessInfo.processInfo.environment)
        return try ShardPlan(index: index, count: shard.count, totalImages: images, batchSize: batchSize, kind: kind)
    }

    /// What the shard records about its model and data.
    static func provenance(_ model: Model, _ dataset: ImageDataset) throws -> ShardProvenance {
        ShardProvenance(weightsDigest: model.weightsDigest, dataDigest: try dataFilesDigest(dataset.files), model: model.path,
                        data: dataset.files.map(\.path).joined(separator: ","), scaling: dataset.scaling.description,
                        tool: "gmtool \(gmtoolVersion)")
    }
}

struct ShardSelection: ExpressibleByArgument {
    /// nil: auto.
    var index: Int?
    var count: Int

    init?(argument: String) {
        let parts = argument.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let count = Int(parts[1]), count > 0 else { return nil }
        if parts[0] == "auto" {
            index = nil
        } else {
            guard let index = Int(parts[0]), index >= 0, index < count else { return nil }
            self.index = index
        }
        self.count = count
    }

    static var defaultCompletionKind: CompletionKind { .default }

    /// K: given, or from the scheduler's environment (Slurm array task, Kubernetes Indexed Job).
    func resolvedIndex(_ environment: [String: String]) throws -> Int {
        if let index { return index }
        func number(_ name: String) throws -> Int? {
            guard let text = environment[name] else { return nil }
            guard let value = Int(text) else { throw CommandError("--shard auto/\(count): \(name)=\(text) is not a number") }
            return value
        }
        let index: Int
        let source: String
        if let task = try number("SLURM_ARRAY_TASK_ID") {
            index = task - (try number("SLURM_ARRAY_TASK_MIN") ?? 0)
            source = "SLURM_ARRAY_TASK_ID"
            if let tasks = try number("SLURM_ARRAY_TASK_COUNT"), tasks != count {
                throw CommandError("--shard auto/\(count): the Slurm array has \(tasks) tasks (SLURM_ARRAY_TASK_COUNT), not \(count)")
            }
        } else if let completion = try number("JOB_COMPLETION_INDEX") {
            index = completion
            source = "JOB_COMPLETION_INDEX"
        } else {
            throw CommandError("--shard auto/\(count): neither SLURM_ARRAY_TASK_ID nor JOB_COMPLETION_INDEX is set; give the shard as K/\(count)")
        }
        guard index >= 0, index < count else {
            throw CommandError("--shard auto/\(count): \(source) gives shard \(index), outside 0-\(count - 1)")
        }
        return index
    }
}
