import Foundation
import HDF5
import KerasCheckpoint
import Testing

/// `train --prune-gradients-from DIR`: the run stops (exit 75) at each pruning epoch whose
/// gradient file is missing, names the commands that make it, and, resumed with the file those
/// commands wrote, ends with exactly the checkpoint of a run that computed its own gradients.
@Suite struct TrainGradientFilesTests {
    let folder: URL
    init() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("gmtool-train-grads-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("grads"), withIntermediateDirectories: true)
        try writeTinyCIFAR(in: folder)  // 4 x 20 training images, 20 validation images
    }
    func path(_ name: String) -> String { folder.appendingPathComponent(name).path }

    /// Two pruning epochs; --prune-images 12 of the 20 validation images, so the printed command
    /// must carry --limit.
    func arguments(output: String) -> [String] {
        ["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "2", "--batch-size", "16", "--lr", "0.05",
         "--beta", "0.05", "--gamma", "1", "--delta", "1", "--prune-images", "12", "--quiet", "-o", output]
    }

    /// The commands between backticks in the pause line, as argument lists without "gmtool".
    func commands(in line: String) -> [[String]] {
        line.split(separator: "`", omittingEmptySubsequences: false).enumerated().filter { $0.offset % 2 == 1 }.map { part in
            Array(part.element.split(separator: " ").map(String.init).dropFirst())
        }
    }

