// hold-streams: holds many streaming chat completions open at once and measures the delay a proxy adds per chunk —
// bench/hold-streams.mjs in C, for when the Node.js client is itself the bottleneck (at thousands of streams on two
// cores it is: its own event loop then adds hundreds of milliseconds to every chunk it times).
//
// One thread, one epoll loop, non-blocking sockets, nothing allocated per chunk. Opens --streams connections (one
// stream each, "Connection: close"), --ramp per second, and reads every SSE answer to its end. The upstream must be
// `sluice mock-upstream --timestamp-chunks`: each content chunk's text is its send time (t=<Unix ms>;), so the delay
// per chunk is the receive time minus that (same machine, same clock). Prints progress every 5 s to stderr and one
// JSON object to stdout, the same as hold-streams.mjs: ok, errors by kind, the highest number open at once, time to
// first byte, inter-chunk gap and the added delay per chunk (p50/p90/p99/p99.9/max, ms) — over the whole run, and
// over the chunks received once every stream is open and --settle-ms (default 5000) more have passed ("held": the
// ramp of new connections, a burst of accepts, upstream connects and JIT work on a small machine, is left out).
//
// Build: cc -O2 -o hold-streams bench/hold-streams.c   (bench/proxied-streams.sh builds it with --client c)
// Usage: hold-streams --url http://127.0.0.1:PORT [--key K] [--model M] [--streams N] [--ramp N] [--max-tokens N] [--timeout-s S] [--settle-ms MS] [--ramp-step-ms MS] [--unstamped 1]
// --ramp-step-ms: how often a batch of new streams opens (default 1: --ramp / 1000 at a time, spread as independent
// callers arrive; 50 opens --ramp / 20 at once, and their paced chunks then come due together, in lockstep).
// HOLD_STREAMS_DUMP=FILE (environment): every held chunk's receive time and delay ("ms ms" per line), to see when a tail happens.
// --unstamped 1: any non-empty content chunk counts (for models without stamps, e.g. a simulated one at 1 token/s): the
// gaps between chunks are measured (held_gap_ms: those ending once every stream is held), there is no per-chunk delay.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CARRY 96 // bytes kept between reads: more than the longest stamp pattern

typedef struct {
  int fd, state; // 0 free, 1 connecting, 2 reading head, 3 reading body
  double sent, last;
  int done, head_len, status;
  char head[1024];
  int carry_len;
  char carry[CARRY];
} conn_t;

typedef struct { double *v; size_t n, cap; } series_t;

static void push(series_t *s, double x) {
  if (s->n == s->cap) {
    s->cap = s->cap ? s->cap * 2 : 4096;
    s->v = realloc(s->v, s->cap * sizeof(double));
    if (!s->v) { fprintf(stderr, "hold-streams: out of memory\n"); exit(3); }
  }
  s->v[s->n++] = x;
}

