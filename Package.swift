// swift-tools-version: 6.0
import Foundation
import PackageDescription

/// The kernels are compiled for the CPU that builds them (AVX2/AVX-512 where present): gmtool is
/// built from source on the machine that runs it, and without this the per-element loops stay
/// scalar. No fast-math: the numbers do not change, only the vector width.
/// GMTOOL_PORTABLE=1 builds for baseline x86-64 / arm64 instead.
let kernelSettings: [SwiftSetting] =
    ProcessInfo.processInfo.environment["GMTOOL_PORTABLE"] == nil ? [.unsafeFlags(["-target-cpu", "native"])] : []
/// The same for the C kernels (`CKernels`).
let kernelCSettings: [CSetting] =
    ProcessInfo.processInfo.environment["GMTOOL_PORTABLE"] == nil ? [.unsafeFlags(["-march=native"])] : []

let package = Package(
    name: "gmtool",
    products: [
        .executable(name: "gmtool", targets: ["gmtool"]),
        .library(name: "KerasCheckpoint", targets: ["KerasCheckpoint"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // C shims: the only places that see the C libraries' headers.
        .systemLibrary(
            name: "CHDF5",
            pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]
        ),
        .systemLibrary(
            name: "CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        .systemLibrary(
            name: "CPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"])]
        ),
        .systemLibrary(
            name: "CJPEG",
            pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg62-turbo-dev"])]
        ),
        // PNG and JPEG decoding through libpng and libjpeg-turbo (C: both report errors by longjmp).
        .target(name: "CImageDecode", dependencies: ["CPNG", "CJPEG"]),
        // The registry of live temporaries and the signal handler that removes them (C: it must be
        // async-signal-safe).
        .target(name: "CTemporaries"),
        // Typed Swift layer over libhdf5.
        .target(name: "HDF5", dependencies: ["CHDF5"]),
        // Zip archives read in place (stored and deflated entries): .keras checkpoints and NumPy .npz.
        .target(name: "Zip", dependencies: ["CZlib"]),
        // Keras checkpoints: layouts, model_config, weights, masks, atomic writes.
        .target(name: "KerasCheckpoint", dependencies: ["HDF5", "Zip", "CZlib", "CTemporaries"]),
        // The model in memory (class Model): every weight's values, mask and optimizer slots,
        // saved through the checkpoint writer.
        .target(name: "ModelState", dependencies: ["KerasCheckpoint"]),
        // Kernels that need the CPU's shuffle instructions (C: Swift's SIMD types do not reach them).
        .target(name: "CKernels", cSettings: kernelCSettings),
        // Forward/backward kernels over raw Float buffers (NHWC), BLAS for the GEMMs.
        .target(name: "NeuralKernels", dependencies: ["CBLAS", "CKernels"], swiftSettings: kernelSettings),
        // Runs a model: its Keras graph as kernels; forward, backward, evaluation, gradients (class Network).
        .target(name: "Engine", dependencies: ["ModelState", "KerasCheckpoint", "NeuralKernels", "CIFAR"]),
        // The paper's rule, layer selection, target sparsity.
        .target(name: "Pruning", dependencies: ["ModelState", "KerasCheckpoint"], swiftSettings: kernelSettings),
        // Training with the paper's pruning schedule: optimizers, the epoch loop, resumable state.
        .target(name: "Training", dependencies: ["Engine", "CIFAR", "Pruning", "ModelState", "KerasCheckpoint"]),
        // Plain SVG charts (line, heatmap, stacked bars), written as text.
        .target(name: "Charts"),
        // The pruning step applied many times to copies of one model in memory: sweeps over beta
        // and gamma, per-layer sensitivity, their CSV/JSON/SVG/HTML reports.
        .target(name: "Analysis", dependencies: ["Engine", "Pruning", "ModelState", "KerasCheckpoint", "CIFAR", "Charts"]),
        // The data side: the image-source protocols the engine consumes, and CIFAR-10 binary
        // batches streamed as scaled NHWC floats. Depends on nothing of the engine's but the
        // kernels' bilinear resize, which image folders and the Resizing layer share.
        .target(name: "CIFAR", dependencies: ["Zip", "CImageDecode", "NeuralKernels"]),
        // The command-line tool.
        .executableTarget(
            name: "gmtool",
            dependencies: [
                "HDF5",
                "KerasCheckpoint",
                "ModelState",
                "Engine",
                "CIFAR",
                "Pruning",
                "Training",
                "Analysis",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Kernel micro-benchmarks for benchmarks/bench.py.
        .executableTarget(name: "gmtool-bench", dependencies: ["KerasCheckpoint", "ModelState", "Engine", "Pruning"]),
        // Test support: HDF5 files that declare more than they store, written through libhdf5 directly.
        .target(name: "MalformedFiles", dependencies: ["HDF5", "CHDF5"], path: "Tests/MalformedFiles"),
        .testTarget(name: "HDF5Tests", dependencies: ["HDF5", "MalformedFiles"]),
        .testTarget(name: "KerasCheckpointTests", dependencies: ["KerasCheckpoint", "Engine", "HDF5", "MalformedFiles", "CZlib"]),
        .testTarget(name: "NeuralKernelsTests", dependencies: ["NeuralKernels"]),
        .testTarget(name: "EngineTests", dependencies: ["Engine", "ModelState", "KerasCheckpoint", "HDF5", "CIFAR"]),
        .testTarget(name: "PruningTests", dependencies: ["Pruning", "Engine", "ModelState", "KerasCheckpoint"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Engine", "ModelState", "KerasCheckpoint", "HDF5", "CIFAR"]),
        .testTarget(name: "DataTests", dependencies: ["CIFAR"]),
        .testTarget(name: "ChartsTests", dependencies: ["Charts"], exclude: ["golden"]),
        .testTarget(name: "AnalysisTests", dependencies: ["Analysis", "Engine", "Pruning", "ModelState", "KerasCheckpoint", "CIFAR"]),
        .testTarget(name: "CLITests", dependencies: ["gmtool", "Engine", "KerasCheckpoint", "ModelState", "MalformedFiles"]),
    ]
)
