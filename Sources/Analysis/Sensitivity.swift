import Charts
import Foundation
import KerasCheckpoint
import Pruning

/// Marks `sensitivity.json` as gmtool's, so a later analysis may replace the folder.
public let sensitivityFormatName = "gmtool-sensitivity"

/// One kernel pruned alone to one level.
public struct SensitivityRow: Encodable, Sendable {
    /// `layer/role`, Distiller's `parameter` column.
    public var parameter: String
    public var layer: String
    /// The sparsity asked for.
    public var level: Double
    /// The kernel's sparsity reached (ties at the threshold can add a few weights).
    public var sparsity: Double
    public var beta: Float
    public var top1: Double
    public var top5: Double
    public var loss: Double
}

extension PruningExplorer {
    /// Each target kernel pruned alone to each level (the beta that reaches the level in that
    /// kernel, with `gamma`: inf is magnitude within the layer), on the original model every
    /// time. Levels a kernel cannot reach with a finite gamma are returned in `unreachable`.
    public func sensitivity(levels: [Double], gamma: Float, progress: (Int, Int) -> Void = { _, _ in }) throws
        -> (rows: [SensitivityRow], unreachable: [(parameter: String, level: Double)]) {
        var rows: [SensitivityRow] = [], unreachable: [(String, Double)] = []
        let total = targets.count * levels.count
        for target in targets {
            let parameter = "\(target.weight.layerName)/\(target.weight.role)"
            for level in levels {
                working.restore(from: original)
                var alone = target
                alone.gamma = gamma
                alone.beta = 0
                do {
                    alone = try targetsForLayerSparsity(working, targets: [alone], gradients: gradients, layerTargets: [("*", level)])[0]
                } catch is PruningError {
                    unreachable.append((parameter, level))
                    progress(rows.count + unreachable.count, total)
                    continue
                }
                let (report, outcome) = try measure([alone])
                let kernel = report.kernels[0].result
                rows.append(SensitivityRow(parameter: parameter, layer: target.weight.layerName, level: level, sparsity: kernel.sparsity,
                                           beta: alone.beta, top1: outcome.top1, top5: outcome.top5, loss: outcome.loss))
                progress(rows.count + unreachable.count, total)
            }
        }
        working.restore(from: original)
        return (rows, unreachable)
    }
}

/// Per kernel, the highest level such that it and every lower level keep top-1 within
/// `maxDrop` (a fraction) of `baseline`; kernels whose suggestion is 0 are left out. In the
/// order of the rows.
public func suggestedLayerTargets(_ rows: [SensitivityRow], baseline: Double, maxDrop: Double) -> [(layer: String, sparsity: Double)] {
    var order: [String] = [], byLayer: [String: [SensitivityRow]] = [:]
    for row in rows {
        if byLayer[row.layer] == nil { order.append(row.layer) }
        byLayer[row.layer, default: []].append(row)
    }
    var result: [(String, Double)] = []
    for layer in order {
        var best = 0.0
        for row in byLayer[layer]!.sorted(by: { $0.level < $1.level }) {
            guard row.top1 >= baseline - maxDrop - 1e-12 else { break }
            best = row.level
        }
        if best > 0 { result.append((layer, best)) }
    }
    return result
}

/// A layer name as an fnmatch pattern that matches only itself.
public func literalPattern(_ name: String) -> String {
    var out = ""
    for character in name {
        if "*?[]\\".contains(character) { out.append("\\") }
        out.append(character)
    }
    return out
}

/// A finished sensitivity analysis.
public struct SensitivityResult: Encodable, Sendable {
    public var model: String
    public var gamma: Float
    public var evaluationData: [String]
    public var evaluationImages: Int
    public var baselineTop1: Double
    public var levels: [Double]
    public var rows: [SensitivityRow]
    public var unreachable: [String]
    public var maxDrop: Double
    public var suggested: [String]
    public var command: String?

