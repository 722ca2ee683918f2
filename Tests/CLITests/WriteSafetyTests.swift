import Engine
import Foundation
import KerasCheckpoint
import Testing

/// Five tiny CIFAR-10 batches in `folder`, enough for `gmtool train`.
func writeTinyCIFAR(in folder: URL, imagesPerBatch: Int = 20) throws {
    for index in 1...5 {
        try writeRecords(folder.appendingPathComponent("data_batch_\(index).bin").path,
                         labels: (0..<imagesPerBatch).map { UInt8(($0 + index - 1) % 10) })
    }
}

/// gmtool's temporaries (`.NAME.gmtool-PID-UUID.tmp`) in a folder.
func temporaries(in folder: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.contains(".gmtool-") }
}

/// An archive's extraction folders (`TMPDIR/gmtool-PID-UUID`) left by process `pid`.
func scratchFolders(of pid: pid_t) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: FileManager.default.temporaryDirectory.path).filter { $0.hasPrefix("gmtool-\(pid)-") }
}

@Suite struct SymbolicLinkTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-links-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }
    func link(_ name: String, to target: String) throws { try FileManager.default.createSymbolicLink(atPath: path(name), withDestinationPath: target) }

    /// Every command reads through a link and writes elsewhere; the link's target keeps its bytes.
    @Test func inputsBehindLinksAreReadNotWritten() throws {
        for name in ["rescnn_k2.h5", "rescnn_k3.keras"] { try FileManager.default.copyItem(atPath: Paths.fixture(name), toPath: path(name)) }
        try link("latest.h5", to: "rescnn_k2.h5")
        try link("latest.keras", to: "rescnn_k3.keras")
        let before = [FileManager.default.contents(atPath: path("rescnn_k2.h5")), FileManager.default.contents(atPath: path("rescnn_k3.keras"))]
        let data = scratch.appendingPathComponent("cifar")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyCIFAR(in: data)
        try link("sparse-link.h5", to: "sparse.h5")
        let runs: [[String]] = [
            ["prune", path("latest.h5"), "--beta", "0.05", "-o", path("pruned.h5")],
            ["prune", path("latest.keras"), "--beta", "0.05", "-o", path("pruned.keras")],
            ["export", path("latest.h5"), "-o", path("sparse.h5")],
            ["import", path("sparse-link.h5"), "-o", path("restored.h5")],
            ["train", path("latest.h5"), "--data", data.path, "--epochs", "1", "--batch-size", "16", "--beta", "0.05", "-o", path("trained.h5")],
        ]
        for arguments in runs {
            let result = try gmtool(arguments)
            #expect(result.status == 0, "\(arguments[0]): \(result.stderr)")
        }
        #expect(try Checkpoint.open(path("pruned.h5")).statistics().hasMasks)
        #expect(try Checkpoint.open(path("pruned.keras")).statistics().hasMasks)
        #expect(try Checkpoint.open(path("restored.h5")).statistics().hasMasks == false)
        #expect(try Checkpoint.open(path("trained.h5")).extraAttribute(group: "/gmtool_training", "completed_epochs") == "1")
        #expect(FileManager.default.fileExists(atPath: path("trained.h5.log.csv")))
        #expect([FileManager.default.contents(atPath: path("rescnn_k2.h5")), FileManager.default.contents(atPath: path("rescnn_k3.keras"))] == before)
        #expect(try temporaries(in: scratch).isEmpty)
    }

    /// `--in-place` on a link replaces the link's target (the temporary goes in the target's
    /// folder) and keeps the link.
    @Test func inPlaceThroughALinkReplacesItsTarget() throws {
        let models = scratch.appendingPathComponent("models")
        try FileManager.default.createDirectory(at: models, withIntermediateDirectories: true)
        let target = models.appendingPathComponent("real.h5").path
        try FileManager.default.copyItem(atPath: Paths.fixture("rescnn_k2.h5"), toPath: target)
        try link("latest.h5", to: "models/real.h5")
        let result = try gmtool(["prune", path("latest.h5"), "--beta", "0.05", "-o", path("latest.h5"), "--in-place"])
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: path("latest.h5")) == "models/real.h5")
        #expect(try Checkpoint.open(target).statistics().hasMasks)
        #expect(try temporaries(in: scratch).isEmpty && temporaries(in: models).isEmpty)
    }

    /// The output-is-the-input checks see through links, both ways.
    @Test func anOutputThatIsTheInputThroughALinkIsRefused() throws {
        try FileManager.default.copyItem(atPath: Paths.fixture("rescnn_k2.h5"), toPath: path("real.h5"))
        try link("latest.h5", to: "real.h5")
        let before = FileManager.default.contents(atPath: path("real.h5"))
        let export = try gmtool(["export", path("latest.h5"), "-o", path("real.h5")])
        #expect(export.status != 0)
        #expect(export.stderr.contains("the output would overwrite the model"))
        let prune = try gmtool(["prune", path("real.h5"), "--beta", "0.05", "-o", path("latest.h5")])
        #expect(prune.status != 0)
        #expect(prune.stderr.contains("the output is the input file; add --in-place to replace it"))
        #expect(FileManager.default.contents(atPath: path("real.h5")) == before)
    }

    @Test func anOutputLinkToNothingIsRefused() throws {
        try link("dangling.h5", to: "nowhere/model.h5")
        let result = try gmtool(["prune", Paths.fixture("rescnn_k2.h5"), "--beta", "0.05", "-o", path("dangling.h5")])
        #expect(result.status == 1)
        #expect(result.stderr == "gmtool: error: \(path("dangling.h5")): is a symbolic link that cannot be followed (No such file or directory)\n")
    }

    @Test func anOutputThatIsAFolderIsRefused() throws {
        try FileManager.default.createDirectory(atPath: path("taken.h5"), withIntermediateDirectories: true)
        let result = try gmtool(["export", Paths.fixture("rescnn_k2.h5"), "-o", path("taken.h5")])
        #expect(result.status == 1)
        #expect(result.stderr == "gmtool: error: \(path("taken.h5")): is a folder, not a file\n")
    }
}

