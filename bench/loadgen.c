/* loadgen.c - the benchmark's load generator: many concurrent SMTP or milter sessions
 * from one thread (epoll), so that the client costs little CPU next to what it measures.
 * bench/milter_bench.py compiles it with `cc -O2` at bench time.
 *
 *   loadgen smtp   HOST PORT CONCURRENCY LISTFILE OUTFILE [options]
 *   loadgen milter HOST PORT CONCURRENCY LISTFILE OUTFILE [options]
 *     HOST: an IPv4 address, or unix:/path for a unix stream socket (PORT is then ignored)
 *     --max-attempts N    tries per message when the answer is 4xx or a connection error (default 30)
 *     --retry-delay-ms N  earliest retry of a 4xx'd message (default 100; fresh messages go first)
 *     --timeout-s N       a session that takes longer is recorded as a timeout (default 600)
 *     --sender ADDR --rcpt ADDR
 *
 * LISTFILE holds one message path a line (CRLF line ends, as corpus.py writes them).
 * It loads every message, prints "READY" on stdout and waits for a line on stdin, then
 * runs: each message in its own session (one connection per message, as a client MTA does
 * and as Postfix does with a milter). smtp: EHLO, MAIL FROM (with SIZE), RCPT TO, DATA, QUIT.
 * milter: the MTA side of the milter protocol v6 (OPTNEG, CONNECT, HELO, MAIL, RCPT, DATA,
 * headers, EOH, body in 64 KB chunks, EOM, QUIT), honouring the steps the milter skips
 * (SMFIP_NO*) and the ones it does not answer (SMFIP_NR_*), as Postfix does.
 * A message answered 4xx (or whose connection failed) is tried again later.
 *
 * OUTFILE gets one line per attempt:
 *   index attempt stage code latency_us start_us end_us text
 * (tab-separated; stage: CONNECT HELO MAIL RCPT DATA EOM ...; code: the SMTP code, for milter
 * mode the code the MTA would send (accept/continue 250, reject 550, tempfail 451, replycode
 * as given, discard 250), -1 timeout, -2 connection error). The last stdout line is a summary:
 *   DONE wall_us=.. attempts=.. user_us=.. sys_us=..
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char *raw;        /* message as read (CRLF) */
    size_t rawlen;
    char *smtp;       /* dot-stuffed + ".\r\n" */
    size_t smtplen;
    size_t hdrlen;    /* offset of the body (after the blank line) */
} Msg;

typedef struct {
    int idx, attempt;
    const char *stage;
    int code;
    int64_t lat_us, start_us, end_us;
    char text[240];
} Result;

typedef struct {
    int idx, attempt;
    int64_t not_before;
} Job;

enum { M_SMTP, M_MILTER };

/* connection states */
enum {
    S_IDLE, S_CONNECTING,
    /* smtp */
    S_GREET, S_EHLO, S_MAIL, S_RCPT, S_DATA, S_DOT, S_QUIT,
    /* milter: waiting for the reply to the step named */
    S_M_OPTNEG, S_M_STEP
};

/* milter steps in order */
enum { ST_CONNECT, ST_HELO, ST_MAIL, ST_RCPT, ST_DATA, ST_HEADERS, ST_EOH, ST_BODY, ST_EOM, ST_DONE };
static const char *step_names[] = {"CONNECT", "HELO", "MAIL", "RCPT", "DATA", "HEADER", "EOH", "BODY", "EOM", "DONE"};

typedef struct {
    int fd, state, idx, attempt;
    int64_t start_us, last_us;
    char *out; size_t outlen, outcap, outpos;
    const char *big; size_t biglen, bigpos;   /* large payload sent after out (smtp DATA) */
    char *in; size_t inlen, incap;
    /* milter */
    uint32_t proto;
    int step, hdr_i;
    size_t body_off;
    int body_skip;
    int final_code; char final_text[240]; const char *final_stage;
    int quarantined;
    char added[160];
} Conn;

static Msg *msgs; static int nmsgs;
static Result *results; static size_t nresults, capresults;
static Job *fresh; static int nfresh, freshpos;
static Job *retryq; static int nretry, retrypos, capretry;
static int mode, epfd;
static struct sockaddr_in addr;
static struct sockaddr_un uaddr;
static int use_unix;
static int max_attempts = 30, retry_delay_ms = 100, timeout_s = 600;
static const char *sender = "<bench@client.example>", *rcpt = "<rcpt@bench.example>";
static int64_t t0;
static int outstanding; /* messages not finished */

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void die(const char *m) { perror(m); exit(2); }

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    struct stat st;
    fstat(fileno(f), &st);
    char *b = malloc(st.st_size + 1);
    if (fread(b, 1, st.st_size, f) != (size_t)st.st_size) die("read");
    fclose(f);
    b[st.st_size] = 0;
    *len = st.st_size;
    return b;
}

