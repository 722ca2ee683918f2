import Foundation

/// One line of a line chart: its points in order, drawn with markers.
public struct ChartSeries: Sendable {
    public var name: String
    public var points: [(x: Double, y: Double)]
    public var dashed: Bool

    public init(name: String, points: [(x: Double, y: Double)], dashed: Bool = false) {
        self.name = name
        self.points = points
        self.dashed = dashed
    }
}

/// The frame every chart shares: title, plot area, axis labels.
struct Frame {
    var width: Double = 720
    var height: Double = 440
    var left: Double = 72
    var right: Double = 190
    var top: Double = 44
    var bottom: Double = 58
    var plotWidth: Double { width - left - right }
    var plotHeight: Double { height - top - bottom }
}

/// Lines over a shared x axis (linear or log), e.g. top-1 against beta with one line per gamma,
/// or accuracy against sparsity per rule. The legend sits right of the plot.
public struct LineChart: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var xScale: AxisScale
    public var series: [ChartSeries]
    /// Fixes the y range (e.g. 0...1 for accuracy); nil fits the data.
    public var yRange: ClosedRange<Double>?
    /// Horizontal reference lines (e.g. the unpruned accuracy), drawn grey and dashed.
    public var references: [(label: String, y: Double)]

    public init(title: String, xLabel: String, yLabel: String, xScale: AxisScale = .linear, series: [ChartSeries],
                yRange: ClosedRange<Double>? = nil, references: [(label: String, y: Double)] = []) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xScale = xScale
        self.series = series
        self.yRange = yRange
        self.references = references
    }

    public func svg() -> String {
        var frame = Frame()
        // Room for the longest legend entry (about 7 px per character at 12 px).
        frame.right = max(120, 50 + 7 * Double(series.map(\.name.count).max() ?? 0))
        frame.width = 530 + frame.right
        frame.height = max(frame.height, frame.top + 20 * Double(series.count) + 20)
        var canvas = SVGCanvas(width: frame.width, height: frame.height)
        let xs = series.flatMap { $0.points.map(\.x) }
        let ys = series.flatMap { $0.points.map(\.y) } + references.map(\.y)
        let xAxis = Axis(values: xs, scale: xScale)
        let yAxis = Axis(values: ys, scale: .linear, fixed: yRange)
        drawAxes(&canvas, frame: frame, x: xAxis, y: yAxis, title: title, xLabel: xLabel, yLabel: yLabel)
        func position(_ x: Double, _ y: Double) -> (Double, Double) {
            (frame.left + xAxis.fraction(x) * frame.plotWidth, frame.top + (1 - yAxis.fraction(y)) * frame.plotHeight)
        }
        for reference in references where reference.y.isFinite {
            let (_, y) = position(xAxis.low, reference.y)
            canvas.line(frame.left, y, frame.left + frame.plotWidth, y, stroke: "#888", width: 1, dash: "6 4")
            canvas.text(frame.left + frame.plotWidth - 4, y - 4, reference.label, size: 11, anchor: .end, fill: "#555")
        }
        for (index, line) in series.enumerated() {
            let color = seriesColor(index)
            let points = line.points.filter { $0.x.isFinite && $0.y.isFinite && (xScale == .linear || $0.x > 0) }
            canvas.polyline(points.map { position($0.x, $0.y) }, stroke: color, width: 2, dash: line.dashed ? "7 4" : nil)
            for point in points {
                let (x, y) = position(point.x, point.y)
                canvas.circle(x, y, radius: 3, fill: color, title: "\(line.name): (\(shortNumber(point.x)), \(shortNumber(point.y)))")
            }
        }
        // Legend.
        let legendX = frame.left + frame.plotWidth + 16
        for (index, line) in series.enumerated() {
            let y = frame.top + 10 + Double(index) * 20
            canvas.line(legendX, y, legendX + 24, y, stroke: seriesColor(index), width: 3, dash: line.dashed ? "7 4" : nil)
            canvas.text(legendX + 30, y + 4, line.name, size: 12)
        }
        return canvas.document(title: title)
    }
}

/// A grid of values (rows x columns), each cell coloured on one scale and labelled with its
/// value, e.g. top-1 for every (gamma, beta). Missing values are grey.
public struct Heatmap: Sendable {
    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var columnLabels: [String]
    public var rowLabels: [String]
    /// values[row][column].
    public var values: [[Double?]]
    /// How a value is written in its cell and on the colour bar.
    public var format: @Sendable (Double) -> String

