// See crashguard.h. Everything the handler does is async-signal-safe: a read of a thread-local
// pointer, a store through it, shutdown, close, sigaction, raise.
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "crashguard.h"

enum { MAX_LISTENERS = 8 };
static const int crash_signals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};
enum { NSIG_CRASH = sizeof(crash_signals) / sizeof(crash_signals[0]) };

static _Atomic int listeners[MAX_LISTENERS] = {-1, -1, -1, -1, -1, -1, -1, -1};
static struct sigaction previous[NSIG_CRASH];
static atomic_int installed;
static int chain_previous;
static atomic_int handled;
static __thread volatile char *current_record;

void bw_crash_set_listeners(const int *fds, int count) {
    for (int i = 0; i < MAX_LISTENERS; i++) atomic_store(&listeners[i], i < count ? fds[i] : -1);
}

void bw_crash_set_current(void *record) { current_record = record; }

int bw_crash_handled(void) { return atomic_load(&handled); }

static void on_crash(int sig, siginfo_t *info, void *uctx) {
    (void)info;
    (void)uctx;
    int saved = errno;
    atomic_fetch_add(&handled, 1);
    volatile char *record = current_record;
    if (record) {
        // The scan this thread held is the one that crashed: its record (a shared mapping of its
        // file, which outlives the process in the page cache) says so for the next start.
        record[0] = 'C';
    }
    // No new connection is taken from here on: the MTA gets a refusal at once (and its
    // milter_default_action) instead of a connection nobody answers while the process ends.
    for (int i = 0; i < MAX_LISTENERS; i++) {
        int l = atomic_exchange(&listeners[i], -1);
        if (l >= 0) {
            shutdown(l, SHUT_RDWR);
            close(l);
        }
    }
    // Then the signal takes its course: the default action (the process ends at once, with a core
    // dump where the limits allow one), or the handler that was there before when asked (Swift's
    // backtracer). A fault returns to the faulting instruction and faults again; a raised signal is
    // raised again.
    for (int i = 0; i < NSIG_CRASH; i++) {
        if (crash_signals[i] != sig) continue;
        if (chain_previous) {
            sigaction(sig, &previous[i], NULL);
        } else {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof(dfl));
            dfl.sa_handler = SIG_DFL;
            sigemptyset(&dfl.sa_mask);
            sigaction(sig, &dfl, NULL);
        }
    }
    raise(sig);
    errno = saved;
}

int bw_crash_install(int chain) {
    int expected = 0;
    if (!atomic_compare_exchange_strong(&installed, &expected, 1)) return 0;
    chain_previous = chain;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (int i = 0; i < NSIG_CRASH; i++) {
        if (sigaction(crash_signals[i], &sa, &previous[i]) != 0) return errno;
    }
    return 0;
}
