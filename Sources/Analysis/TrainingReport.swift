import Charts
import Foundation

/// One epoch of a training log, as the report charts it.
public struct TrainingChartRow: Sendable {
    public var epoch: Int
    public var loss: Double
    public var validationLoss: Double
    public var trainAccuracy: Double
    public var validationAccuracy: Double
    public var sparsity: Double
    public init(epoch: Int, loss: Double, validationLoss: Double, trainAccuracy: Double, validationAccuracy: Double, sparsity: Double) {
        self.epoch = epoch
        self.loss = loss
        self.validationLoss = validationLoss
        self.trainAccuracy = trainAccuracy
        self.validationAccuracy = validationAccuracy
        self.sparsity = sparsity
    }
}

/// The training log's page: loss, accuracy and sparsity per epoch, self-contained.
public func trainingReportHTML(_ rows: [TrainingChartRow], title: String) -> String {
    let epochs = rows.map { Double($0.epoch) }
    func series(_ name: String, _ values: [Double], dashed: Bool = false) -> ChartSeries {
        ChartSeries(name: name, points: Array(zip(epochs, values)).map { ($0.0, $0.1) }, dashed: dashed)
    }
    let charts = [
        LineChart(title: "Loss per epoch", xLabel: "epoch", yLabel: "mean loss",
                  series: [series("train", rows.map(\.loss)), series("validation", rows.map(\.validationLoss), dashed: true)]).svg(),
        LineChart(title: "Top-1 accuracy per epoch", xLabel: "epoch", yLabel: "top-1 accuracy",
                  series: [series("train", rows.map(\.trainAccuracy)), series("validation", rows.map(\.validationAccuracy), dashed: true)]).svg(),
        LineChart(title: "Sparsity per epoch", xLabel: "epoch", yLabel: "zero parameters / all parameters",
                  series: [series("sparsity", rows.map(\.sparsity))], yRange: 0...1).svg(),
    ]
    var table = "<table><tr><th>epoch</th><th>loss</th><th>train top-1</th><th>val loss</th><th>val top-1</th><th>sparsity</th></tr>\n"
    for r in rows {
        table += "<tr><td>\(r.epoch)</td><td>\(String(format: "%.4f", r.loss))</td><td>\(String(format: "%.2f%%", r.trainAccuracy * 100))</td><td>\(String(format: "%.4f", r.validationLoss))</td><td>\(String(format: "%.2f%%", r.validationAccuracy * 100))</td><td>\(String(format: "%.2f%%", r.sparsity * 100))</td></tr>\n"
    }
    table += "</table>"
    return htmlPage(title: title, body: "<h1>\(escapeXML(title))</h1>\n" + charts.map { "<figure>\($0)</figure>" }.joined(separator: "\n") + "\n" + table)
}