    public init(title: String, xLabel: String, yLabel: String, columnLabels: [String], rowLabels: [String], values: [[Double?]],
                format: @escaping @Sendable (Double) -> String = { String(format: "%.3f", $0) }) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.columnLabels = columnLabels
        self.rowLabels = rowLabels
        self.values = values
        self.format = format
    }

    public func svg() -> String {
        var frame = Frame()
        frame.right = 110
        frame.left = 96
        frame.bottom = 70
        var canvas = SVGCanvas(width: frame.width, height: frame.height)
        canvas.text(frame.width / 2, 24, title, size: 15, anchor: .middle, bold: true)
        let finite = values.flatMap { $0.compactMap { $0 } }.filter(\.isFinite)
        let low = finite.min() ?? 0, high = finite.max() ?? 1
        let columns = max(1, columnLabels.count), rows = max(1, rowLabels.count)
        let cellWidth = frame.plotWidth / Double(columns), cellHeight = frame.plotHeight / Double(rows)
        let showText = cellWidth >= 34 && cellHeight >= 14
        for row in 0..<rowLabels.count {
            // Row 0 at the bottom, as on a y axis.
            let y = frame.top + Double(rows - 1 - row) * cellHeight
            for column in 0..<columnLabels.count {
                let x = frame.left + Double(column) * cellWidth
                let value = row < values.count && column < values[row].count ? values[row][column] : nil
                if let value, value.isFinite {
                    let t = high > low ? (value - low) / (high - low) : 1
                    canvas.rect(x, y, cellWidth, cellHeight, fill: viridis(t), stroke: "#fff",
                                title: "\(yLabel) \(rowLabels[row]), \(xLabel) \(columnLabels[column]): \(format(value))")
                    if showText {
                        canvas.text(x + cellWidth / 2, y + cellHeight / 2 + 4, format(value), size: min(11, cellHeight * 0.6),
                                    anchor: .middle, fill: t > 0.55 ? "#000" : "#fff")
                    }
                } else {
                    canvas.rect(x, y, cellWidth, cellHeight, fill: "#ddd", stroke: "#fff", title: "no value")
                }
            }
            canvas.text(frame.left - 6, y + cellHeight / 2 + 4, rowLabels[row], size: 11, anchor: .end)
        }
        let every = max(1, Int((Double(columnLabels.count) * 40 / frame.plotWidth).rounded(.up)))
        for column in stride(from: 0, to: columnLabels.count, by: every) {
            let x = frame.left + (Double(column) + 0.5) * cellWidth
            canvas.text(x, frame.top + frame.plotHeight + 16, columnLabels[column], size: 11, anchor: .middle)
        }
        canvas.text(frame.left + frame.plotWidth / 2, frame.height - 18, xLabel, size: 13, anchor: .middle)
        canvas.text(20, frame.top + frame.plotHeight / 2, yLabel, size: 13, anchor: .middle, rotate: -90)
        // Colour bar.
        let barX = frame.left + frame.plotWidth + 24, steps = 20
        for step in 0..<steps {
            let t = Double(step) / Double(steps - 1)
            canvas.rect(barX, frame.top + (1 - Double(step + 1) / Double(steps)) * frame.plotHeight, 16, frame.plotHeight / Double(steps) + 0.5,
                        fill: viridis(t))
        }
        canvas.text(barX + 20, frame.top + 10, format(high), size: 11)
        canvas.text(barX + 20, frame.top + frame.plotHeight, format(low), size: 11)
        return canvas.document(title: title)
    }
}

/// Bars per category, stacked (e.g. per layer: weights kept and weights pruned), with an
/// optional note above each bar (e.g. the layer's sparsity).
public struct BarChart: Sendable {
    public var title: String
    public var yLabel: String
    public var categories: [String]
    /// Each segment's name and its value per category, stacked bottom to top in this order.
    public var segments: [(name: String, values: [Double])]
    public var notes: [String]?

    public init(title: String, yLabel: String, categories: [String], segments: [(name: String, values: [Double])], notes: [String]? = nil) {
        self.title = title
        self.yLabel = yLabel
        self.categories = categories
        self.segments = segments
        self.notes = notes
    }

