/// A failed HDF5 operation: what was attempted, on which object, and what libhdf5's error stack
/// said (its topmost and deepest descriptions).
public struct HDF5Error: Error, CustomStringConvertible, Sendable {
    /// The operation that failed, e.g. "open file" or "read dataset".
    public var operation: String
    /// The file, or the object inside it, e.g. "model.h5:/model_weights/conv1".
    public var path: String
    /// libhdf5's own explanation, "top (deepest cause)"; empty when the failure was found on
    /// the Swift side (a type or shape that does not fit).
    public var detail: String

    public init(operation: String, path: String, detail: String) {
        self.operation = operation
        self.path = path
        self.detail = detail
    }

    public var description: String {
        detail.isEmpty ? "\(path): cannot \(operation)" : "\(path): cannot \(operation) (\(detail))"
    }
}