static void prepare(Msg *m) {
    /* dot-stuff and terminate for SMTP; make sure the message ends with CRLF */
    size_t cap = m->rawlen * 2 / 1 + 16;
    if (cap > m->rawlen + m->rawlen / 10 + 1024) cap = m->rawlen + m->rawlen / 10 + 1024;
    char *o = malloc(cap);
    size_t n = 0;
    int bol = 1;
    for (size_t i = 0; i < m->rawlen; i++) {
        if (n + 8 > cap) { cap = cap * 2; o = realloc(o, cap); }
        char c = m->raw[i];
        if (bol && c == '.') o[n++] = '.';
        o[n++] = c;
        bol = (c == '\n');
    }
    if (n + 8 > cap) { cap += 8; o = realloc(o, cap); }
    if (!bol) { o[n++] = '\r'; o[n++] = '\n'; }
    memcpy(o + n, ".\r\n", 3); n += 3;
    m->smtp = o; m->smtplen = n;
    char *p = memmem(m->raw, m->rawlen, "\r\n\r\n", 4);
    m->hdrlen = p ? (size_t)(p - m->raw) + 4 : m->rawlen;
}

/* ---- output buffer ---- */
static void out_put(Conn *c, const void *d, size_t n) {
    if (c->outlen + n > c->outcap) {
        while (c->outlen + n > c->outcap) c->outcap = c->outcap ? c->outcap * 2 : 4096;
        c->out = realloc(c->out, c->outcap);
    }
    memcpy(c->out + c->outlen, d, n);
    c->outlen += n;
}

static void out_str(Conn *c, const char *s) { out_put(c, s, strlen(s)); }

static void pkt_begin(Conn *c, char cmd, size_t datalen) {
    uint32_t len = htonl((uint32_t)datalen + 1);
    out_put(c, &len, 4);
    out_put(c, &cmd, 1);
}

static void pkt(Conn *c, char cmd, const void *data, size_t n) {
    pkt_begin(c, cmd, n);
    if (n) out_put(c, data, n);
}