    @Test func pausedRunResumedWithGradientFilesEqualsTheRunThatComputedThem() throws {
        let straight = try gmtool(arguments(output: path("straight.h5")))
        #expect(straight.status == 0, "\(straight.stderr)")

        let grads = path("grads")
        let paused = arguments(output: path("paused.h5")) + ["--prune-gradients-from", grads]
        // Epoch 1: the file is missing, so the run saves epoch 1 trained, not pruned, and stops.
        let first = try gmtool(paused)
        #expect(first.status == 75, "\(first.stderr)")
        let expected = grads + "/grads-epoch-1.h5"
        let line = try #require(first.stderr.split(separator: "\n").last.map(String.init))
        #expect(line.hasPrefix("gmtool: \(path("paused.h5")): saved with epoch 1 trained and not yet pruned; its pruning step reads \(expected), which does not exist."), "\(line)")
        #expect(first.stderr.split(separator: "\n").filter { $0.hasPrefix("gmtool:") }.count == 1)
        let printed = commands(in: line)
        #expect(printed.count == 3, "\(line)")  // grad; grad --shard; merge
        #expect(!line.contains("'"), "the scratch paths need no quoting, so the words split at spaces")
        let single = printed[0]
        #expect(single == ["grad", path("paused.h5"), "--data", folder.path, "--split", "validation", "--scale", "unit",
                           "--batch-size", "200", "--limit", "12", "-o", expected])
        // Resuming without the file pauses again at the same point, the checkpoint unchanged but
        // for the time spent.
        #expect(try gmtool(paused + ["--resume"]).status == 75)
        // Epoch 1's file by the single command; the resumed run prunes with it, trains epoch 2
        // and stops for epoch 2's file.
        let made = try gmtool(single)
        #expect(made.status == 0, "\(made.stderr)")
        let second = try gmtool(paused + ["--resume"])
        #expect(second.status == 75, "\(second.stderr)")
        #expect(second.stderr.contains("pruning after epoch 1 with the gradients in \(expected)"))
        let expected2 = grads + "/grads-epoch-2.h5"
        let printed2 = commands(in: try #require(second.stderr.split(separator: "\n").last.map(String.init)))
        // A file taken on other weights (the finished run's) is refused with one line.
        var other = printed2[0]
        other[1] = path("straight.h5")
        #expect(try gmtool(other).status == 0)
        let refused = try gmtool(paused + ["--resume"])
        #expect(refused.status == 1)
        #expect(refused.stderr.split(separator: "\n").last?.hasPrefix("gmtool: error: \(expected2): was taken on other weights (weights digest ") == true, "\(refused.stderr)")
        #expect(refused.stderr.split(separator: "\n").filter { $0.hasPrefix("gmtool:") }.count == 1)
        // A file over other images is refused too.
        var fewer = printed2[0]
        fewer[fewer.firstIndex(of: "12")!] = "11"
        #expect(try gmtool(fewer).status == 0)
        let refusedImages = try gmtool(paused + ["--resume"])
        #expect(refusedImages.status == 1)
        #expect(refusedImages.stderr.split(separator: "\n").last == "gmtool: error: \(expected2): holds dC/dw over 11 images; the pruning step after epoch 2 takes it over 12 validation images")
        // And a file over as many images of other data (the training split's).
        var otherImages = printed2[0]
        otherImages[otherImages.firstIndex(of: "validation")!] = "train"
        #expect(try gmtool(otherImages).status == 0)
        let refusedData = try gmtool(paused + ["--resume"])
        #expect(refusedData.status == 1)
        let dataLine = try #require(refusedData.stderr.split(separator: "\n").last.map(String.init))
        #expect(dataLine.hasPrefix("gmtool: error: \(expected2): was taken on other images (data_batch_1.bin:12 images:"), "\(dataLine)")
        #expect(dataLine.contains("the pruning step after epoch 2 takes dC/dw over data_batch_5.bin:12 images:"), "\(dataLine)")
        // Epoch 2's file as one shard and its merge, by the printed commands.
        try FileManager.default.removeItem(atPath: expected2)
        var shard = printed2[1]
        shard[shard.firstIndex(of: "K/N")!] = "0/1"
        shard[shard.firstIndex(of: "shard-K.h5")!] = path("shard-0.h5")
        #expect(try gmtool(shard).status == 0)
        var merge = printed2[2]
        merge[merge.firstIndex(of: "shard-*.h5")!] = path("shard-0.h5")
        #expect(merge == ["merge", path("shard-0.h5"), "-o", expected2])
        #expect(try gmtool(merge).status == 0)
        let done = try gmtool(paused + ["--resume"])
        #expect(done.status == 0, "\(done.stderr)")

        // Every dataset (weights, masks, optimizer slots) bit for bit, every attribute equal;
        // only the log's timings differ.
        let a = try HDF5File.open(path("straight.h5")), b = try HDF5File.open(path("paused.h5"))
        try expectSame(a.root, b.root)
        let straightLog = try String(contentsOfFile: path("straight.h5.log.csv"), encoding: .utf8)
        let pausedLog = try String(contentsOfFile: path("paused.h5.log.csv"), encoding: .utf8)
        let withoutTimings = { (csv: String) in csv.split(separator: "\n").map { $0.split(separator: ",").dropLast(2).joined(separator: ",") } }
        #expect(withoutTimings(straightLog) == withoutTimings(pausedLog))
        #expect(withoutTimings(straightLog).count == 3)
    }

    /// Groups, datasets and attributes of two files are the same, recursively; the training
    /// history's timings (seconds, images per second) are left out.
    func expectSame(_ a: HDF5Group, _ b: HDF5Group) throws {
        #expect(try a.childNames() == b.childNames(), "\(a.path)")
        try expectSameAttributes(a, b)
        for name in try a.childNames() {
            switch a.kind(of: name) {
            case .group: try expectSame(try a.group(name), try b.group(name))
            case .dataset:
                let x = try a.dataset(name), y = try b.dataset(name)
                #expect(x.shape == y.shape)
                // Every stored type (float32, uint8) converts to float64 exactly and one to one.
                #expect(try x.read(as: Double.self).map(\.bitPattern) == y.read(as: Double.self).map(\.bitPattern), "\(a.path)/\(name)")
                try expectSameAttributes(x, y)
            default: Issue.record("\(a.path)/\(name): neither group nor dataset")
            }
        }
    }

    func expectSameAttributes(_ a: HDF5Object, _ b: HDF5Object) throws {
        #expect(try a.attributeNames == b.attributeNames, "\(a.path)")
        for name in try a.attributeNames {
            let x = try a.attribute(name), y = try b.attribute(name)
            let text = { (attribute: HDF5Attribute) throws -> String in
                if case .string = attribute.elementType { return try attribute.readStrings().joined(separator: "\u{0}") }
                return try attribute.read(as: Double.self).map { String($0.bitPattern) }.joined(separator: ",")
            }
            var left = try text(x), right = try text(y)
            if name == "history" {
                let timings = #""(seconds|train_images_per_second)":[0-9.e+-]+"#
                left = left.replacingOccurrences(of: timings, with: "", options: .regularExpression)
                right = right.replacingOccurrences(of: timings, with: "", options: .regularExpression)
            }
            #expect(left == right, "\(a.path)@\(name)")
        }
    }

    @Test(arguments: [
        (["--method", "gmp", "--final-sparsity", "0.5", "--begin-epoch", "1", "--end-epoch", "1"], "is used only with --method paper"),
        ([], "is used only with --beta and --gamma (without --beta the run is dense)"),
        (["--beta", "0.05"], "is used only with a finite --gamma"),
    ])
    func meaninglessCombinationsAreRefused(extra: [String], fragment: String) throws {
        let result = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "1", "-o", path("x.h5"),
                                 "--prune-gradients-from", path("grads")] + extra)
        #expect(result.status == 64)
        #expect(result.stderr.hasPrefix("gmtool: error: --prune-gradients-from \(path("grads")) \(fragment)"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: path("x.h5")))
    }

    @Test func aMissingFolderIsRefusedBeforeTraining() throws {
        let result = try gmtool(["train", Paths.fixture("rescnn_k3.h5"), "--data", folder.path, "--epochs", "1", "--beta", "0.05",
                                 "--gamma", "1", "-o", path("x.h5"), "--prune-gradients-from", path("nowhere")])
        #expect(result.status == 1)
        #expect(result.stderr == "gmtool: error: \(path("nowhere")): no such folder (--prune-gradients-from)\n")
        #expect(!FileManager.default.fileExists(atPath: path("x.h5")))
    }
}
