import Foundation

/// How an axis maps values to positions.
public enum AxisScale: Sendable, Equatable {
    case linear
    /// Base-10 logarithmic; only positive values can be shown.
    case log
}

/// One axis: the data range widened to round tick values, and the ticks with their labels.
struct Axis {
    let scale: AxisScale
    let low: Double
    let high: Double
    let ticks: [Double]

    /// An axis covering `values` (finite ones; positive ones on a log axis), with about
    /// `targetTicks` ticks at 1, 2 or 5 times a power of ten (linear) or at powers of ten (log).
    init(values: [Double], scale: AxisScale, targetTicks: Int = 6, includeZero: Bool = false, fixed: ClosedRange<Double>? = nil) {
        self.scale = scale
        var usable = values.filter { $0.isFinite && (scale == .linear || $0 > 0) }
        if includeZero && scale == .linear { usable.append(0) }
        if let fixed { usable = [fixed.lowerBound, fixed.upperBound] }
        var low = usable.min() ?? (scale == .log ? 1 : 0), high = usable.max() ?? (scale == .log ? 10 : 1)
        switch scale {
        case .linear:
            if low == high { low -= low == 0 ? 1 : abs(low) * 0.1; high += high == 0 ? 1 : abs(high) * 0.1 }
            let step = niceStep((high - low) / Double(max(1, targetTicks - 1)))
            if fixed == nil {
                low = (low / step).rounded(.down) * step
                high = (high / step).rounded(.up) * step
            }
            var ticks: [Double] = []
            var k = (low / step).rounded(.up)
            while k * step <= high + step * 1e-9 {
                // k * step rounded to the step's decimals: 3 * 0.1 is 0.30000000000000004, the
                // tick is 0.3.
                let decimals = max(0, -Int(log10(step).rounded(.down)))
                let value = Double(String(format: "%.\(decimals)f", k * step))!
                ticks.append(value == 0 ? 0 : value)
                k += 1
            }
            self.ticks = ticks
        case .log:
            var lowExponent = log10(low).rounded(.down), highExponent = log10(high).rounded(.up)
            if lowExponent == highExponent { lowExponent -= 1; highExponent += 1 }
            low = pow(10, lowExponent)
            high = pow(10, highExponent)
            let decades = Int(highExponent - lowExponent)
            let stride = max(1, Int((Double(decades) / Double(targetTicks)).rounded(.up)))
            ticks = Swift.stride(from: Int(lowExponent), through: Int(highExponent), by: stride).map { pow(10, Double($0)) }
        }
        self.low = low
        self.high = high
    }

    /// Where `value` falls between 0 (low) and 1 (high).
    func fraction(_ value: Double) -> Double {
        switch scale {
        case .linear: return (value - low) / (high - low)
        case .log: return (log10(value) - log10(low)) / (log10(high) - log10(low))
        }
    }

    func label(_ value: Double) -> String { tickLabel(value, step: ticks.count > 1 ? abs(ticks[1] - ticks[0]) : 1, scale: scale) }
}

/// 1, 2 or 5 times a power of ten, at least `rough`.
func niceStep(_ rough: Double) -> Double {
    guard rough > 0, rough.isFinite else { return 1 }
    let power = pow(10, log10(rough).rounded(.down))
    for factor in [1.0, 2, 5, 10] where factor * power >= rough * (1 - 1e-9) { return factor * power }
    return 10 * power
}

/// A tick label with as many decimals as the step needs (0.05 steps: two), or 1e-3 style
/// for log axes and very small or large values.
func tickLabel(_ value: Double, step: Double, scale: AxisScale) -> String {
    if value == 0 { return "0" }
    if scale == .log || abs(value) < 1e-3 || abs(value) >= 1e6 {
        let exponent = Int(log10(abs(value)).rounded(.down))
        let mantissa = value / pow(10, Double(exponent))
        if abs(mantissa - 1) < 1e-9 { return exponent == 0 ? "1" : exponent == 1 ? "10" : "1e\(exponent)" }
        return String(format: "%ge%d", mantissa, exponent)
    }
    let decimals = max(0, -Int(log10(step).rounded(.down)))
    return String(format: "%.\(decimals)f", value)
}
