import Foundation

/// A CIFAR-10 split held in memory for training: random-order batches, with the standard CIFAR
/// augmentation (4-pixel reflect padding + random 32x32 crop, random horizontal flip).
public struct CIFARTrainingSet: TrainingImageSource, Sendable {
    public let count: Int
    private let pixels: [UInt8]   // count x 3072, channel planes as in the file
    public let labels: [Int32]
    public let scaling: InputScaling
    private let table: [[Float]]
    public let files: [String]

    /// Reads every record of `dataset`'s files (already validated by CIFARDataset).
    public init(_ dataset: CIFARDataset) throws {
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        pixels.reserveCapacity(dataset.count * 3072)
        let recordBytes = dataset.variant.recordBytes
        for (file, records) in dataset.files {
            guard let data = FileManager.default.contents(atPath: file), data.count >= records * recordBytes else {
                throw DataError(file: file, problem: "cannot be read")
            }
            data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) in
                for r in 0..<records {
                    let record = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self) + r * recordBytes
                    labels.append(Int32(record[dataset.variant.labelOffset]))
                    pixels.append(contentsOf: UnsafeBufferPointer(start: record + dataset.variant.labelBytes, count: 3072))
                }
            }
        }
        self.init(pixels: pixels, labels: labels, scaling: dataset.scaling, files: dataset.files.map(\.path))
    }

    /// Images already in memory: `pixels` holds each image's 3072 bytes as channel planes.
    public init(pixels: [UInt8], labels: [Int32], scaling: InputScaling, files: [String]) {
        precondition(pixels.count == labels.count * 3072)
        self.pixels = pixels
        self.labels = labels
        count = labels.count
        self.scaling = scaling
        table = scaling.table(channels: 3)
        self.files = files
    }

    public var sourceFiles: [String] { files }
    public var imageFloats: Int { 3072 }

    /// Fills NHWC floats and labels for the images at `indices`. With `augment`, each image is
    /// cropped from its 4-pixel reflect-padded version at a random offset and flipped with
    /// probability 1/2, drawing from `random`.
    public func fill(indices: ArraySlice<Int>, images: UnsafeMutablePointer<Float>, labels out: UnsafeMutablePointer<Int32>,
                     augment: Bool, random: inout SplitMix64) {
        let channelOf = (0..<3).map { scaling.sourceChannel($0, of: 3) }
        pixels.withUnsafeBufferPointer { all in
        for (slot, index) in indices.enumerated() {
            out[slot] = labels[index]
            let (dx, dy, flip) = cropAndFlip(augment: augment, random: &random)
            let source = all.baseAddress! + index * 3072
            let destination = images + slot * 3072
            for y in 0..<32 {
                let sy = reflect(y + dy - 4)
                for x in 0..<32 {
                    let sx = reflect(x + dx - 4)
                    let tx = flip ? 31 - x : x
                    for c in 0..<3 {
                        destination[(y * 32 + tx) * 3 + c] = table[c][Int(source[channelOf[c] * 1024 + sy * 32 + sx])]
                    }
                }
            }
        }
        }
    }

    /// Reflection without repeating the edge (NumPy's and TensorFlow's "reflect").
    @inline(__always) private func reflect(_ i: Int) -> Int { i < 0 ? -i : (i > 31 ? 62 - i : i) }
}

/// One image's augmentation draws, in the order every training set takes them: the crop's x and
/// y offsets into the 4-pixel padded image (0...8; 4 is the centre, the image itself) and the flip.
/// Without `augment` nothing is drawn.
func cropAndFlip(augment: Bool, random: inout SplitMix64) -> (dx: Int, dy: Int, flip: Bool) {
    guard augment else { return (4, 4, false) }
    let dx = Int(random.next() % 9)
    let dy = Int(random.next() % 9)
    return (dx, dy, random.next() & 1 == 1)
}

/// SplitMix64: a small, fast, seedable generator; the same seed gives the same stream everywhere.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
