import Charts
import Foundation
import Pruning

/// Marks `sweep.json` as gmtool's, so a later sweep may replace the folder.
public let sweepFormatName = "gmtool-sweep"

/// A finished sweep: what was run and what every point measured.
public struct SweepResult: Encodable, Sendable {
    public var model: String
    public var gradientData: [String]
    public var gradientImages: Int
    public var evaluationData: [String]
    public var evaluationImages: Int
    public var baselineTop1: Double
    public var baselineTop5: Double
    public var baselineLoss: Double
    public var baselineSparsity: Double
    public var betas: [Float]
    public var gammas: [Float]
    public var points: [PointOutcome]
    /// The sparsest point within `maxDrop` of the baseline's top-1 (an index into `points`).
    public var maxDrop: Double
    public var selected: Int?
    /// The `gmtool prune` command that reproduces the selected point.
    public var command: String?
    public var gradientSeconds: Double
    public var pointSeconds: Double

    public init(model: String, gradientData: [String], gradientImages: Int, evaluationData: [String], evaluationImages: Int,
                baselineTop1: Double, baselineTop5: Double, baselineLoss: Double, baselineSparsity: Double, betas: [Float], gammas: [Float],
                points: [PointOutcome], maxDrop: Double, selected: Int?, command: String?, gradientSeconds: Double, pointSeconds: Double) {
        self.model = model
        self.gradientData = gradientData
        self.gradientImages = gradientImages
        self.evaluationData = evaluationData
        self.evaluationImages = evaluationImages
        self.baselineTop1 = baselineTop1
        self.baselineTop5 = baselineTop5
        self.baselineLoss = baselineLoss
        self.baselineSparsity = baselineSparsity
        self.betas = betas
        self.gammas = gammas
        self.points = points
        self.maxDrop = maxDrop
        self.selected = selected
        self.command = command
        self.gradientSeconds = gradientSeconds
        self.pointSeconds = pointSeconds
    }

    enum CodingKeys: String, CodingKey {
        case format, formatVersion = "format_version", model, gradientData = "gradient_data", gradientImages = "gradient_images"
        case evaluationData = "evaluation_data", evaluationImages = "evaluation_images", baseline, betas, gammas, points
        case maxDrop = "max_drop", selected, command, gradientSeconds = "gradient_seconds", pointSeconds = "point_seconds"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(sweepFormatName, forKey: .format)
        try c.encode(1, forKey: .formatVersion)
        try c.encode(model, forKey: .model)
        try c.encode(gradientData, forKey: .gradientData)
        try c.encode(gradientImages, forKey: .gradientImages)
        try c.encode(evaluationData, forKey: .evaluationData)
        try c.encode(evaluationImages, forKey: .evaluationImages)
        try c.encode(["top1": baselineTop1, "top5": baselineTop5, "loss": baselineLoss, "sparsity": baselineSparsity], forKey: .baseline)
        try c.encode(betas, forKey: .betas)
        // JSON has no infinity: gamma = inf is null here, as `gamma_is_infinite` says on each point.
        try c.encode(gammas.map { $0.isFinite ? Double($0) : nil }, forKey: .gammas)
        try c.encode(points, forKey: .points)
        try c.encode(maxDrop, forKey: .maxDrop)
        try c.encode(selected, forKey: .selected)
        try c.encode(command, forKey: .command)
        try c.encode(gradientSeconds, forKey: .gradientSeconds)
        try c.encode(pointSeconds, forKey: .pointSeconds)
    }

    public var selectedPoint: PointOutcome? { selected.map { points[$0] } }
}

/// A kernel's name on a chart: the layer, with the role when it is not the plain kernel.
func layerLabel(_ layer: LayerOutcome) -> String {
    switch layer.role {
    case "kernel": return layer.layer
    case "depthwise_kernel": return "\(layer.layer) (dw)"
    case "pointwise_kernel": return "\(layer.layer) (pw)"
    default: return "\(layer.layer)/\(layer.role)"
    }
}

/// `inf` or the float's shortest decimal (what `gmtool prune --gamma` reads back).
public func thresholdText(_ value: Float) -> String { value.isFinite ? "\(value)" : "inf" }

/// Whether `folder` holds an earlier sweep (its sweep.json says so).
public func isPreviousSweep(_ folder: String) -> Bool { holdsFormat(folder, file: "sweep.json", format: sweepFormatName) }