static void want(Conn *c, int out) {
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void add_result(Conn *c, const char *stage, int code, const char *text) {
    if (nresults == capresults) {
        capresults = capresults ? capresults * 2 : 4096;
        results = realloc(results, capresults * sizeof(Result));
    }
    Result *r = &results[nresults++];
    int64_t t = now_us();
    r->idx = c->idx; r->attempt = c->attempt; r->stage = stage; r->code = code;
    r->lat_us = t - c->start_us; r->start_us = c->start_us - t0; r->end_us = t - t0;
    size_t j = 0;
    for (size_t i = 0; text && text[i] && j < sizeof r->text - 1; i++) {
        char ch = text[i];
        if (ch == '\t' || ch == '\r' || ch == '\n') ch = ' ';
        r->text[j++] = ch;
    }
    r->text[j] = 0;
    int transient = (code >= 400 && code < 500) || code < 0;
    if (transient && c->attempt + 1 < max_attempts) {
        if (nretry == capretry) {
            capretry = capretry ? capretry * 2 : 1024;
            retryq = realloc(retryq, capretry * sizeof(Job));
        }
        retryq[nretry++] = (Job){c->idx, c->attempt + 1, t + (int64_t)retry_delay_ms * 1000};
    } else {
        outstanding--;
    }
}

static void conn_close(Conn *c) {
    if (c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = S_IDLE;
    c->outlen = c->outpos = 0;
    c->big = NULL; c->biglen = c->bigpos = 0;
    c->inlen = 0;
}

static int conn_start(Conn *c, Job j) {
    c->idx = j.idx; c->attempt = j.attempt;
    c->start_us = c->last_us = now_us();
    c->outlen = c->outpos = c->inlen = 0;
    c->big = NULL;
    c->step = ST_CONNECT; c->hdr_i = 0; c->body_off = 0; c->body_skip = 0; c->quarantined = 0;
    c->final_code = 0; c->final_text[0] = 0; c->final_stage = NULL; c->added[0] = 0;
    c->fd = socket(use_unix ? AF_UNIX : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) die("socket");
    int one = 1;
    if (!use_unix) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    int r = use_unix ? connect(c->fd, (struct sockaddr *)&uaddr, sizeof uaddr)
                     : connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) {
        char t[120]; snprintf(t, sizeof t, "connect: %s", strerror(errno));
        add_result(c, "CONNECT", -2, t);
        conn_close(c);
        return 0;
    }
    c->state = S_CONNECTING;
    return 1;
}

/* ---- SMTP ---- */
/* Returns 1 with code/text when a full reply is in the buffer (and consumes it). */
static int smtp_reply(Conn *c, int *code, char *text, size_t tlen) {
    size_t pos = 0;
    while (pos < c->inlen) {
        char *nl = memchr(c->in + pos, '\n', c->inlen - pos);
        if (!nl) return 0;
        size_t ll = nl - (c->in + pos);
        char *line = c->in + pos;
        if (ll < 4 || line[3] == ' ' || line[3] == '\r') {
            *code = atoi(line);
            size_t n = ll; if (n && line[n - 1] == '\r') n--;
            if (n >= tlen) n = tlen - 1;
            memcpy(text, line, n); text[n] = 0;
            size_t consumed = pos + ll + 1;
            memmove(c->in, c->in + consumed, c->inlen - consumed);
            c->inlen -= consumed;
            return 1;
        }
        pos += ll + 1;
    }
    return 0;
}

static void smtp_advance(Conn *c) {
    int code; char text[240];
    while (smtp_reply(c, &code, text, sizeof text)) {
        Msg *m = &msgs[c->idx];
        char buf[512];
        switch (c->state) {
        case S_GREET:
            if (code != 220) { add_result(c, "CONNECT", code, text); conn_close(c); return; }
            out_str(c, "EHLO client.example\r\n"); c->state = S_EHLO; break;
        case S_EHLO:
            if (code != 250) { add_result(c, "HELO", code, text); goto quit; }
            snprintf(buf, sizeof buf, "MAIL FROM:%s SIZE=%zu\r\n", sender, m->rawlen);
            out_str(c, buf); c->state = S_MAIL; break;
        case S_MAIL:
            if (code != 250) { add_result(c, "MAIL", code, text); goto quit; }
            snprintf(buf, sizeof buf, "RCPT TO:%s\r\n", rcpt);
            out_str(c, buf); c->state = S_RCPT; break;
        case S_RCPT:
            if (code != 250 && code != 251) { add_result(c, "RCPT", code, text); goto quit; }
            out_str(c, "DATA\r\n"); c->state = S_DATA; break;
        case S_DATA:
            if (code != 354) { add_result(c, "DATA", code, text); goto quit; }
            c->big = m->smtp; c->biglen = m->smtplen; c->bigpos = 0;
            c->state = S_DOT; break;
        case S_DOT:
            add_result(c, "END-OF-DATA", code, text);
            goto quit;
        case S_QUIT:
            conn_close(c); return;
        }
        continue;
    quit:
        out_str(c, "QUIT\r\n"); c->state = S_QUIT;
    }
}

/* ---- milter ---- */
#define SMFIP_NOCONNECT 0x1
#define SMFIP_NOHELO 0x2
#define SMFIP_NOMAIL 0x4
#define SMFIP_NORCPT 0x8
#define SMFIP_NOBODY 0x10
#define SMFIP_NOHDRS 0x20
#define SMFIP_NOEOH 0x40
#define SMFIP_NR_HDR 0x80
#define SMFIP_NODATA 0x200
#define SMFIP_NR_CONN 0x1000
#define SMFIP_NR_HELO 0x2000
#define SMFIP_NR_MAIL 0x4000
#define SMFIP_NR_RCPT 0x8000
#define SMFIP_NR_DATA 0x10000
#define SMFIP_NR_EOH 0x40000
#define SMFIP_NR_BODY 0x80000
#define SMFIP_HDR_LEADSPC 0x100000

static void macro(Conn *c, char where, const char **kv, int n) {
    size_t len = 1;
    for (int i = 0; i < n; i++) len += strlen(kv[i]) + 1;
    pkt_begin(c, 'D', len);
    out_put(c, &where, 1);
    for (int i = 0; i < n; i++) out_put(c, kv[i], strlen(kv[i]) + 1);
}

/* Writes packets up to and including the next step that needs a reply; returns 0 when the
 * session has nothing left to send before EOM's answer (should not happen). */
static void milter_send_until_reply(Conn *c) {
    Msg *m = &msgs[c->idx];
    uint32_t p = c->proto;
    for (;;) {
        int skip = 0, noreply = 0;
        switch (c->step) {
        case ST_CONNECT: {
            skip = p & SMFIP_NOCONNECT; noreply = p & SMFIP_NR_CONN;
            if (skip) break;
            const char *kv[] = {"j", "mx.bench.test", "{daemon_name}", "bench"};
            macro(c, 'C', kv, 4);
            const char host[] = "client.example";
            const char ip[] = "127.0.0.1";
            uint16_t port = htons(40000);
            pkt_begin(c, 'C', sizeof host + 1 + 2 + sizeof ip);
            out_put(c, host, sizeof host); out_put(c, "4", 1); out_put(c, &port, 2); out_put(c, ip, sizeof ip);
            break;
        }
        case ST_HELO:
            skip = p & SMFIP_NOHELO; noreply = p & SMFIP_NR_HELO;
            if (!skip) pkt(c, 'H', "client.example", 15);
            break;
        case ST_MAIL: {
            skip = p & SMFIP_NOMAIL; noreply = p & SMFIP_NR_MAIL;
            if (skip) break;
            char size[48]; int sl = snprintf(size, sizeof size, "SIZE=%zu", m->rawlen) + 1;
            const char *kv[] = {"{mail_addr}", "bench@client.example"};
            macro(c, 'M', kv, 2);
            pkt_begin(c, 'M', strlen(sender) + 1 + sl);
            out_put(c, sender, strlen(sender) + 1); out_put(c, size, sl);
            break;
        }
        case ST_RCPT: {
            skip = p & SMFIP_NORCPT; noreply = p & SMFIP_NR_RCPT;
            if (skip) break;
            char qid[32]; snprintf(qid, sizeof qid, "B%dA%d", c->idx, c->attempt);
            const char *kv[] = {"i", qid, "{rcpt_addr}", "rcpt@bench.example"};
            macro(c, 'R', kv, 4);
            pkt(c, 'R', rcpt, strlen(rcpt) + 1);
            break;
        }
        case ST_DATA:
            skip = p & SMFIP_NODATA; noreply = p & SMFIP_NR_DATA;
            if (!skip) pkt(c, 'T', NULL, 0);
            break;
        case ST_HEADERS: {
            skip = p & SMFIP_NOHDRS; noreply = p & SMFIP_NR_HDR;
            if (skip) break;
            /* header c->hdr_i of the message: walk the header block each time (cheap) */
            const char *h = m->raw, *end = m->raw + (m->hdrlen >= 4 ? m->hdrlen - 2 : 0);
            int i = 0;
            const char *cur = h;
            const char *start = NULL, *stop = NULL;
            while (cur < end) {
                const char *nl = memmem(cur, end - cur, "\r\n", 2);
                if (!nl) nl = end;
                if (cur == h || (*cur != ' ' && *cur != '\t')) {
                    if (start) { if (i == c->hdr_i) { stop = cur; break; } i++; }
                    start = cur;
                }
                cur = nl + 2;
            }
            if (start && !stop) { if (i == c->hdr_i) stop = end; else start = NULL; }
            if (!start || start >= end) { c->step = ST_EOH; continue; } /* no more headers */
            const char *colon = memchr(start, ':', stop - start);
            if (!colon) { c->hdr_i++; continue; }
            const char *v = colon + 1;
            if (!(p & SMFIP_HDR_LEADSPC) && v < stop && (*v == ' ' || *v == '\t')) v++;
            size_t vl = stop - v;
            if (vl >= 2 && v[vl - 2] == '\r') vl -= 2;
            /* folded lines: CRLF -> LF, as Postfix sends them */
            char *val = malloc(vl + 1); size_t k = 0;
            for (size_t q = 0; q < vl; q++) { if (v[q] == '\r' && q + 1 < vl && v[q + 1] == '\n') continue; val[k++] = v[q]; }
            val[k] = 0;
            size_t nl_ = colon - start;
            pkt_begin(c, 'L', nl_ + 1 + k + 1);
            out_put(c, start, nl_); out_put(c, "", 1); out_put(c, val, k + 1);
            free(val);
            c->hdr_i++;
            if (noreply) continue; /* next header */
            c->state = S_M_STEP; want(c, 1);
            return;
        }
        case ST_EOH:
            skip = p & SMFIP_NOEOH; noreply = p & SMFIP_NR_EOH;
            if (!skip) pkt(c, 'N', NULL, 0);
            break;
        case ST_BODY: {
            skip = (p & SMFIP_NOBODY) || c->body_skip; noreply = p & SMFIP_NR_BODY;
            size_t blen = m->rawlen - m->hdrlen;
            if (skip || c->body_off >= blen) { c->step = ST_EOM; continue; }
            size_t n = blen - c->body_off; if (n > 65535) n = 65535;
            pkt(c, 'B', m->raw + m->hdrlen + c->body_off, n);
            c->body_off += n;
            if (noreply) continue;
            c->state = S_M_STEP; want(c, 1);
            return;
        }
        case ST_EOM:
            pkt(c, 'E', NULL, 0);
            c->state = S_M_STEP; want(c, 1);
            return;
        default:
            return;
        }
        if (skip || noreply) { c->step++; continue; }
        c->state = S_M_STEP; want(c, 1); /* wait for this step's reply */
        return;
    }
}

static void milter_finish(Conn *c, const char *stage, int code, const char *text) {
    add_result(c, stage, code, text);
    pkt(c, 'Q', NULL, 0);
    c->state = S_QUIT; /* close once written */
    want(c, 1);
}

static void milter_advance(Conn *c) {
    while (c->fd >= 0 && c->inlen >= 5) {
        uint32_t len; memcpy(&len, c->in, 4); len = ntohl(len);
        if (len < 1 || len > (64u << 20)) { add_result(c, step_names[c->step], -2, "bad packet"); conn_close(c); return; }
        if (c->inlen < 4 + len) return;
        char cmd = c->in[4];
        char *data = c->in + 5; size_t dlen = len - 1;
        char text[240]; text[0] = 0;
        int send_on = 0;
        if (c->state == S_M_OPTNEG) {
            if (cmd != 'O' || dlen < 12) { add_result(c, "OPTNEG", -2, "bad negotiation"); conn_close(c); return; }
            uint32_t v[3]; memcpy(v, data, 12);
            c->proto = ntohl(v[2]);
            c->step = ST_CONNECT;
            send_on = 1;
        } else if (c->state == S_M_STEP) {
            const char *st = step_names[c->step];
            switch (cmd) {
            case 'p': break; /* progress */
            case 'q': c->quarantined = 1; break;
            case 'h': case 'i': { /* added header: note its name */
                const char *name = cmd == 'i' ? data + 4 : data;
                size_t have = strlen(c->added), room = sizeof c->added - have - 2;
                size_t nl = strnlen(name, dlen);
                if (nl < room) { if (have) c->added[have++] = ','; memcpy(c->added + have, name, nl); c->added[have + nl] = 0; }
                break;
            }
            case 'm': case '+': case '-': case '2': case 'b': case 'e': case 'l':
                break; /* other modifications */
            case 'c':
                if (c->step == ST_EOM) {
                    snprintf(text, sizeof text, "continue%s headers=%s", c->quarantined ? " quarantine" : "", c->added);
                    milter_finish(c, "EOM", 250, text);
                    break;
                }
                if (c->step != ST_HEADERS && c->step != ST_BODY) c->step++;
                send_on = 1;
                break;
            case 's': c->body_skip = 1; send_on = 1; break; /* skip the rest of the body */
            case 'a': milter_finish(c, st, 250, "accept"); break;
            case 'd': milter_finish(c, st, 250, "discard"); break;
            case 'r': milter_finish(c, st, 550, "reject"); break;
            case 't': milter_finish(c, st, 451, "tempfail"); break;
            case 'y': {
                size_t n = dlen < sizeof text - 1 ? dlen : sizeof text - 1;
                memcpy(text, data, n); text[n] = 0;
                milter_finish(c, st, atoi(text), text);
                break;
            }
            case '4': milter_finish(c, st, 421, "shutdown"); break;
            case 'f': milter_finish(c, st, -2, "connection failure"); break;
            default: {
                char t[64]; snprintf(t, sizeof t, "unexpected reply %c", cmd);
                milter_finish(c, st, -2, t);
            }
            }
        } /* after QUIT: ignore */
        size_t consumed = 4 + len;
        memmove(c->in, c->in + consumed, c->inlen - consumed);
        c->inlen -= consumed;
        if (send_on) { c->state = S_M_STEP; milter_send_until_reply(c); }
    }
}

static void on_connected(Conn *c) {
    int err = 0; socklen_t el = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el);
    if (err) {
        char t[120]; snprintf(t, sizeof t, "connect: %s", strerror(err));
        add_result(c, "CONNECT", -2, t);
        conn_close(c);
        return;
    }
    if (mode == M_SMTP) {
        c->state = S_GREET;
        want(c, 0);
    } else {
        uint32_t v[3] = {htonl(6), htonl(0x1FF), htonl(0x1FFFFF)};
        pkt(c, 'O', v, 12);
        c->state = S_M_OPTNEG;
        want(c, 1);
    }
}