    public func svg() -> String {
        var frame = Frame()
        // Rotated category labels hang below and to the left of their bars.
        let longest = Double(categories.map(\.count).max() ?? 0)
        frame.bottom = 30 + 5.2 * longest
        frame.height = 340 + frame.bottom
        frame.left = max(72, 4.5 * longest)
        frame.right = max(120, 50 + 7 * Double(segments.map(\.name.count).max() ?? 0))
        frame.width = max(720, frame.left + frame.right + Double(categories.count) * 22)
        var canvas = SVGCanvas(width: frame.width, height: frame.height)
        let totals = categories.indices.map { index in segments.reduce(0) { $0 + ($1.values.indices.contains(index) ? $1.values[index] : 0) } }
        let yAxis = Axis(values: totals, scale: .linear, includeZero: true)
        // No x ticks: the categories are the x axis.
        drawAxes(&canvas, frame: frame, x: nil, y: yAxis, title: title, xLabel: "", yLabel: yLabel)
        let slot = frame.plotWidth / Double(max(1, categories.count)), barWidth = slot * 0.72
        for (index, category) in categories.enumerated() {
            let x = frame.left + Double(index) * slot + (slot - barWidth) / 2
            var base = 0.0
            for (segmentIndex, segment) in segments.enumerated() {
                let value = segment.values.indices.contains(index) ? segment.values[index] : 0
                let y0 = frame.top + (1 - yAxis.fraction(base)) * frame.plotHeight
                let y1 = frame.top + (1 - yAxis.fraction(base + value)) * frame.plotHeight
                canvas.rect(x, y1, barWidth, y0 - y1, fill: seriesColor(segmentIndex), title: "\(category): \(segment.name) \(shortNumber(value))")
                base += value
            }
            if let notes, index < notes.count, slot >= 14 {
                let top = frame.top + (1 - yAxis.fraction(base)) * frame.plotHeight
                canvas.text(x + barWidth / 2, top - 4, notes[index], size: 9, anchor: .middle, fill: "#333")
            }
            let labelX = x + barWidth / 2, labelY = frame.top + frame.plotHeight + 10
            canvas.text(labelX, labelY, category, size: 10, anchor: .end, rotate: -60)
        }
        let legendX = frame.left + frame.plotWidth + 16
        for (index, segment) in segments.enumerated() {
            let y = frame.top + 10 + Double(index) * 20
            canvas.rect(legendX, y - 7, 14, 14, fill: seriesColor(index))
            canvas.text(legendX + 20, y + 4, segment.name, size: 12)
        }
        return canvas.document(title: title)
    }
}

/// Title, axis lines, ticks with labels and grid lines, axis labels.
func drawAxes(_ canvas: inout SVGCanvas, frame: Frame, x: Axis?, y: Axis, title: String, xLabel: String, yLabel: String) {
    canvas.text(frame.left + frame.plotWidth / 2, 24, title, size: 15, anchor: .middle, bold: true)
    let bottom = frame.top + frame.plotHeight
    for tick in y.ticks {
        let position = frame.top + (1 - y.fraction(tick)) * frame.plotHeight
        canvas.line(frame.left, position, frame.left + frame.plotWidth, position, stroke: "#e4e4e4", width: 1)
        canvas.line(frame.left - 5, position, frame.left, position)
        canvas.text(frame.left - 8, position + 4, y.label(tick), size: 11, anchor: .end)
    }
    if let x {
        for tick in x.ticks {
            let position = frame.left + x.fraction(tick) * frame.plotWidth
            canvas.line(position, frame.top, position, bottom, stroke: "#e4e4e4", width: 1)
            canvas.line(position, bottom, position, bottom + 5)
            canvas.text(position, bottom + 18, x.label(tick), size: 11, anchor: .middle)
        }
    }
    canvas.line(frame.left, frame.top, frame.left, bottom, width: 1.2)
    canvas.line(frame.left, bottom, frame.left + frame.plotWidth, bottom, width: 1.2)
    if !xLabel.isEmpty { canvas.text(frame.left + frame.plotWidth / 2, frame.height - 14, xLabel, size: 13, anchor: .middle) }
    canvas.text(18, frame.top + frame.plotHeight / 2, yLabel, size: 13, anchor: .middle, rotate: -90)
}

/// A value for a tooltip: up to 4 significant digits.
func shortNumber(_ value: Double) -> String { String(format: "%.4g", value) }

/// The viridis colour map at t in [0, 1] (its 9 published stops, interpolated linearly).
func viridis(_ t: Double) -> String {
    let stops: [(Double, Double, Double)] = [
        (68, 1, 84), (72, 40, 120), (62, 73, 137), (49, 104, 142), (38, 130, 142),
        (31, 158, 137), (53, 183, 121), (110, 206, 88), (253, 231, 37),
    ]
    let clamped = min(1, max(0, t.isFinite ? t : 0)) * Double(stops.count - 1)
    let index = min(stops.count - 2, Int(clamped)), w = clamped - Double(index)
    let a = stops[index], b = stops[index + 1]
    func mix(_ p: Double, _ q: Double) -> Int { Int((p + (q - p) * w).rounded()) }
    return String(format: "#%02x%02x%02x", mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}
