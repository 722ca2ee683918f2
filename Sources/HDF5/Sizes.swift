import Foundation

// Sizes come from files, and a file can declare anything: a 22 KB checkpoint can declare a
// 16 TiB tensor. Every read that allocates from a declared size checks it here first, so such a
// file gets one line saying so instead of an allocation failure that kills the process.

/// The element count of `shape`, or nil when a dimension is negative or the product overflows
/// an Int (shapes are read from files; the plain product would trap).
public func checkedProduct(_ shape: [Int]) -> Int? {
    var count = 1
    for dimension in shape {
        guard dimension >= 0 else { return nil }
        let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
        if overflow { return nil }
        count = product
    }
    return count
}

/// The physical memory of this machine: the most one read may allocate. A tensor larger than
/// that can never be held, so refusing it up front loses nothing.
public enum MachineMemory {
    public static let bytes: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), pageSize = sysconf(Int32(_SC_PAGESIZE))
        guard pages > 0, pageSize > 0 else { return Int(ProcessInfo.processInfo.physicalMemory) }
        let (total, overflow) = pages.multipliedReportingOverflow(by: pageSize)
        return overflow ? Int.max : total
    }()

    /// Why `count` elements of `elementSize` bytes cannot be held, or nil when they can.
    /// `noun` names the elements ("float32 values").
    public static func problem(count: Int, elementSize: Int, noun: String) -> String? {
        let (needed, overflow) = count.multipliedReportingOverflow(by: elementSize)
        if !overflow && needed <= bytes { return nil }
        let size = overflow ? "more than \(describeBytes(Int.max))" : describeBytes(needed)
        return "declares \(count) \(noun) (\(size)), more than this machine's \(describeBytes(bytes)) of memory"
    }
}

/// A byte count in binary units for messages: "512 bytes", "22.0 KiB", "16.0 TiB".
public func describeBytes(_ bytes: Int) -> String {
    if bytes < 1024 { return bytes == 1 ? "1 byte" : "\(bytes) bytes" }
    let units = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
    var value = Double(bytes) / 1024, index = 0
    while value >= 1024 && index < units.count - 1 {
        value /= 1024
        index += 1
    }
    return String(format: "%.1f ", value) + units[index]
}