func holdsFormat(_ folder: String, file: String, format: String) -> Bool {
    guard let data = FileManager.default.contents(atPath: folder + "/" + file),
          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return false }
    return object["format"] as? String == format
}

func jsonData<T: Encodable>(_ value: T) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return try encoder.encode(value) + Data("\n".utf8)
}

/// A CSV number: the shortest decimal that reads back to the same value.
func csv(_ value: Double) -> String { value.isFinite ? "\(value)" : "inf" }

extension SweepResult {
    /// sweep.csv: one row per point.
    public var csvText: String {
        var lines = ["beta,gamma,sparsity,kernel_sparsity,nonzero,parameters,pruned_now,csr_bytes,bitmask_bytes,smaller_bytes,dense_kernel_bytes,top1,top5,loss"]
        for p in points {
            lines.append([thresholdText(p.beta), thresholdText(p.gamma), csv(p.sparsity), csv(p.kernelSparsity), "\(p.nonzero)", "\(p.parameters)",
                          "\(p.prunedNow)", "\(p.csrBytes)", "\(p.bitmaskBytes)", "\(p.smallerBytes)", "\(p.denseKernelBytes)",
                          csv(p.top1), csv(p.top5), csv(p.loss)].joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// layers.csv: one row per point and prunable kernel.
    public var layersCSVText: String {
        var lines = ["beta,gamma,layer,weight,parameters,nonzero,pruned,sparsity"]
        for p in points {
            for l in p.layers {
                lines.append([thresholdText(p.beta), thresholdText(p.gamma), l.layer, l.role, "\(l.parameters)", "\(l.nonzero)", "\(l.pruned)",
                              csv(l.sparsity)].joined(separator: ","))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }

    var betaScale: AxisScale {
        let positive = betas.filter { $0 > 0 }
        guard positive.count == betas.count, let low = positive.min(), let high = positive.max() else { return .linear }
        return high / low >= 20 ? .log : .linear
    }

    /// Figure 1a: top-1 against beta, one line per gamma.
    public var top1ChartSVG: String {
        LineChart(
            title: "Top-1 accuracy against beta (one line per gamma)", xLabel: "beta (magnitude threshold)", yLabel: "top-1 accuracy",
            xScale: betaScale,
            series: gammas.map { gamma in
                ChartSeries(name: "gamma \(thresholdText(gamma))",
                            points: points.filter { $0.gamma == gamma }.map { (Double($0.beta), $0.top1) }, dashed: !gamma.isFinite)
            },
            references: [("unpruned \(String(format: "%.2f%%", baselineTop1 * 100))", baselineTop1)]).svg()
    }

    /// Figure 1a's grid: top-1 for every (gamma, beta).
    public var heatmapSVG: String {
        let byPoint = Dictionary(points.map { (SweepPoint(beta: $0.beta, gamma: $0.gamma), $0.top1) }, uniquingKeysWith: { a, _ in a })
        return Heatmap(
            title: "Top-1 accuracy for every beta and gamma", xLabel: "beta", yLabel: "gamma",
            columnLabels: betas.map { String(format: "%.3g", Double($0)) }, rowLabels: gammas.map { $0.isFinite ? String(format: "%.0e", Double($0)) : "inf" },
            values: gammas.map { gamma in betas.map { byPoint[SweepPoint(beta: $0, gamma: gamma)] } },
            format: { String(format: "%.1f", $0 * 100) }).svg()
    }

    /// Figure 1b for the selected point (or the last point): weights kept and pruned per layer.
    public var layersChartSVG: String {
        guard let point = selectedPoint ?? points.last else { return "" }
        return BarChart(
            title: "Weights per layer at beta \(thresholdText(point.beta)), gamma \(thresholdText(point.gamma)) (label: sparsity)",
            yLabel: "weights", categories: point.layers.map(layerLabel),
            segments: [("kept (non-zero)", point.layers.map { Double($0.nonzero) }),
                       ("pruned", point.layers.map { Double($0.parameters - $0.nonzero) })],
            notes: point.layers.map { String(format: "%.0f%%", $0.sparsity * 100) }).svg()
    }

    /// Accuracy against sparsity: the frontier of the gradient-aware points and of the
    /// magnitude-only ones (gamma = inf).
    public var frontierSVG: String {
        var series: [ChartSeries] = []
        let gradientAware = points.filter { $0.gamma.isFinite }, magnitude = points.filter { !$0.gamma.isFinite }
        if !gradientAware.isEmpty {
            series.append(ChartSeries(name: "gradient-aware", points: frontier(gradientAware).map { ($0.sparsity, $0.top1) }))
        }
        if !magnitude.isEmpty {
            series.append(ChartSeries(name: "magnitude (gamma inf)", points: frontier(magnitude).map { ($0.sparsity, $0.top1) }, dashed: true))
        }
        return LineChart(title: "Accuracy-sparsity frontier", xLabel: "sparsity (zero parameters / all parameters)", yLabel: "top-1 accuracy",
                         series: series, references: [("unpruned", baselineTop1)]).svg()
    }

    /// Every file of the sweep's folder.
    public func files() throws -> [(name: String, data: Data)] {
        let charts: [(String, String)] = [("top1_vs_beta.svg", top1ChartSVG), ("top1_heatmap.svg", heatmapSVG),
                                          ("layers.svg", layersChartSVG), ("frontier.svg", frontierSVG)]
        var files: [(name: String, data: Data)] = [("sweep.json", try jsonData(self)), ("sweep.csv", Data(csvText.utf8)),
                                                   ("layers.csv", Data(layersCSVText.utf8))]
        files += charts.map { ($0.0, Data($0.1.utf8)) }
        files.append(("report.html", Data(html(charts: charts.map(\.1)).utf8)))
        return files
    }

    func html(charts: [String]) -> String {
        var rows = ""
        for (index, p) in points.enumerated() {
            let mark = index == selected ? " class=\"selected\"" : ""
            rows += "<tr\(mark)><td>\(thresholdText(p.beta))</td><td>\(thresholdText(p.gamma))</td><td>\(String(format: "%.2f%%", p.sparsity * 100))</td><td>\(p.nonzero)</td><td>\(p.csrBytes)</td><td>\(p.bitmaskBytes)</td><td>\(String(format: "%.2f%%", p.top1 * 100))</td><td>\(String(format: "%.2f%%", p.top5 * 100))</td><td>\(String(format: "%.4f", p.loss))</td></tr>\n"
        }
        var selection = "<p>No point is within \(String(format: "%.2f", maxDrop * 100)) points of the unpruned top-1.</p>"
        if let point = selectedPoint, let command {
            selection = "<p>Sparsest point within \(String(format: "%.2f", maxDrop * 100)) points of the unpruned top-1: beta \(thresholdText(point.beta)), gamma \(thresholdText(point.gamma)), \(String(format: "%.2f%%", point.sparsity * 100)) sparse, top-1 \(String(format: "%.2f%%", point.top1 * 100)). Reproduce it with:</p>\n<pre>\(escapeXML(command))</pre>"
        }
        return htmlPage(title: "gmtool sweep: \(model)", body: """
            <h1>Sweep of \(escapeXML(model))</h1>
            <p>\(points.count) points (\(betas.count) beta x \(gammas.count) gamma). Gradients: \(escapeXML(gradientData.joined(separator: ", "))) (\(gradientImages) images). Evaluated on \(escapeXML(evaluationData.joined(separator: ", "))) (\(evaluationImages) images). Unpruned: top-1 \(String(format: "%.2f%%", baselineTop1 * 100)), top-5 \(String(format: "%.2f%%", baselineTop5 * 100)), loss \(String(format: "%.4f", baselineLoss)).</p>
            \(selection)
            \(charts.map { "<figure>\($0)</figure>" }.joined(separator: "\n"))
            <h2>Points</h2>
            <table><tr><th>beta</th><th>gamma</th><th>sparsity</th><th>non-zero</th><th>CSR bytes</th><th>bitmask bytes</th><th>top-1</th><th>top-5</th><th>loss</th></tr>
            \(rows)</table>
            """)
    }
}

/// One self-contained page: inline style, inline SVG, nothing fetched.
func htmlPage(title: String, body: String) -> String {
    """
    <!DOCTYPE html>
    <html lang="en"><head><meta charset="utf-8"><title>\(escapeXML(title))</title>
    <style>body{font-family:DejaVu Sans,Arial,Helvetica,sans-serif;margin:24px;color:#222}table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}tr.selected{background:#ffe9a8}figure{margin:16px 0}pre{background:#f4f4f4;padding:8px;white-space:pre-wrap}</style>
    </head><body>
    \(body)
    </body></html>

    """
}