/// Kills gmtool while it writes and checks that nothing partial or temporary survives.
@Suite struct CrashSafetyTests {
    let scratch: URL
    init() throws {
        scratch = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-crash-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
    }
    func path(_ name: String) -> String { scratch.appendingPathComponent(name).path }

    /// gmtool started with every signal at its default action (a test runner may ignore SIGINT, and
    /// gmtool, like any tool, leaves an ignored SIGINT ignored), output to /dev/null.
    final class Child {
        let pid: pid_t
        /// `waitpid`'s status once the child has ended.
        private(set) var status: Int32?

        init(_ arguments: [String]) throws {
            var attributes = posix_spawnattr_t()
            posix_spawnattr_init(&attributes)
            defer { posix_spawnattr_destroy(&attributes) }
            var all = sigset_t()
            sigfillset(&all)
            posix_spawnattr_setsigdefault(&attributes, &all)
            var none = sigset_t()
            sigemptyset(&none)
            posix_spawnattr_setsigmask(&attributes, &none)
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
            let argv = ([Paths.binary.path] + arguments).map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            var pid: pid_t = 0
            let result = posix_spawn(&pid, Paths.binary.path, &actions, &attributes, argv, environ)
            guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
            self.pid = pid
        }

        var isRunning: Bool {
            guard status == nil else { return false }
            var value: Int32 = 0
            if waitpid(pid, &value, WNOHANG) == pid { status = value }
            return status == nil
        }

        func wait() {
            var value: Int32 = 0
            while status == nil {
                if waitpid(pid, &value, 0) == pid { status = value } else if errno != EINTR { return }
            }
        }

        /// The exit status, or nil when a signal ended the child.
        var exitStatus: Int32? { status.flatMap { $0 & 0x7F == 0 ? ($0 >> 8) & 0xFF : nil } }
    }

