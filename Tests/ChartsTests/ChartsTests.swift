import Foundation
#if canImport(FoundationXML)
import FoundationXML
#endif
import Testing
@testable import Charts

/// The charts of each type on fixed data, compared byte for byte with the committed SVGs in
/// golden/. A change to the drawing code shows up here as a diff to review; regenerate with
/// GMTOOL_UPDATE_GOLDEN=1 (then look at the SVGs: Tests/interop renders them in Chromium).
/// With GMTOOL_INTEROP_OUT set the charts are also written there for that browser test.
@Suite struct ChartsTests {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("golden")

    static var charts: [(name: String, svg: String)] {
        let betas = [0.01, 0.04, 0.07, 0.1, 0.13, 0.16]
        let line = LineChart(
            title: "Top-1 against beta", xLabel: "beta", yLabel: "top-1 accuracy",
            series: [ChartSeries(name: "gamma 0.001", points: betas.enumerated().map { ($1, 0.9 - 0.02 * Double($0)) }),
                     ChartSeries(name: "gamma inf", points: betas.enumerated().map { ($1, 0.9 - 0.1 * Double($0)) }, dashed: true)],
            references: [("unpruned 90%", 0.905)])
        let logLine = LineChart(
            title: "Log beta axis", xLabel: "beta", yLabel: "loss", xScale: .log,
            series: [ChartSeries(name: "a", points: [(1e-3, 0.5), (1e-2, 0.6), (1e-1, 1.4), (0.3, 2.5)])])
        let heatmap = Heatmap(
            title: "Top-1 for every beta and gamma", xLabel: "beta", yLabel: "gamma", columnLabels: ["0.01", "0.05", "0.1"],
            rowLabels: ["1e-04", "1e-02", "inf"], values: [[0.91, 0.9, 0.85], [0.9, 0.8, nil], [0.88, 0.6, 0.3]],
            format: { String(format: "%.1f", $0 * 100) })
        let bars = BarChart(
            title: "Weights per layer", yLabel: "weights", categories: ["conv1", "conv_dw_1 (dw)", "conv_pw_1", "fc <&>"],
            segments: [("kept", [100, 40, 900, 30]), ("pruned", [20, 5, 2100, 10])], notes: ["17%", "11%", "70%", "25%"])
        return [("line.svg", line.svg()), ("line_log.svg", logLine.svg()), ("heatmap.svg", heatmap.svg()), ("bars.svg", bars.svg())]
    }

    @Test(arguments: charts.map(\.name))
    func matchesGolden(name: String) throws {
        let svg = try #require(Self.charts.first { $0.name == name }).svg
        let url = Self.golden.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["GMTOOL_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: Self.golden, withIntermediateDirectories: true)
            try Data(svg.utf8).write(to: url)
        }
        if let out = ProcessInfo.processInfo.environment["GMTOOL_INTEROP_OUT"] {
            let folder = URL(fileURLWithPath: out).appendingPathComponent("charts")
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try Data(svg.utf8).write(to: folder.appendingPathComponent(name))
        }
        let expected = try String(contentsOf: url, encoding: .utf8)
        #expect(svg == expected, "\(name) differs from golden/\(name)")
        // Well-formed XML (the browser test checks it draws).
        let parser = XMLParser(data: Data(svg.utf8))
        #expect(parser.parse(), "\(name): \(parser.parserError.map { "\($0)" } ?? "")")
    }

    @Test func ticksAreRoundAndCoverTheData() {
        let axis = Axis(values: [0.013, 0.297], scale: .linear)
        #expect(axis.low <= 0.013 && axis.high >= 0.297)
        #expect(axis.ticks == [0, 0.1, 0.2, 0.3])
        #expect(axis.ticks.map(axis.label) == ["0", "0.1", "0.2", "0.3"])
        let fine = Axis(values: [0, 0.95], scale: .linear, targetTicks: 20)
        #expect(fine.ticks == (0...19).map { Double($0) * 5 / 100 } && fine.ticks.map(fine.label)[3] == "0.15")
        let log = Axis(values: [2e-4, 0.3], scale: .log)
        #expect(log.ticks == [1e-4, 1e-3, 1e-2, 1e-1, 1])
        #expect(log.ticks.map(log.label) == ["1e-4", "1e-3", "1e-2", "1e-1", "1"])
        #expect(niceStep(0.07) == 0.1 && niceStep(0.3) == 0.5 && niceStep(1) == 1 && niceStep(1.01) == 2)
        // One value: a range around it, not a division by zero.
        let single = Axis(values: [0.5], scale: .linear)
        #expect(single.low < 0.5 && single.high > 0.5 && single.fraction(0.5) > 0 && single.fraction(0.5) < 1)
    }

    @Test func textIsEscaped() {
        #expect(escapeXML("a<b & \"c\">") == "a&lt;b &amp; &quot;c&quot;&gt;")
        #expect(f(3.5) == "3.5" && f(-0.001) == "0" && f(12) == "12" && f(0.126) == "0.13")
        #expect(viridis(0) == "#440154" && viridis(1) == "#fde725")
    }
}