    public init(model: String, gamma: Float, evaluationData: [String], evaluationImages: Int, baselineTop1: Double, levels: [Double],
                rows: [SensitivityRow], unreachable: [String], maxDrop: Double, suggested: [String], command: String?) {
        self.model = model
        self.gamma = gamma
        self.evaluationData = evaluationData
        self.evaluationImages = evaluationImages
        self.baselineTop1 = baselineTop1
        self.levels = levels
        self.rows = rows
        self.unreachable = unreachable
        self.maxDrop = maxDrop
        self.suggested = suggested
        self.command = command
    }

    enum CodingKeys: String, CodingKey {
        case format, model, gamma, gammaIsInfinite = "gamma_is_infinite", evaluationData = "evaluation_data"
        case evaluationImages = "evaluation_images", baselineTop1 = "baseline_top1", levels, rows, unreachable, maxDrop = "max_drop"
        case suggested = "suggested_layer_targets", command
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sensitivityFormatName, forKey: .format)
        try c.encode(model, forKey: .model)
        try encodeGamma(gamma, in: &c, value: .gamma, flag: .gammaIsInfinite)
        try c.encode(evaluationData, forKey: .evaluationData)
        try c.encode(evaluationImages, forKey: .evaluationImages)
        try c.encode(baselineTop1, forKey: .baselineTop1)
        try c.encode(levels, forKey: .levels)
        try c.encode(rows, forKey: .rows)
        try c.encode(unreachable, forKey: .unreachable)
        try c.encode(maxDrop, forKey: .maxDrop)
        try c.encode(suggested, forKey: .suggested)
        try c.encode(command, forKey: .command)
    }

    /// Distiller's sensitivity CSV: parameter,sparsity,top1,top5,loss, with top-1 and top-5 in
    /// percent as Distiller writes them and sparsity the level asked for.
    public var csvText: String {
        var lines = ["parameter,sparsity,top1,top5,loss"]
        // Percent rounded at 1e-9: a count over images times 100 (7.000000000000001 is 7).
        func percent(_ fraction: Double) -> String { csv((fraction * 100 * 1e9).rounded() / 1e9) }
        for row in rows { lines.append("\(row.parameter),\(csv(row.level)),\(percent(row.top1)),\(percent(row.top5)),\(csv(row.loss))") }
        return lines.joined(separator: "\n") + "\n"
    }

    public var chartSVG: String {
        var order: [String] = [], byParameter: [String: [SensitivityRow]] = [:]
        for row in rows {
            if byParameter[row.parameter] == nil { order.append(row.parameter) }
            byParameter[row.parameter, default: []].append(row)
        }
        return LineChart(title: "Top-1 with one layer pruned (\(gamma.isFinite ? "gamma \(thresholdText(gamma))" : "magnitude"))",
                         xLabel: "sparsity of the layer", yLabel: "top-1 accuracy",
                         series: order.map { name in ChartSeries(name: name, points: byParameter[name]!.map { ($0.level, $0.top1) }) },
                         references: [("unpruned", baselineTop1)]).svg()
    }

    public func files() throws -> [(name: String, data: Data)] {
        let chart = chartSVG
        let page = htmlPage(title: "gmtool sensitivity: \(model)", body: """
            <h1>Sensitivity of \(escapeXML(model))</h1>
            <p>Each prunable kernel pruned alone to each level (\(gamma.isFinite ? "gradient-aware, gamma \(thresholdText(gamma))" : "magnitude within the layer")), evaluated on \(escapeXML(evaluationData.joined(separator: ", "))) (\(evaluationImages) images). Unpruned top-1 \(String(format: "%.2f%%", baselineTop1 * 100)).</p>
            <figure>\(chart)</figure>
            <p>Suggested per-layer targets (every level up to it within \(String(format: "%.2f", maxDrop * 100)) points of the unpruned top-1):</p>
            <pre>\(escapeXML(command ?? "none: no layer can be pruned within the drop"))</pre>
            """)
        return [("sensitivity.json", try jsonData(self)), ("sensitivity.csv", Data(csvText.utf8)), ("sensitivity.svg", Data(chart.utf8)),
                ("report.html", Data(page.utf8))]
    }
}

/// Whether `folder` holds an earlier sensitivity analysis.
public func isPreviousSensitivity(_ folder: String) -> Bool { holdsFormat(folder, file: "sensitivity.json", format: sensitivityFormatName) }