static void do_write(Conn *c) {
    while (c->outpos < c->outlen || (c->big && c->bigpos < c->biglen)) {
        ssize_t w;
        if (c->outpos < c->outlen) w = send(c->fd, c->out + c->outpos, c->outlen - c->outpos, MSG_NOSIGNAL);
        else w = send(c->fd, c->big + c->bigpos, c->biglen - c->bigpos, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) { want(c, 1); return; }
            char t[120]; snprintf(t, sizeof t, "send: %s", strerror(errno));
            if (c->state != S_QUIT) add_result(c, mode == M_SMTP ? "SEND" : step_names[c->step], -2, t);
            conn_close(c);
            return;
        }
        if (c->outpos < c->outlen) c->outpos += w; else c->bigpos += w;
    }
    c->outpos = c->outlen = 0;
    c->big = NULL;
    if (mode == M_MILTER && c->state == S_QUIT) { conn_close(c); return; }
    want(c, 0);
}

static void do_read(Conn *c) {
    for (;;) {
        if (c->incap - c->inlen < 65536) {
            c->incap = c->incap ? c->incap * 2 : 131072;
            c->in = realloc(c->in, c->incap);
        }
        ssize_t r = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, 0);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (c->state != S_QUIT) { char t[120]; snprintf(t, sizeof t, "recv: %s", strerror(errno)); add_result(c, mode == M_SMTP ? "READ" : step_names[c->step], -2, t); }
            conn_close(c); return;
        }
        if (r == 0) {
            if (mode == M_SMTP) smtp_advance(c); else milter_advance(c);
            if (c->fd >= 0 && c->state != S_QUIT && c->state != S_IDLE) {
                add_result(c, mode == M_SMTP ? "READ" : step_names[c->step], -2, "connection closed by peer");
            }
            if (c->fd >= 0) conn_close(c);
            return;
        }
        c->inlen += r;
        c->last_us = now_us();
    }
    if (mode == M_SMTP) smtp_advance(c); else milter_advance(c);
    if (c->fd >= 0 && c->state != S_IDLE && (c->outlen > c->outpos || c->big)) do_write(c);
}

