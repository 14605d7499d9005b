/* floor_milter.c - the milter benchmark's floor: a libmilter milter that knows every verdict in
 * advance and does no work to reach it.
 *
 *   floor_milter SOCKET [VERDICTS [WORK-US SLOTS]]
 *     SOCKET: libmilter's unix:/path or inet:PORT@HOST
 *     VERDICTS: lines "BENCH-ID<TAB>NAME": a message whose X-Bench-Id header holds BENCH-ID is
 *               rejected at end of message with "550 5.7.1 Rejected: NAME"; any other is accepted.
 *     WORK-US SLOTS: at end of message, spend WORK-US microseconds of CPU (a loop that touches no
 *               memory) in one of SLOTS places, waiting for a free one: a stand-in for a filter
 *               whose scan costs that much, without the scan (the "busy floor": how the MTA and
 *               libmilter fare when sessions wait for a CPU-bound filter).
 *
 * It speaks to the MTA as `breakwater run` does, so that what it costs per message is what
 * libmilter, the protocol and the MTA's handling of the same verdicts cost before any filtering:
 * the same protocol steps negotiated away (over a unix socket also the same no-reply steps), a
 * reply at MAIL FROM, at each body chunk and at end of message, one header added to each accepted
 * message, and the rejected messages rejected (so that the MTA queues and delivers the same ones).
 * bench/milter_bench.py compiles it with `cc -O2 ... -lmilter` and runs it (e) driven directly,
 * beside `breakwater run`, and behind the same Postfix as the filters.
 *
 * Stops on SIGTERM (libmilter's own signal handling). Creates the socket with umask 007, so that a
 * Postfix smtpd (group postfix, set on the socket's directory) can connect.
 */
#include <libmilter/mfapi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    char *id;
    char *name;
} Verdict;

static Verdict *verdicts;
static size_t nverdicts;
static int unix_socket;
static long work_ns;
static int slots_free;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_cond = PTHREAD_COND_INITIALIZER;

static long thread_cpu_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

/* WORK-US of this thread's CPU in one of the SLOTS places. */
static void work(void) {
    pthread_mutex_lock(&slots_lock);
    while (slots_free == 0) pthread_cond_wait(&slots_cond, &slots_lock);
    slots_free--;
    pthread_mutex_unlock(&slots_lock);
    long end = thread_cpu_ns() + work_ns;
    volatile unsigned long x = 0;
    while (thread_cpu_ns() < end)
        for (int i = 0; i < 1000; i++) x += i;
    pthread_mutex_lock(&slots_lock);
    slots_free++;
    pthread_cond_signal(&slots_cond);
    pthread_mutex_unlock(&slots_lock);
}

static int by_id(const void *a, const void *b) {
    return strcmp(((const Verdict *)a)->id, ((const Verdict *)b)->id);
}

static int load_verdicts(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    char line[1024];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        char *tab = strchr(line, '\t');
        if (!tab || tab == line || !tab[1]) continue;
        *tab = 0;
        if (nverdicts == cap) {
            cap = cap ? 2 * cap : 256;
            verdicts = realloc(verdicts, cap * sizeof *verdicts);
            if (!verdicts) return -1;
        }
        verdicts[nverdicts].id = strdup(line);
        verdicts[nverdicts].name = strdup(tab + 1);
        nverdicts++;
    }
    fclose(f);
    qsort(verdicts, nverdicts, sizeof *verdicts, by_id);
    return 0;
}

static sfsistat fm_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1, unsigned long f2,
                             unsigned long f3, unsigned long *pf0, unsigned long *pf1,
                             unsigned long *pf2, unsigned long *pf3) {
    (void)ctx; (void)f2; (void)f3;
    unsigned long want = SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_HDR_LEADSPC | SMFIP_SKIP;
    if (unix_socket)
        want |= SMFIP_NODATA | SMFIP_NOEOH | SMFIP_NR_HDR | SMFIP_NR_RCPT | SMFIP_NR_CONN;
    *pf0 = f0 & (SMFIF_ADDHDRS | SMFIF_QUARANTINE);
    *pf1 = want & f1;
    *pf2 = 0;
    *pf3 = 0;
    return SMFIS_CONTINUE;
}

static sfsistat fm_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr) {
    (void)ctx; (void)host; (void)addr;
    return unix_socket ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat fm_envfrom(SMFICTX *ctx, char **argv) {
    (void)argv;
    smfi_setpriv(ctx, NULL); /* the verdict of this message: none yet */
    return SMFIS_CONTINUE;
}

static sfsistat fm_envrcpt(SMFICTX *ctx, char **argv) {
    (void)ctx; (void)argv;
    return unix_socket ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat fm_header(SMFICTX *ctx, char *name, char *value) {
    if (nverdicts && strcasecmp(name, "X-Bench-Id") == 0) {
        Verdict key = {value + strspn(value, " \t"), NULL};
        /* The private pointer refers into the static table: nothing to free at close. */
        smfi_setpriv(ctx, bsearch(&key, verdicts, nverdicts, sizeof *verdicts, by_id));
    }
    return unix_socket ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat fm_body(SMFICTX *ctx, unsigned char *chunk, size_t len) {
    (void)ctx; (void)chunk; (void)len;
    return SMFIS_CONTINUE;
}

static sfsistat fm_eom(SMFICTX *ctx) {
    if (work_ns > 0) work();
    Verdict *v = smfi_getpriv(ctx);
    smfi_setpriv(ctx, NULL);
    if (v) {
        char text[512];
        snprintf(text, sizeof text, "Rejected: %s", v->name);
        smfi_setreply(ctx, "550", "5.7.1", text);
        return SMFIS_REJECT;
    }
    smfi_addheader(ctx, "X-Floor-Milter", " passed");
    return SMFIS_CONTINUE;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 5 || argc == 4) {
        fprintf(stderr, "usage: floor_milter unix:/path|inet:PORT@HOST [VERDICTS [WORK-US SLOTS]]\n");
        return 2;
    }
    if (argc >= 3 && load_verdicts(argv[2]) != 0) return 1;
    if (argc == 5) {
        work_ns = atol(argv[3]) * 1000L;
        slots_free = atoi(argv[4]);
        if (work_ns <= 0 || slots_free <= 0) {
            fprintf(stderr, "floor_milter: WORK-US and SLOTS must be positive\n");
            return 2;
        }
    }
    unix_socket = strncmp(argv[1], "unix:", 5) == 0 || strncmp(argv[1], "local:", 6) == 0;
    struct smfiDesc desc;
    memset(&desc, 0, sizeof desc);
    desc.xxfi_name = "floor_milter";
    desc.xxfi_version = SMFI_VERSION;
    desc.xxfi_flags = SMFIF_ADDHDRS | SMFIF_QUARANTINE;
    desc.xxfi_negotiate = fm_negotiate;
    desc.xxfi_connect = fm_connect;
    desc.xxfi_envfrom = fm_envfrom;
    desc.xxfi_envrcpt = fm_envrcpt;
    desc.xxfi_header = fm_header;
    desc.xxfi_body = fm_body;
    desc.xxfi_eom = fm_eom;
    umask(007);
    if (smfi_setconn(argv[1]) == MI_FAILURE || smfi_setbacklog(256) == MI_FAILURE
        || smfi_register(desc) == MI_FAILURE) {
        fprintf(stderr, "floor_milter: cannot set up %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
