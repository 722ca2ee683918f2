import ArgumentParser
import Foundation
import KerasCheckpoint

/// The checkpoint argument and `--config`, shared by every command that reads a model.
struct CheckpointOptions: ParsableArguments {
    @Argument(help: "The Keras checkpoint (.h5, .weights.h5 or .keras).")
    var model: String

    @Option(name: .long, help: "Architecture JSON (Keras model.to_json()) for weights-only files.")
    var config: String?

    /// Opens the checkpoint, with the architecture from `--config` when given.
    func open() throws -> Checkpoint {
        var architecture: ModelConfig?
        if let config {
            guard let data = FileManager.default.contents(atPath: config) else {
                throw CommandError("\(config): cannot read the --config file")
            }
            architecture = try ModelConfig(json: String(decoding: data, as: UTF8.self), source: config)
        }
        return try Checkpoint.open(model, config: architecture)
    }
}

/// Prints pretty JSON with sorted keys (stable for scripts and diffs).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}
