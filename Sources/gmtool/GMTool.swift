import ArgumentParser
import Foundation
import HDF5
import KerasCheckpoint

@main
struct GMTool: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gmtool",
        abstract: "Gradient and magnitude based pruning for Keras HDF5 checkpoints.",
        discussion: """
            Reads Keras 2 and Keras 3 checkpoints (.h5 full models, .h5 weights, .weights.h5, \
            .keras) and reports, prunes and exports them. Input files are never modified.
            """,
        version: gmtoolVersion,
        subcommands: [StatsCommand.self, EvalCommand.self, GradCommand.self, PruneCommand.self, ExportCommand.self, ImportCommand.self, TrainCommand.self]
    )

    /// Runs the command; a problem the user can fix is one line on stderr and exit status 1.
    /// SIGINT, SIGTERM and SIGHUP remove the temporaries first (exit 128 + the signal).
    static func main() {
        Temporaries.removeOnSignals()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let error as UserFacingError {
            FileHandle.standardError.write(Data("gmtool: error: \(error.description)\n".utf8))
            // _exit, not exit: the temporaries are gone already, and libhdf5 1.10's own exit
            // handler crashes on a file whose close failed (a full disk mid-write).
            fflush(nil)
            _exit(1)
        } catch {
            exit(withError: error)
        }
    }
}

/// Errors whose description is a complete one-line message for the user (file, object, problem).
protocol UserFacingError: Error, CustomStringConvertible {}
extension CheckpointError: UserFacingError {}
extension HDF5Error: UserFacingError {}

/// A problem with the command line or its files found by the command itself.
struct CommandError: UserFacingError {
    var description: String
    init(_ message: String) { description = message }
}

let gmtoolVersion = "0.1.0"
