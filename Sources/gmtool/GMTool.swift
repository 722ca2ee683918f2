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
        subcommands: [StatsCommand.self, EvalCommand.self, GradCommand.self, MergeCommand.self, PruneCommand.self, SweepCommand.self, SensitivityCommand.self, ExportCommand.self, ImportCommand.self, TrainCommand.self]
    )

    /// Runs the command. Every user error is reported as `gmtool: error: <file or object>:
    /// <problem>`: a problem with a file is that one line and exit status 1; a problem with the
    /// command line is that line followed by the command's usage, exit status 64; a command that
    /// pauses for a file it needs (`CommandPause`) prints what to do and exits 75. SIGINT, SIGTERM
    /// and SIGHUP remove the temporaries first (exit 128 + the signal).
    static func main() {
        Temporaries.removeOnSignals()
        let arguments = Array(CommandLine.arguments.dropFirst())
        if let problem = unknownCommand(arguments) {
            reportUsageError("\(problem)\nUsage: " + usageString() + "\n  See 'gmtool --help' for more information.")
        }
        do {
            // Parse once without the commands' own checks, so an unknown option or a value that does
            // not parse is what is reported first; then again with them.
            CommandChecks.enabled = false
            _ = try parseAsRoot(arguments)
            CommandChecks.enabled = true
            var command = try parseAsRoot(arguments)
            try command.run()
        } catch let pause as CommandPause {
            // Not an error: the command stopped at a documented point and says how to go on.
            FileHandle.standardError.write(Data("gmtool: \(pause.message)\n".utf8))
            fflush(nil)
            _exit(pause.status)
        } catch let error as UserFacingError {
            FileHandle.standardError.write(Data("gmtool: error: \(error.description)\n".utf8))
            // _exit, not exit: the temporaries are gone already, and libhdf5 1.10's own exit
            // handler crashes on a file whose close failed (a full disk mid-write).
            fflush(nil)
            _exit(1)
        } catch {
            guard exitCode(for: error) != .success else { exit(withError: error) }  // --help, --version
            reportUsageError(fullMessage(for: error))
        }
    }

    /// Prints argument-parser's message in gmtool's style (the usage stays) and exits with 64.
    static func reportUsageError(_ message: String) -> Never {
        var text = message
        if text.hasPrefix("Error: ") { text.removeFirst("Error: ".count) }
        FileHandle.standardError.write(Data("gmtool: error: \(text)\n".utf8))
        fflush(nil)
        _exit(ExitCode.validationFailure.rawValue)
    }

    /// A first argument (or `help`'s argument) that names no command, with the closest name.
    static func unknownCommand(_ arguments: [String]) -> String? {
        let names = configuration.subcommands.map { $0.configuration.commandName ?? "" }
        var candidate = arguments.first
        if candidate == "help" { candidate = arguments.dropFirst().first }
        guard let word = candidate, !word.hasPrefix("-"), !names.contains(word), word != "help" else { return nil }
        let closest = names.min { editDistance($0, word) < editDistance($1, word) }
        let suggestion = closest.map { editDistance($0, word) <= max(2, word.count / 2) ? " Did you mean '\($0)'?" : "" } ?? ""
        return "'\(word)' is not a gmtool command.\(suggestion)"
    }
}

/// Levenshtein distance, for suggesting the command a user meant.
func editDistance(_ a: String, _ b: String) -> Int {
    let b = Array(b)
    var row = Array(0...b.count)  // distances from the prefix of `a` read so far to each prefix of b
    for (i, x) in a.enumerated() {
        var diagonal = row[0]
        row[0] = i + 1
        for j in b.indices {
            let above = row[j + 1]
            row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x == b[j] ? 0 : 1))
            diagonal = above
        }
    }
    return row[b.count]
}

/// Whether the commands' `validate()` checks run: `main` parses once without them (so a
/// misspelt option is reported before a check it would have satisfied), then with them.
enum CommandChecks {
    nonisolated(unsafe) static var enabled = true
}

/// Errors whose description is a complete one-line message for the user (file, object, problem).
protocol UserFacingError: Error, CustomStringConvertible {}
extension CheckpointError: UserFacingError {}
extension HDF5Error: UserFacingError {}

/// A command that stopped, its outputs written, until something it needs exists (`train
/// --prune-gradients-from`): the one line saying what to do, and an exit status of its own.
struct CommandPause: Error {
    /// EX_TEMPFAIL (sysexits.h): try again later; neither success (0), a failure (1) nor a
    /// usage error (64).
    static let temporaryFailure: Int32 = 75
    var message: String
    var status: Int32 = CommandPause.temporaryFailure
}

/// A problem with the command line or its files found by the command itself.
struct CommandError: UserFacingError {
    var description: String
    init(_ message: String) { description = message }
}

let gmtoolVersion = "0.1.0"
