import Foundation

/// A problem with a checkpoint a user gave gmtool: which file, which object inside it, and what
/// is wrong. Its description is the one line the CLI prints.
public struct CheckpointError: Error, CustomStringConvertible, Sendable {
    public var file: String
    /// The object inside the file (HDF5 path, layer or attribute), or empty for the file itself.
    public var object: String
    public var problem: String

    public init(file: String, object: String = "", problem: String) {
        self.file = file
        // An HDF5 path joined from a group's path and a name that starts with "/" ("/" + "/weights")
        // is the same object; it is printed with single slashes.
        var object = object
        while object.contains("//") { object = object.replacingOccurrences(of: "//", with: "/") }
        self.object = object
        self.problem = problem
    }

    public var description: String {
        object.isEmpty ? "\(file): \(problem)" : "\(file): \(object): \(problem)"
    }
}
