import Foundation
import HDF5
import MalformedFiles
import Testing

/// Runs the built `gmtool` binary as a user would and captures what it prints.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

enum Paths {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static func fixture(_ name: String) -> String { repository.appendingPathComponent("fixtures/\(name)").path }
    /// The gmtool executable next to this test bundle (the test target depends on it, so it is built).
    static var binary: URL {
        var url = Bundle.main.bundleURL
        if url.pathExtension == "xctest" { url = url.deletingLastPathComponent() }
        let candidate = url.appendingPathComponent("gmtool")
        if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
        // swift-testing's runner: the bundle sits in the products folder too.
        for bundle in Bundle.allBundles where bundle.bundleURL.pathExtension == "xctest" {
            return bundle.bundleURL.deletingLastPathComponent().appendingPathComponent("gmtool")
        }
        return candidate
    }
}

func gmtool(_ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> CommandResult {
    try run(Paths.binary, arguments, in: directory, environment: environment)
}

/// Runs a program to its end and collects its exit status and output.
func run(_ executable: URL, _ arguments: [String], in directory: URL? = nil, environment: [String: String] = [:]) throws -> CommandResult {
    let process = Process()
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    process.executableURL = executable
    process.arguments = arguments
    if let directory { process.currentDirectoryURL = directory }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    try process.run()
    // Read both pipes to the end before waiting, so a large output cannot block the child.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errData = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return CommandResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                         stderr: String(decoding: errData, as: UTF8.self))
}

@Suite struct StatsCommandTests {
    @Test func tableShowsPerWeightRowsAndTotals() throws {
        let result = try gmtool(["stats", Paths.fixture("seqcnn_k2.h5")])
        #expect(result.status == 0)
        #expect(result.stderr.isEmpty)
        #expect(result.stdout.contains("total parameters:        9,962"))
        #expect(result.stdout.contains("trainable parameters:    9,946"))
        #expect(result.stdout.contains("non-trainable:           16"))
        let header = result.stdout.split(separator: "\n").first.map(String.init) ?? ""
        for column in ["layer", "type", "weight", "shape", "params", "nonzero", "sparsity", "bytes"] {
            #expect(header.contains(column))
        }
        #expect(result.stdout.contains("c1/kernel"))
    }

    @Test func jsonHasTheDocumentedKeys() throws {
        let result = try gmtool(["stats", Paths.fixture("mobilenet_k2.h5"), "--json"])
        #expect(result.status == 0)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        #expect(object["total_parameters"] as? Int == 221_114)
        #expect(object["trainable_parameters"] as? Int == 215_642)
        #expect(object["non_trainable_parameters"] as? Int == 5_472)
        #expect((object["prunable_parameters"] as? Int ?? 0) > 200_000)
        #expect(object["nonzero_parameters"] as? Int != nil)
        #expect(object["sparsity"] as? Double != nil)
        let layers = try #require(object["layers"] as? [[String: Any]])
        #expect(layers.count == 137)
        #expect(layers.first?["layer"] as? String == "conv1")
    }

    @Test func weightsOnlyFilesTakeTheirArchitectureFromConfig() throws {
        let result = try gmtool(["stats", Paths.fixture("rescnn_k3.weights.h5"), "--config", Paths.fixture("rescnn_k2.json"), "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("\"total_parameters\" : 1618"))
        let without = try gmtool(["stats", Paths.fixture("rescnn_k3.weights.h5")])
        #expect(without.status == 1)
        #expect(without.stderr.contains("--config"))
    }

    @Test func helpListsTheCommands() throws {
        let result = try gmtool(["--help"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("stats"))
    }
}

@Suite struct BadInputTests {
    /// Every bad input: exit status 1, nothing on stdout, exactly one line on stderr naming the file.
    func expectOneLineError(_ arguments: [String], mentioning fragments: [String]) throws {
        let result = try gmtool(arguments)
        #expect(result.status == 1, "\(arguments): status \(result.status)")
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "stderr was: \(result.stderr)")
        for fragment in fragments { #expect(result.stderr.contains(fragment), "stderr \(result.stderr) lacks \(fragment)") }
    }

    @Test func missingFile() throws {
        try expectOneLineError(["stats", "/nonexistent/model.h5"], mentioning: ["/nonexistent/model.h5", "no such file"])
    }

    @Test func directory() throws {
        try expectOneLineError(["stats", Paths.fixture("bad")], mentioning: ["bad", "directory"])
    }

    @Test(arguments: [
        ("empty.h5", "is empty"),
        ("truncated.h5", "truncated"),
        ("not_keras.h5", "not a Keras checkpoint"),
        ("missing_group.h5", "no group"),
        ("shape_mismatch.h5", "disagrees with the config"),
        ("int_weights.h5", "floating point"),
    ])
    func badFixture(name: String, problem: String) throws {
        try expectOneLineError(["stats", Paths.fixture("bad/\(name)")], mentioning: [name, problem])
    }

    /// A small file declaring a Conv2D with 2^40 filters (model_config and never-written chunked
    /// datasets): one line, exit status 1, no crash, for every command that reads weights.
    @Test func declaredSizesBeyondMemory() throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let model = folder.appendingPathComponent("huge.h5").path
        try copyDeclaringFilters(1 << 40, layer: "c1", of: Paths.fixture("seqcnn_k2.h5"), to: model)
        let line = "gmtool: error: \(model): /model_weights/c1/c1/kernel:0: declares 29686813949952 float32 values (108.0 TiB), more than this machine's \(describeBytes(MachineMemory.bytes)) of memory\n"
        for arguments in [["stats", model], ["eval", model, "--data", Shared.data, "--limit", "10"], ["prune", model, "--beta", "0.1", "-o", folder.appendingPathComponent("p.h5").path],
                          ["export", model, "-o", folder.appendingPathComponent("e.h5").path]] {
            let result = try gmtool(arguments)
            #expect(result.status == 1, "\(arguments[0]): status \(result.status)")
            #expect(result.stderr == line, "\(arguments[0])")
            #expect(result.stdout.isEmpty)
        }
    }
}

@Suite struct DocumentationTests {
    /// docs/CLI.md is `scripts/cli-docs.sh` output: every command's help text appears in it verbatim.
    @Test func cliReferenceMatchesHelp() throws {
        let reference = try String(contentsOf: Paths.repository.appendingPathComponent("docs/CLI.md"), encoding: .utf8)
        let root = try gmtool(["--help"])
        #expect(reference.contains(root.stdout), "docs/CLI.md is stale: run scripts/cli-docs.sh")
        let commands = root.stdout.components(separatedBy: "SUBCOMMANDS:").last?.split(separator: "\n")
            .filter { $0.hasPrefix("  ") && !$0.hasPrefix("   ") && !$0.contains("See '") }
            .compactMap { $0.split(separator: " ").first.map(String.init) } ?? []
        #expect(commands.count >= 3)
        for command in commands {
            let help = try gmtool(["help", command])
            #expect(reference.contains(help.stdout), "docs/CLI.md is stale for \(command): run scripts/cli-docs.sh")
        }
    }
}

/// A refused command: a non-zero exit, nothing on stdout, one line on stderr containing every fragment.
func expectError(_ arguments: [String], _ fragments: [String]) throws {
    let result = try gmtool(arguments)
    #expect(result.status != 0)
    #expect(result.stdout.isEmpty)
    #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    for fragment in fragments { #expect(result.stderr.contains(fragment), "\(result.stderr) lacks \(fragment)") }
}