static double wall_ms(void) { // the mock stamps Unix time in ms: same clock
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void summary(const char *name, series_t *s, int last) {
  if (!s->n) { printf("\"%s\":null%s", name, last ? "" : ","); return; }
  qsort(s->v, s->n, sizeof(double), cmp);
#define AT(p) (s->v[(size_t)((p) * s->n) < s->n ? (size_t)((p) * s->n) : s->n - 1])
  printf("\"%s\":{\"count\":%zu,\"p50\":%.2f,\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f}%s", name, s->n,
         AT(0.5), AT(0.9), AT(0.99), AT(0.999), s->v[s->n - 1], last ? "" : ",");
}

// Errors by kind: a short fixed list is enough.
static const char *kinds[16]; static long kind_count[16]; static int nkinds;
static void fail(const char *kind) {
  for (int i = 0; i < nkinds; i++) if (!strcmp(kinds[i], kind)) { kind_count[i]++; return; }
  if (nkinds < 16) { kinds[nkinds] = kind; kind_count[nkinds++] = 1; }
}

int main(int argc, char **argv) {
  const char *url = "http://127.0.0.1:8080", *key = "", *model = "mock";
  long streams = 8000, ramp = 1000, max_tokens = 60, timeout_s = 300, unstamped = 0, settle_ms = 5000, ramp_step_ms = 1;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--url")) url = argv[i + 1];
    else if (!strcmp(argv[i], "--key")) key = argv[i + 1];
    else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!strcmp(argv[i], "--streams")) streams = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--ramp")) ramp = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--timeout-s")) timeout_s = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--unstamped")) unstamped = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--settle-ms")) settle_ms = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "--ramp-step-ms")) ramp_step_ms = atol(argv[i + 1]);
    else { fprintf(stderr, "hold-streams: unknown option '%s'.\n", argv[i]); return 2; }
  }
  char host[64]; int port;
  if (sscanf(url, "http://%63[0-9.]:%d", host, &port) != 2) {
    fprintf(stderr, "hold-streams: --url must be http://IPv4:PORT, not '%s'.\n", url);
    return 2;
  }
  if (streams < 1 || ramp < 1 || ramp_step_ms < 1) { fprintf(stderr, "hold-streams: --streams, --ramp and --ramp-step-ms must be positive.\n"); return 2; }
  struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl);
  rl.rlim_cur = rl.rlim_max; setrlimit(RLIMIT_NOFILE, &rl);
  if ((long)rl.rlim_cur < streams + 16) {
    fprintf(stderr, "hold-streams: %ld streams need %ld open files, the limit is %ld; raise it (ulimit -n).\n", streams, streams + 16, (long)rl.rlim_cur);
    return 2;
  }

  char body[512], request[2048];
  int body_len = snprintf(body, sizeof body,
      "{\"model\":\"%s\",\"stream\":true,\"max_tokens\":%ld,\"messages\":[{\"role\":\"user\",\"content\":\"Hold this stream open.\"}]}", model, max_tokens);
  char auth[600] = "";
  if (*key) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
  int request_len = snprintf(request, sizeof request,
      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n"
      "Connection: close\r\n%sContent-Length: %d\r\n\r\n%s", host, port, auth, body_len, body);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
  inet_pton(AF_INET, host, &addr.sin_addr);

  conn_t *conns = calloc(streams, sizeof(conn_t));
  series_t delays = {0}, held = {0}, held_at = {0}, gaps = {0}, held_gaps = {0}, ttfb = {0};
  const char *dump = getenv("HOLD_STREAMS_DUMP"); // "receive-ms delay-ms" per held chunk, to see when the tail happens
  double held_from = 0; // set once the last stream is opened: + settle_ms
  long started = 0, open_now = 0, max_open = 0, finished = 0, ok = 0, chunks = 0;
  int ep = epoll_create1(0);
  static char buf[1 << 16], scan[(1 << 16) + CARRY + 1];
  double t0 = wall_ms(), next_batch = t0, next_progress = t0 + 5000, deadline = t0 + timeout_s * 1000.0;
  // --ramp per second, opened every --ramp-step-ms: 1 ms steps (the default) start streams — and so, with a paced mock,
  // their chunks — spread over time as independent callers would; 50 ms steps (before the twentieth session) start
  // them, and pace every later chunk, in lockstep batches of ramp / 20.
  long batch = (long)((double)ramp * ramp_step_ms / 1000.0) > 0 ? (long)((double)ramp * ramp_step_ms / 1000.0) : 1;
  double step_ms = (double)batch * 1000.0 / (double)ramp;
  struct epoll_event events[512];

  while (finished < streams) {
    double now = wall_ms();
    if (now > deadline) {
      for (long i = 0; i < streams; i++) if (conns[i].state) { close(conns[i].fd); conns[i].state = 0; fail("timeout"); finished++; open_now--; }
      for (; started < streams; started++, finished++) fail("not_started");
      break;
    }
    // Open the next batch.
    while (started < streams && now >= next_batch) {
      for (long k = 0; k < batch && started < streams; k++) {
        conn_t *c = &conns[started];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) { fail("socket"); finished++; started++; continue; }
        int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->sent = wall_ms();
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) != 0 && errno != EINPROGRESS) {
          close(c->fd); fail("connect_error"); finished++; started++; continue;
        }
        c->state = 1;
        struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u64 = (uint64_t)started};
        epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        started++; open_now++; if (open_now > max_open) max_open = open_now;
      }
      next_batch += step_ms;
      if (started == streams && !held_from) held_from = wall_ms() + settle_ms;
    }
    if (now >= next_progress) {
      fprintf(stderr, "hold-streams: %.0f s: %ld started, %ld open (max %ld), %ld ok, %ld failed, %ld chunks\n",
              (now - t0) / 1000, started, open_now, max_open, ok, finished - ok, chunks);
      next_progress += 5000;
    }
    int timeout = started < streams ? (step_ms < 1 ? 1 : (int)step_ms) : 200;
    int n = epoll_wait(ep, events, 512, timeout);
    for (int e = 0; e < n; e++) {
      conn_t *c = &conns[events[e].data.u64];
      if (!c->state) continue;
      const char *end_kind = NULL; int ended = 0;
      if (c->state == 1) {
        int err = 0; socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { end_kind = err == ECONNREFUSED ? "connect_ECONNREFUSED" : "connect_error"; ended = 1; }
        else if (send(c->fd, request, request_len, MSG_NOSIGNAL) != request_len) { end_kind = "send"; ended = 1; }
        else {
          c->state = 2;
          struct epoll_event ev = {.events = EPOLLIN, .data.u64 = events[e].data.u64};
          epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        }
      } else {
        for (;;) {
          ssize_t got = recv(c->fd, buf, sizeof buf, 0);
          if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
          if (got <= 0) { ended = 1; end_kind = got < 0 ? "read" : (c->done ? NULL : "no_done"); break; }
          double at = wall_ms();
          ssize_t off = 0;
          if (c->state == 2) {
            if (!c->head_len) push(&ttfb, at - c->sent);
            while (off < got && c->state == 2) {
              if (c->head_len < (int)sizeof c->head - 1) c->head[c->head_len++] = buf[off];
              off++;
              if (c->head_len >= 4 && !memcmp(c->head + c->head_len - 4, "\r\n\r\n", 4)) {
                c->head[c->head_len] = 0;
                c->status = atoi(c->head + 9);
                c->state = 3;
              }
            }
            if (c->state == 3 && c->status != 200) {
              static char kind_names[8][16]; static int used;
              char name[16]; snprintf(name, sizeof name, "http_%d", c->status);
              int k; for (k = 0; k < used; k++) if (!strcmp(kind_names[k], name)) break;
              if (k == used && used < 8) strcpy(kind_names[used++], name);
              end_kind = k < 8 ? kind_names[k] : "http_error"; ended = 1; break;
            }
          }
          if (c->state != 3 || off >= got) continue;
          // Scan the carried tail plus the new bytes for stamps ("content":"t=<ms>;") and the end.
          memcpy(scan, c->carry, c->carry_len);
          memcpy(scan + c->carry_len, buf + off, got - off);
          size_t total = c->carry_len + (got - off), consumed = 0;
          scan[total] = 0; // strtod below must stop at the end of what was read
          const char *pat = unstamped ? "\"content\":\"" : "\"content\":\"t=";
          size_t pat_len = strlen(pat);
          for (char *p = scan; (p = memmem(p, scan + total - p, pat, pat_len)); ) {
            char *num = p + pat_len, *stop;
            if (unstamped) {
              if (num >= scan + total) break; // cut off: the next read completes it
              stop = num;
              if (*num == '"') { p = num; consumed = num - scan; continue; } // an empty content (the role chunk)
            } else {
              double stamp = strtod(num, &stop);
              if (stop == num || stop >= scan + total || *stop != ';') break; // cut off: the next read completes it
              push(&delays, at - stamp);
              if (held_from && at >= held_from) { push(&held, at - stamp); if (dump) push(&held_at, at); }
            }
            chunks++;
            if (c->last) { push(&gaps, at - c->last); if (held_from && at >= held_from) push(&held_gaps, at - c->last); }
            c->last = at;
            p = stop; consumed = stop - scan;
          }
          if (memmem(scan, total, "data: [DONE]", 12)) c->done = 1;
          size_t keep_from = total > CARRY ? total - CARRY : 0;
          if (keep_from < consumed) keep_from = consumed;
          c->carry_len = total - keep_from;
          memmove(c->carry, scan + keep_from, c->carry_len);
        }
      }
      if (ended) {
        epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd); c->state = 0; open_now--; finished++;
        if (end_kind) fail(end_kind); else ok++;
      }
    }
  }

  if (dump) { // before summary(), which sorts the series
    FILE *f = fopen(dump, "w");
    if (!f) { fprintf(stderr, "hold-streams: cannot write HOLD_STREAMS_DUMP=%s\n", dump); return 2; }
    for (size_t i = 0; i < held.n; i++) fprintf(f, "%.3f %.3f\n", held_at.v[i], held.v[i]);
    fclose(f);
  }
  printf("{\"streams\":%ld,\"ok\":%ld,\"failed\":%ld,\"errors\":{", streams, ok, finished - ok);
  for (int i = 0; i < nkinds; i++) printf("%s\"%s\":%ld", i ? "," : "", kinds[i], kind_count[i]);
  printf("},\"max_open\":%ld,\"seconds\":%.1f,\"chunks\":%ld,", max_open, (wall_ms() - t0) / 1000, chunks);
  summary("ttfb_ms", &ttfb, 0);
  summary("gap_ms", &gaps, 0);
  summary("held_gap_ms", &held_gaps, 0);
  summary("held_delay_ms", &held, 0);
  summary("added_delay_ms", &delays, 1);
  printf("}\n");
  return 0;
}
