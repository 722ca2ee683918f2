import ArgumentParser
import Foundation
import Engine
import KerasCheckpoint
import ModelState

/// The checkpoint argument and `--config`, shared by every command that reads a model.
struct CheckpointOptions: ParsableArguments {
    @Argument(help: "The Keras checkpoint (.h5, .weights.h5 or .keras).")
    var model: String

    @Option(name: .long, help: "Architecture for weights-only files: a model.to_json() file or a .keras archive.")
    var config: String?

    /// Opens the checkpoint, with the architecture from `--config` when given.
    func open() throws -> Checkpoint {
        try Checkpoint.open(model, config: config.map(ModelConfig.init(contentsOf:)))
    }

    /// Loads the model (every weight and mask) into memory.
    func openModel() throws -> Model { try Model(checkpoint: try open()) }
}

/// Prints pretty JSON with sorted keys (stable for scripts and diffs).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Whether two paths name the same file (after `.`/`..` and symbolic links): outputs must not
/// silently replace inputs.
func samePath(_ a: String, _ b: String) -> Bool {
    URL(fileURLWithPath: a).standardizedFileURL.resolvingSymlinksInPath() == URL(fileURLWithPath: b).standardizedFileURL.resolvingSymlinksInPath()
}
