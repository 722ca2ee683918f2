import Foundation
import KerasCheckpoint
import Testing
@testable import Engine

/// The layer registry against what docs/ARCHITECTURE.md ("Adding a layer") says: each family
/// file's table row lists exactly the classes that file's family declares and refuses, the file
/// exists and declares the family, and the families together are `LayerRegistry.standard`.
@Suite struct LayerRegistryTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    let families: [String: any LayerFamily.Type] = [
        "Convolutions": Convolutions.self, "Depthwise": Depthwise.self, "Normalization": Normalization.self,
        "Activations": Activations.self, "Pooling": Pooling.self, "Reshaping": Reshaping.self, "Merging": Merging.self,
        "Preprocessing": Preprocessing.self,
    ]

    /// The table's rows: family name -> (classes, refused).
    func documentedFamilies() throws -> [String: (classes: Set<String>, refused: Set<String>)] {
        let text = try String(contentsOf: Self.repository.appendingPathComponent("docs/ARCHITECTURE.md"), encoding: .utf8)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let start = try #require(lines.firstIndex(of: "| file | classes | refused |"))
        var result: [String: (Set<String>, Set<String>)] = [:]
        for line in lines[(start + 2)...].prefix(while: { $0.hasPrefix("|") }) {
            let cells = line.split(separator: "|", omittingEmptySubsequences: false).dropFirst().dropLast()
                .map { $0.trimmingCharacters(in: .whitespaces) }
            #expect(cells.count == 3, "\(line)")
            guard cells.count == 3, cells[0].hasPrefix("`"), cells[0].hasSuffix(".swift`") else { continue }
            let names = { (cell: String) in Set(cell.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }) }
            result[String(cells[0].dropFirst().dropLast(".swift`".count))] = (names(cells[1]), names(cells[2]))
        }
        return result
    }

    @Test func theDocumentedTableIsTheRegistry() throws {
        let documented = try documentedFamilies()
        #expect(Set(documented.keys) == Set(families.keys))
        for (name, family) in families {
            #expect(documented[name]?.classes == Set(family.layers.keys), "\(name)")
            #expect(documented[name]?.refused == Set(family.refused.keys), "\(name)")
            let source = try String(contentsOf: Self.repository.appendingPathComponent("Sources/Engine/Layers/\(name).swift"), encoding: .utf8)
            #expect(source.contains("enum \(name): LayerFamily {"), "\(name).swift does not declare its family")
        }
        let registry = LayerRegistry.standard
        #expect(Set(registry.definitions.keys) == Set(families.values.flatMap { $0.layers.keys }))
        #expect(Set(registry.refusals.keys) == Set(families.values.flatMap { $0.refused.keys }))
    }

    /// The registry is the catalog the checkpoint reader uses: a declared class's weights and
    /// prunable roles, nothing for an undeclared or refused one.
    @Test func theRegistryIsTheCatalog() throws {
        func layer(_ className: String, _ config: String) throws -> LayerConfig {
            let json = #"{"class_name": "Sequential", "config": {"name": "m", "layers": [{"class_name": "\#(className)", "config": \#(config)}]}}"#
            return try #require(try ModelConfig(json: json, source: "test").layers.last)
        }
        let registry = LayerRegistry.standard
        let conv = try layer("Conv2D", #"{"name": "c", "filters": 8, "kernel_size": [3, 3], "use_bias": false}"#)
        #expect(registry.weightSpecs(for: conv) == [WeightSpec(role: .kernel, shape: [3, 3, nil, 8])])
        #expect(registry.prunableRoles(className: "Conv2D") == [.kernel])
        let separable = try layer("SeparableConv2D", #"{"name": "s", "filters": 4, "kernel_size": [3], "depth_multiplier": 2}"#)
        #expect(registry.weightSpecs(for: separable) == [WeightSpec(role: .depthwiseKernel, shape: [3, 3, nil, 2]),
                                                         WeightSpec(role: .pointwiseKernel, shape: [1, 1, nil, 4]),
                                                         WeightSpec(role: .bias, shape: [4])])
        #expect(registry.weightSpecs(for: try layer("ReLU", #"{"name": "r"}"#)) == [])
        // PReLU's alpha: a spec of no fixed rank (Keras 2's config records only shared_axes),
        // trainable and never pruned.
        #expect(registry.weightSpecs(for: try layer("PReLU", #"{"name": "p", "shared_axes": [1, 2]}"#)) == [WeightSpec(role: .alpha, shape: nil)])
        #expect(registry.prunableRoles(className: "PReLU").isEmpty && WeightRole.alpha.isTrainable)
        // LayerNormalization: gamma then beta, each dropped by scale=False / center=False.
        #expect(registry.weightSpecs(for: try layer("LayerNormalization", #"{"name": "n"}"#)) == [WeightSpec(role: .gamma, shape: [nil]),
                                                                                                   WeightSpec(role: .beta, shape: [nil])])
        #expect(registry.weightSpecs(for: try layer("LayerNormalization", #"{"name": "n", "scale": false}"#)) == [WeightSpec(role: .beta, shape: [nil])])
        #expect(registry.weightSpecs(for: try layer("LayerNormalization", #"{"name": "n", "center": false}"#)) == [WeightSpec(role: .gamma, shape: [nil])])
        #expect(registry.weightSpecs(for: try layer("Resizing", #"{"name": "z", "height": 8, "width": 8}"#)) == [])
        // Conv1D's kernel is 3-D (k, in / groups, out); Conv2DTranspose's is (kh, kw, filters, in).
        let conv1D = try layer("Conv1D", #"{"name": "c", "filters": 8, "kernel_size": [3], "groups": 2}"#)
        #expect(registry.weightSpecs(for: conv1D) == [WeightSpec(role: .kernel, shape: [3, nil, 8]), WeightSpec(role: .bias, shape: [8])])
        #expect(registry.prunableRoles(className: "Conv1D") == [.kernel])
        let transposed = try layer("Conv2DTranspose", #"{"name": "t", "filters": 6, "kernel_size": [2, 3], "use_bias": false}"#)
        #expect(registry.weightSpecs(for: transposed) == [WeightSpec(role: .kernel, shape: [2, 3, 6, nil])])
        #expect(registry.prunableRoles(className: "Conv2DTranspose") == [.kernel])
        for unknown in ["Conv3D", "Conv1DTranspose", "LocallyConnected2D", "Lambda"] {
            #expect(registry.weightSpecs(for: try layer(unknown, #"{"name": "u", "filters": 4, "kernel_size": [3]}"#)) == nil, "\(unknown)")
            #expect(registry.prunableRoles(className: unknown).isEmpty)
        }
    }
}
