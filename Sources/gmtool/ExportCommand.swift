import ArgumentParser
import Foundation
import Engine
import KerasCheckpoint

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a sparse model file: pruned kernels as CSR (or bitmask) matrices.",
        discussion: """
            Every Conv2D, DepthwiseConv2D, SeparableConv2D and Dense kernel becomes a group in \
            anndata's csr_matrix encoding (data, indices, indptr; rows = output channels; int32 \
            indices), readable with h5py + scipy.sparse.csr_matrix, or a bitmask group (packed bits \
            + the stored values); without --csr or --format each kernel gets the smaller of the two. Biases, BatchNorm and the model \
            config are kept, so the file alone is a complete model: `gmtool eval` and `gmtool stats` \
            read it directly, `gmtool import` turns it back into a Keras checkpoint. Where the model \
            has gmtool masks, the stored entries are the mask's 1 bits.
            """
    )

    @OptionGroup var checkpoint: CheckpointOptions

    @Flag(name: .long, help: "CSR for every kernel (same as --format csr).")
    var csr = false

    @Option(name: .long, help: "Kernel encoding for every kernel: csr (anndata csr_matrix) or bitmask (packed bits + non-zero values). Default: the smaller of the two per kernel.")
    var format: Format?

    @Option(name: [.short, .long], help: "Output file.")
    var output: String

    @Flag(name: .long, help: "Store without HDF5 compression (default: deflate + shuffle).")
    var noCompression = false

    @Flag(name: .long, help: "Print JSON instead of a table.")
    var json = false

    enum Format: String, ExpressibleByArgument, CaseIterable { case csr, bitmask }

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if csr && format == .bitmask { throw ValidationError("--csr and --format bitmask contradict each other") }
        if samePath(output, checkpoint.model) {
            throw ValidationError("the output would overwrite the model")
        }
    }

    func run() throws {
        try checkOutput(output)
        let model = try checkpoint.open()
        let encoding: SparseEncoding? = csr || format == .csr ? .csr : format == .bitmask ? .bitmask : nil
        let start = Date()
        let reports = try model.exportSparse(to: output, encoding: encoding, compress: !noCompression)
        let seconds = Date().timeIntervalSince(start)
        // Sizes for the report only (0 if unknown): both files were just read and written.
        let inputBytes = fileSize(atPath: model.path) ?? 0
        let outputBytes = fileSize(atPath: output) ?? 0
        let dense = reports.reduce(0) { $0 + $1.denseBytes }
        let csrTotal = reports.reduce(0) { $0 + $1.csrBytes }
        let bitmaskTotal = reports.reduce(0) { $0 + $1.bitmaskBytes }
        let stored = reports.reduce(0) { $0 + $1.fileBytes }
        let summary = ExportSummary(model: model.path, output: output, encoding: encoding?.rawValue ?? "smaller per kernel", compressed: !noCompression,
                                    kernels: reports, denseKernelBytes: dense, csrBytes: csrTotal, bitmaskBytes: bitmaskTotal,
                                    storedKernelBytes: stored, inputFileBytes: inputBytes, outputFileBytes: outputBytes, seconds: seconds)
        // Asked for CSR everywhere: one line for the kernels where it is larger than dense.
        let tooDense = reports.filter { $0.csrBytes > $0.denseBytes }
        if encoding == .csr, !tooDense.isEmpty {
            let names = tooDense.prefix(5).map { "\($0.layer)/\($0.role)" }.joined(separator: ", ") + (tooDense.count > 5 ? " and \(tooDense.count - 5) more" : "")
            let bitmaskBytes = tooDense.reduce(0) { $0 + $1.bitmaskBytes }, csrBytes = tooDense.reduce(0) { $0 + $1.csrBytes }
            FileHandle.standardError.write(Data("warning: CSR is larger than dense for \(tooDense.count) of \(reports.count) kernels (\(names)): \(byteSize(csrBytes)) as CSR, \(byteSize(bitmaskBytes)) as bitmask; leave out --csr for the smaller encoding per kernel\n".utf8))
        }
        if json { try printJSON(summary); return }
        var table = TextTable(headers: ["layer", "weight", "params", "stored", "dense B", "csr B", "bitmask B", "encoding", "in file B", "ratio"],
                              rightAligned: [2, 3, 4, 5, 6, 8, 9])
        for r in reports {
            table.rows.append([r.layer, r.role, grouped(r.parameters), grouped(r.stored), grouped(r.denseBytes), grouped(r.csrBytes),
                               grouped(r.bitmaskBytes), r.encoding == SparseEncoding.bitmask.rawValue ? "bitmask" : "csr", grouped(r.fileBytes),
                               String(format: "%.2fx", Double(r.denseBytes) / Double(max(1, r.fileBytes)))])
        }
        print(table.render())
        print("")
        print("kernels:   \(byteSize(dense)) dense, \(byteSize(csrTotal)) as CSR, \(byteSize(bitmaskTotal)) as bitmask (before compression); \(byteSize(stored)) stored")
        if let encoding {
            print("smaller:   \(bitmaskTotal < csrTotal ? "bitmask" : "CSR") for this model (\(byteSize(min(bitmaskTotal, csrTotal))) vs \(byteSize(max(bitmaskTotal, csrTotal)))); --\(encoding == .csr ? "csr" : "format bitmask") was asked for")
        } else {
            let bitmaskKernels = reports.filter { $0.encoding == SparseEncoding.bitmask.rawValue }.count
            print("encoding:  the smaller per kernel: \(bitmaskKernels) bitmask, \(reports.count - bitmaskKernels) CSR")
        }
        print("files:     \(model.path) \(byteSize(inputBytes)) -> \(output) \(byteSize(outputBytes)) (\(sizeChange(from: inputBytes, to: outputBytes))), \(encoding.map { $0 == .csr ? "csr" : "bitmask" } ?? "smaller per kernel")\(noCompression ? "" : " + deflate/shuffle"), \(String(format: "%.2f", seconds)) s")
    }
}

