#include "temporaries.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// gmtool has at most a few temporaries alive at once (an extracted archive, an output and, for an
// archive, its weights); the capacity is generous.
#define CAPACITY 64

_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "the signal handler needs lock-free pointer atomics");

// Each slot holds a heap copy of a path or NULL. Whoever exchanges a path out of a slot owns it:
// `forget` frees it, the handler removes the file and never frees (it exits). So a handler running
// on another thread while the main thread forgets a slot can never see a freed string.
static _Atomic(char *) files[CAPACITY];
static _Atomic(char *) folders[CAPACITY];

int gmtool_temporary_register(const char *path, int is_folder) {
    char *copy = strdup(path);
    if (copy == NULL) return -1;
    _Atomic(char *) *table = is_folder ? folders : files;
    for (int i = 0; i < CAPACITY; i++) {
        char *expected = NULL;
        if (atomic_compare_exchange_strong(&table[i], &expected, copy)) return is_folder ? CAPACITY + i : i;
    }
    free(copy);
    return -1;
}

void gmtool_temporary_forget(int slot) {
    if (slot < 0 || slot >= 2 * CAPACITY) return;
    free(atomic_exchange(slot < CAPACITY ? &files[slot] : &folders[slot - CAPACITY], NULL));
}

static void remove_temporaries_and_exit(int signal) {
    // Files first: a registered folder (an extracted archive) is empty once its file is gone.
    for (int i = 0; i < CAPACITY; i++) {
        char *path = atomic_exchange(&files[i], NULL);
        if (path != NULL) unlink(path);
    }
    for (int i = 0; i < CAPACITY; i++) {
        char *path = atomic_exchange(&folders[i], NULL);
        if (path != NULL) rmdir(path);
    }
    _exit(128 + signal);
}

void gmtool_temporaries_install(void) {
    static const int handled[] = {SIGINT, SIGTERM, SIGHUP};
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = remove_temporaries_and_exit;
    // A second signal waits while the first one's handler runs on this thread.
    sigemptyset(&action.sa_mask);
    for (unsigned i = 0; i < sizeof handled / sizeof handled[0]; i++) sigaddset(&action.sa_mask, handled[i]);
    for (unsigned i = 0; i < sizeof handled / sizeof handled[0]; i++) {
        struct sigaction previous;
        if (sigaction(handled[i], NULL, &previous) == 0 && previous.sa_handler == SIG_IGN) continue;
        sigaction(handled[i], &action, NULL);
    }
    signal(SIGXFSZ, SIG_IGN);
}