static int next_job(Job *j, int64_t t, int64_t *wait_us) {
    if (freshpos < nfresh) { *j = fresh[freshpos++]; return 1; }
    if (retrypos < nretry) {
        if (retryq[retrypos].not_before <= t) { *j = retryq[retrypos++]; return 1; }
        int64_t w = retryq[retrypos].not_before - t;
        if (*wait_us < 0 || w < *wait_us) *wait_us = w;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 7) { fprintf(stderr, "usage: loadgen smtp|milter HOST PORT CONCURRENCY LISTFILE OUTFILE [options]\n"); return 2; }
    signal(SIGPIPE, SIG_IGN);
    mode = strcmp(argv[1], "milter") == 0 ? M_MILTER : M_SMTP;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(atoi(argv[3]));
    if (strncmp(argv[2], "unix:", 5) == 0) {  /* HOST unix:/path: a unix stream socket (PORT ignored) */
        use_unix = 1;
        memset(&uaddr, 0, sizeof uaddr);
        uaddr.sun_family = AF_UNIX;
        snprintf(uaddr.sun_path, sizeof uaddr.sun_path, "%s", argv[2] + 5);
    } else if (inet_pton(AF_INET, argv[2], &addr.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[2]);
        return 2;
    }
    int conc = atoi(argv[4]);
    const char *list = argv[5], *outfile = argv[6];
    for (int i = 7; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--max-attempts")) max_attempts = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--retry-delay-ms")) retry_delay_ms = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout-s")) timeout_s = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--sender")) sender = argv[i + 1];
        else if (!strcmp(argv[i], "--rcpt")) rcpt = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);

    FILE *lf = fopen(list, "r");
    if (!lf) die(list);
    char line[4096]; int cap = 0;
    while (fgets(line, sizeof line, lf)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (nmsgs == cap) { cap = cap ? cap * 2 : 1024; msgs = realloc(msgs, cap * sizeof(Msg)); }
        Msg *m = &msgs[nmsgs++];
        m->raw = read_file(line, &m->rawlen);
        if (mode == M_SMTP) prepare(m); else {
            char *p = memmem(m->raw, m->rawlen, "\r\n\r\n", 4);
            m->hdrlen = p ? (size_t)(p - m->raw) + 4 : m->rawlen;
        }
    }
    fclose(lf);
    fresh = malloc(sizeof(Job) * (nmsgs + 1));
    for (int i = 0; i < nmsgs; i++) fresh[i] = (Job){i, 0, 0};
    nfresh = nmsgs; outstanding = nmsgs;

    printf("READY %d\n", nmsgs);
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin)) return 2;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    Conn *conns = calloc(conc, sizeof(Conn));
    for (int i = 0; i < conc; i++) conns[i].fd = -1;
    struct rusage ru0; getrusage(RUSAGE_SELF, &ru0);
    t0 = now_us();
    struct epoll_event evs[256];
    int64_t last_timeout_check = t0;
    while (outstanding > 0) {
        int64_t t = now_us(), wait_us = -1;
        for (int i = 0; i < conc; i++) {
            if (conns[i].state != S_IDLE) continue;
            Job j;
            while (conns[i].state == S_IDLE && next_job(&j, t, &wait_us)) conn_start(&conns[i], j);
        }
        int timeout_ms = 200;
        if (wait_us >= 0 && wait_us / 1000 + 1 < timeout_ms) timeout_ms = (int)(wait_us / 1000) + 1;
        int n = epoll_wait(epfd, evs, 256, timeout_ms);
        for (int k = 0; k < n; k++) {
            Conn *c = evs[k].data.ptr;
            if (c->fd < 0) continue;
            if (c->state == S_CONNECTING) {
                if (evs[k].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_connected(c);
                continue;
            }
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) do_read(c);
            if (c->fd >= 0 && (evs[k].events & EPOLLOUT)) do_write(c);
        }
        t = now_us();
        if (t - last_timeout_check > 1000000) {
            last_timeout_check = t;
            for (int i = 0; i < conc; i++) {
                Conn *c = &conns[i];
                if (c->state != S_IDLE && t - c->start_us > (int64_t)timeout_s * 1000000) {
                    if (c->state != S_QUIT) add_result(c, mode == M_SMTP ? "TIMEOUT" : step_names[c->step], -1, "timeout");
                    conn_close(c);
                }
            }
        }
    }
    /* let sessions in QUIT finish */
    int64_t tend = now_us();
    for (int spins = 0; spins < 50; spins++) {
        int busy = 0;
        for (int i = 0; i < conc; i++) if (conns[i].state != S_IDLE) busy = 1;
        if (!busy) break;
        int n = epoll_wait(epfd, evs, 256, 100);
        for (int k = 0; k < n; k++) {
            Conn *c = evs[k].data.ptr;
            if (c->fd < 0) continue;
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) do_read(c);
            if (c->fd >= 0 && (evs[k].events & EPOLLOUT)) do_write(c);
        }
    }
    for (int i = 0; i < conc; i++) if (conns[i].state != S_IDLE) conn_close(&conns[i]);
    struct rusage ru1; getrusage(RUSAGE_SELF, &ru1);
    FILE *of = fopen(outfile, "w");
    if (!of) die(outfile);
    for (size_t i = 0; i < nresults; i++) {
        Result *r = &results[i];
        fprintf(of, "%d\t%d\t%s\t%d\t%lld\t%lld\t%lld\t%s\n", r->idx, r->attempt, r->stage, r->code,
                (long long)r->lat_us, (long long)r->start_us, (long long)r->end_us, r->text);
    }
    fclose(of);
    long long uu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1000000LL + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec);
    long long su = (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1000000LL + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec);
    printf("DONE wall_us=%lld attempts=%zu user_us=%lld sys_us=%lld\n", (long long)(tend - t0), nresults, uu, su);
    return 0;
}
