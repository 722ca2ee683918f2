internal import CTemporaries
import Foundation

/// The temporaries gmtool creates: an output's `.NAME.gmtool-PID-UUID.tmp` beside it (see
/// `writeAtomically`) and a `.keras` archive's extracted weights in `TMPDIR/gmtool-PID-UUID/`.
/// Nothing may outlive the process that made it:
/// - a normal return or a thrown error removes them in Swift;
/// - SIGINT, SIGTERM and SIGHUP: the C handler installed by `removeOnSignals` removes every
///   registered one (see CTemporaries for why it is C);
/// - SIGKILL, a crash or power loss cannot be caught: the process ID in the name lets the next
///   write to the same folder (or the next archive extraction) remove those whose process is gone.
public enum Temporaries {
    /// Installs the signal handler. gmtool's `main` calls it before doing anything else.
    public static func removeOnSignals() { gmtool_temporaries_install() }

    /// Registers `path` for removal on a signal; pass the slot to `forget` once the path is gone
    /// or renamed.
    static func register(_ path: String, isFolder: Bool = false) -> Int32 {
        gmtool_temporary_register(path, isFolder ? 1 : 0)
    }

    static func forget(_ slot: Int32) { gmtool_temporary_forget(slot) }

    /// Removes a registered file (already gone is fine: a failed write may not have created it)
    /// and forgets it.
    static func remove(file path: String, slot: Int32) {
        unlink(path)
        forget(slot)
    }

    /// A temporary file beside `target` (same folder, so the final rename never crosses file
    /// systems). `kind` distinguishes a second temporary of the same write.
    static func file(beside target: String, kind: String = "") -> String {
        let url = URL(fileURLWithPath: target)
        let name = ".\(url.lastPathComponent).gmtool-\(getpid())-\(UUID().uuidString)\(kind.isEmpty ? "" : ".\(kind)").tmp"
        return url.deletingLastPathComponent().appendingPathComponent(name).path
    }

    /// Removes temporary files (and temporary output folders) of gmtool's naming in `folder` whose
    /// process no longer exists.
    static func removeStaleFiles(in folder: String) {
        // An unreadable folder has nothing to sweep (and the write itself reports the folder).
        for name in (try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [] where name.hasPrefix(".") && name.hasSuffix(".tmp") {
            guard let marker = name.range(of: ".gmtool-", options: .backwards), let owner = owner(of: name[marker.upperBound...]),
                  owner.rest.hasPrefix("."), isGone(owner.pid) else { continue }
            let path = (folder as NSString).appendingPathComponent(name)
            // A temporary output folder (`writeFolderAtomically`) goes with its files.
            if unlink(path) != 0 && (errno == EISDIR || errno == EPERM) { try? FileManager.default.removeItem(atPath: path) }
        }
    }

    /// Splits `PID-UUID<rest>`.
    private static func owner(of text: Substring) -> (pid: pid_t, rest: Substring)? {
        guard let dash = text.firstIndex(of: "-"), let pid = pid_t(text[..<dash]), pid > 0 else { return nil }
        let afterDash = text[text.index(after: dash)...]
        guard UUID(uuidString: String(afterDash.prefix(36))) != nil else { return nil }
        return (pid, afterDash.dropFirst(36))
    }

    /// Only ESRCH proves a process is gone (EPERM: it lives, under another user).
    private static func isGone(_ pid: pid_t) -> Bool {
        pid != getpid() && kill(pid, 0) == -1 && errno == ESRCH
    }

    /// A private folder `TMPDIR/gmtool-PID-UUID/` for one file that libhdf5 must open by path,
    /// registered (folder and file) for removal on a signal. Creating one first removes the
    /// folders of dead processes.
    final class ScratchFolder {
        let url: URL
        /// The file inside it.
        let file: String
        private let slots: [Int32]

        init(holding fileName: String, for source: String) throws {
            let parent = FileManager.default.temporaryDirectory
            for name in (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? [] where name.hasPrefix("gmtool-") {  // see removeStaleFiles
                guard let owner = owner(of: name.dropFirst("gmtool-".count)), owner.rest.isEmpty, isGone(owner.pid) else { continue }
                // Best effort: another run may be sweeping the same folder.
                try? FileManager.default.removeItem(at: parent.appendingPathComponent(name))
            }
            url = parent.appendingPathComponent("gmtool-\(getpid())-\(UUID().uuidString)")
            file = url.appendingPathComponent(fileName).path
            slots = [Temporaries.register(url.path, isFolder: true), Temporaries.register(file)]
            do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
                slots.forEach(Temporaries.forget)
                throw CheckpointError(file: source, problem: "cannot create a temporary folder to extract it")
            }
        }

        /// Removes the file and the folder.
        func remove() {
            unlink(file)
            rmdir(url.path)
            slots.forEach(Temporaries.forget)
        }
    }
}