struct ExportSummary: Encodable {
    var model: String
    var output: String
    var encoding: String
    var compressed: Bool
    var kernels: [SparseKernelReport]
    var denseKernelBytes: Int
    var csrBytes: Int
    var bitmaskBytes: Int
    var storedKernelBytes: Int
    var inputFileBytes: Int
    var outputFileBytes: Int
    var seconds: Double

    enum CodingKeys: String, CodingKey {
        case model, output, encoding, compressed, kernels, denseKernelBytes = "dense_kernel_bytes", csrBytes = "csr_bytes"
        case bitmaskBytes = "bitmask_bytes", storedKernelBytes = "stored_kernel_bytes", inputFileBytes = "input_file_bytes"
        case outputFileBytes = "output_file_bytes", seconds
    }
}

struct ImportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import",
        abstract: "Turn a sparse export back into a dense Keras checkpoint (weights and masks bit-identical).",
        discussion: "Writes the classic full-model .h5 (model_config + model_weights), which Keras 2 and Keras 3 load."
    )

    @Argument(help: "The sparse file written by `gmtool export`.")
    var model: String

    @Option(name: [.short, .long], help: "Output .h5 file.")
    var output: String

    func validate() throws {
        guard CommandChecks.enabled else { return }
        if samePath(output, model) {
            throw ValidationError("the output would overwrite the input")
        }
    }

    func run() throws {
        try checkOutput(output)
        let sparse = try Checkpoint.open(model)
        guard sparse.layout == .sparseExport else {
            throw CommandError("\(model): is not a gmtool sparse export (it is a \(sparse.layout.rawValue) checkpoint)")
        }
        try sparse.writeDenseModel(to: output)
        let statistics = try Checkpoint.open(output).statistics()
        print("wrote \(output): \(grouped(statistics.totalParameters)) parameters, \(grouped(statistics.nonzeroParameters)) non-zero\(statistics.hasMasks ? ", masks restored" : "")")
    }
}
