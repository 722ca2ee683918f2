#ifndef GMTOOL_TEMPORARIES_H
#define GMTOOL_TEMPORARIES_H

/// The registry of live temporaries that a fatal signal must not leave behind. It is C, not Swift,
/// because the handler must be async-signal-safe: it reads plain C globals (no lazy
/// initialisation, no reference counting, no exclusivity checks) with lock-free atomics and calls
/// only unlink, rmdir and _exit.

/// Remembers `path` (a file, or a folder when `is_folder`) for removal on SIGINT, SIGTERM or
/// SIGHUP. Returns the slot to pass to `gmtool_temporary_forget`, or -1 when the registry is full
/// (the temporary then stays behind on a signal, for the next run's sweep of dead processes).
int gmtool_temporary_register(const char *path, int is_folder);

/// Forgets a slot (the file itself is not touched). -1 is ignored.
void gmtool_temporary_forget(int slot);

/// Installs the handler for SIGINT, SIGTERM and SIGHUP (each one not ignored at startup, so
/// `nohup` keeps working): it removes every registered file, then every registered folder, and
/// exits with 128 + the signal's number. Ignores SIGXFSZ, so that writing past `ulimit -f` fails
/// with EFBIG (reported like a full disk) instead of killing the process mid-write.
void gmtool_temporaries_install(void);

#endif