    /// Waits until `process` has a temporary for `output`; false when it ended first.
    func awaitTemporary(of process: Child, for output: String) throws -> Bool {
        let url = URL(fileURLWithPath: output)
        let prefix = ".\(url.lastPathComponent).gmtool-\(process.pid)-"
        while process.isRunning {
            if try temporaries(in: url.deletingLastPathComponent()).contains(where: { $0.hasPrefix(prefix) }) { return true }
            usleep(200)
        }
        return false
    }

    /// Runs `arguments` and kills it with SIGINT and SIGKILL: when its temporary for `output`
    /// appears (once `output` exists, with `skipWrites`), and at seeded random moments within
    /// the run's duration. After every kill `output` is absent or passes `check`; SIGINT leaves no temporary
    /// (nor an archive's extraction folder); a last, complete run removes what SIGKILL left.
    func killRepeatedly(_ arguments: [String], output: String, skipWrites: Bool = false, seed: UInt64,
                        check: (String) throws -> Void) throws {
        let started = Date()
        let full = try Child(arguments)
        full.wait()
        #expect(full.exitStatus == 0)
        let duration = Date().timeIntervalSince(started)
        try FileManager.default.removeItem(atPath: output)

        var state = seed
        func random() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53)
        }
        var killed: [pid_t] = []
        var interrupted = 0
        for signal in [SIGINT, SIGKILL] {
            for moment in 0..<4 {
                if FileManager.default.fileExists(atPath: output) { try FileManager.default.removeItem(atPath: output) }
                let process = try Child(arguments)
                if moment == 0 {
                    // The write itself: wait for the temporary (of the second epoch, for train).
                    while skipWrites && !FileManager.default.fileExists(atPath: output) && process.isRunning { usleep(200) }
                    _ = try awaitTemporary(of: process, for: output)
                } else {
                    usleep(useconds_t(random() * duration * 1_000_000))
                }
                kill(process.pid, signal)
                process.wait()
                killed.append(process.pid)
                let reason = "\(arguments[0]) signal \(signal) moment \(moment)"
                if let status = process.exitStatus {
                    // Finished first (0) or removed its temporaries and exited with 128 + SIGINT.
                    #expect(status == 0 || signal == SIGINT && status == 130, "\(reason)")
                    if status == 130 { interrupted += 1 }
                }
                if FileManager.default.fileExists(atPath: output) { try check(output) }
                if signal == SIGINT {
                    #expect(try temporaries(in: scratch).isEmpty, "\(reason)")
                    #expect(try scratchFolders(of: process.pid).isEmpty, "\(reason)")
                }
            }
        }
        #expect(interrupted > 0, "SIGINT during the write exits with 130")
        let last = try Child(arguments)
        last.wait()
        #expect(last.exitStatus == 0)
        try check(output)
        #expect(try temporaries(in: scratch).isEmpty, "the next run removes what SIGKILL left")
        for pid in killed { #expect(try scratchFolders(of: pid).isEmpty, "the next run removes extraction folders of dead processes") }
    }

    /// Every weight and mask of a written checkpoint reads back.
    func loads(_ file: String) throws {
        let checkpoint = try Checkpoint.open(file)
        for weight in checkpoint.weights {
            _ = try checkpoint.read(weight)
            _ = try checkpoint.mask(for: weight)
        }
    }

    @Test(arguments: [("mobilenet_k2.h5", "out.h5", UInt64(1)), ("rescnn_k3.keras", "out.keras", UInt64(2))])
    func pruneKilledWhileWriting(input: String, output: String, seed: UInt64) throws {
        try killRepeatedly(["prune", Paths.fixture(input), "--beta", "0.05", "-o", path(output)], output: path(output), seed: seed) { file in
            try loads(file)
            #expect(try Checkpoint.open(file).statistics().hasMasks)
        }
    }

    @Test func exportKilledWhileWriting() throws {
        try killRepeatedly(["export", Paths.fixture("mobilenet_k2.h5"), "-o", path("sparse.h5")], output: path("sparse.h5"), seed: 3) { file in
            try loads(file)
            #expect(try Checkpoint.open(file).layout == .sparseExport)
        }
    }

    /// Killed while writing epoch 2, the output is still epoch 1's complete checkpoint. (Dense and
    /// 16 images: the write is what matters, and a debug build trains slowly.)
    @Test func trainKilledWhileWritingAnEpoch() throws {
        let data = scratch.appendingPathComponent("cifar")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try writeTinyCIFAR(in: data, imagesPerBatch: 4)
        let output = path("trained.h5")
        try killRepeatedly(["train", Paths.fixture("rescnn_k2.h5"), "--data", data.path, "--epochs", "2", "--batch-size", "16",
                            "-o", output], output: output, skipWrites: true, seed: 4) { file in
            try loads(file)
            let epochs = try Checkpoint.open(file).extraAttribute(group: "/gmtool_training", "completed_epochs")
            #expect(epochs == "1" || epochs == "2")
        }
    }

    /// `ulimit -f` makes a write fail with EFBIG (gmtool ignores SIGXFSZ): one line, no output, no
    /// temporary, the input untouched. 40 KB is less than the input, so copying it fails; for an
    /// archive, a limit just under the written archive lets its weights through and stops the zip.
    @Test func aWriteThatRunsOutOfSpaceIsOneLineAndLeavesNothing() throws {
        let complete = path("complete.keras")
        #expect(try gmtool(["prune", Paths.fixture("rescnn_k3.keras"), "--beta", "0.05", "-o", complete]).status == 0)
        let archiveKB = try #require(try FileManager.default.attributesOfItem(atPath: complete)[.size] as? Int) / 1024
        try FileManager.default.removeItem(atPath: complete)
        for (name, kilobytes) in [("rescnn_k2.h5", 40), ("rescnn_k3.keras", archiveKB - 2)] {
            let input = path(name), output = path("out-" + name)
            try FileManager.default.copyItem(atPath: Paths.fixture(name), toPath: input)
            let before = FileManager.default.contents(atPath: input)
            let result = try limited(kilobytes, ["prune", input, "--beta", "0.05", "-o", output])
            #expect(result.status == 1)
            #expect(result.stdout.isEmpty)
            #expect(result.stderr == "gmtool: error: \(output): cannot be written (File too large)\n")
            #expect(!FileManager.default.fileExists(atPath: output))
            #expect(try temporaries(in: scratch).isEmpty)
            #expect(FileManager.default.contents(atPath: input) == before)
        }
    }

    /// When libhdf5 itself hits the limit, the output and temporary are gone too and the message is
    /// the same one line (libhdf5's file driver names the system's reason).
    @Test func aFullDiskInsideLibhdf5LeavesNothing() throws {
        let input = path("model.h5"), output = path("sparse.h5")
        try FileManager.default.copyItem(atPath: Paths.fixture("rescnn_k2.h5"), toPath: input)
        let before = FileManager.default.contents(atPath: input)
        let result = try limited(16, ["export", input, "-o", output])
        #expect(!FileManager.default.fileExists(atPath: output))
        #expect(try temporaries(in: scratch).isEmpty)
        #expect(FileManager.default.contents(atPath: input) == before)
        #expect(result.status == 1)
        #expect(result.stderr == "gmtool: error: \(output): cannot be written (File too large)\n")
    }

    /// gmtool under `ulimit -f` (bash counts kilobytes; POSIX sh would count 512-byte blocks).
    func limited(_ kilobytes: Int, _ arguments: [String]) throws -> CommandResult {
        try run(URL(fileURLWithPath: "/bin/bash"), ["-c", "ulimit -f \(kilobytes) && exec \"$0\" \"$@\"", Paths.binary.path] + arguments)
    }
}
