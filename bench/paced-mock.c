// paced-mock: an OpenAI-compatible upstream for bench/proxied-streams.sh that sends every stream's chunks at their own
// times and costs next to nothing — `sluice mock-upstream --timestamp-chunks --chunk-delay-ms N` in C.
//
// Why: at 8,000 paced streams on two shared cores the .NET mock is part of what it measures. Its Kestrel walks all
// 8,000 connections once a second (4–7 ms on one core), its thread-pool workers spin beside the gateway's, and its
// Task.Delay timers (coarse clock) released chunks in bursts of hundreds; the chunks it delays after stamping them
// count as the gateway's delay. This one is one thread, one epoll loop, one timerfd armed at the next due chunk, and a
// binary heap of streams by due time: chunk k of a stream is due at its start + --first-delay-ms + k × --pace-ms, sent
// with a stamp of the time of sending (t=<Unix ms, 3 decimals>;), so a client can measure what sits in between.
//
// Serves POST /v1/chat/completions (SSE in OpenAI's chunk format, a usage chunk when the request asks for
// stream_options.include_usage, then [DONE]; a plain JSON completion, unpaced, when "stream" is not true) and
// GET /v1/models, HTTP/1.1 with keep-alive (the gateway pools upstream connections; "Connection: close" is honoured). On SIGUSR1 it prints how late its
// sends were against their due times (stderr); on SIGTERM or SIGINT it prints that and exits.
//
// Build: cc -O2 -o paced-mock bench/paced-mock.c   (bench/proxied-streams.sh builds it)
// Usage: paced-mock --port P [--chunks 60] [--pace-ms 1000] [--first-delay-ms 0] [--model mock]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define IN_CAP 16384  // a request's head and body (the gateway's are a few hundred bytes)
#define OUT_CAP 65536 // bytes waiting for a full socket to drain; beyond that the reader is not reading: dropped

typedef struct {
  int fd, state, dead; // state: 1 reading a request, 2 streaming; dead: to be dropped by the loop
  int close_after;     // the request said "Connection: close": end with a shutdown once answered
  int shut_later;      // ...once the bytes still waiting for the socket have gone
  int in_len, usage, sent, heap_at;
  int64_t start, due;  // CLOCK_MONOTONIC ns
  unsigned long id;
  long created;
  int out_off, out_len;
  char in[IN_CAP];
  char *out;           // allocated when a send is short
} conn_t;

static conn_t **conns; // by fd
static int conns_cap;
static conn_t **heap;  // min-heap by due
static int heap_n, heap_cap;
static int chunks = 60, ep, tfd;
static int64_t pace_ns = 1000000000LL, first_ns = 0, armed = -1;
static const char *model = "mock";
static volatile sig_atomic_t stop, report;
static unsigned long next_id, sent_total, dropped;
static int64_t late_max; static unsigned long late_over_1ms, late_over_5ms;

static int64_t mono_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec; }
static double unix_ms(void) { struct timespec t; clock_gettime(CLOCK_REALTIME, &t); return t.tv_sec * 1e3 + t.tv_nsec / 1e6; }

static void heap_swap(int a, int b) { conn_t *t = heap[a]; heap[a] = heap[b]; heap[b] = t; heap[a]->heap_at = a; heap[b]->heap_at = b; }
static void heap_up(int i) { while (i > 0 && heap[(i - 1) / 2]->due > heap[i]->due) { heap_swap(i, (i - 1) / 2); i = (i - 1) / 2; } }
static void heap_down(int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < heap_n && heap[l]->due < heap[m]->due) m = l;
    if (r < heap_n && heap[r]->due < heap[m]->due) m = r;
    if (m == i) return;
    heap_swap(i, m); i = m;
  }
}
static void heap_push(conn_t *c) {
  if (heap_n == heap_cap) { heap_cap = heap_cap ? heap_cap * 2 : 1024; heap = realloc(heap, heap_cap * sizeof *heap); if (!heap) exit(3); }
  heap[heap_n] = c; c->heap_at = heap_n++; heap_up(c->heap_at);
}
static void heap_remove(conn_t *c) {
  int i = c->heap_at;
  if (i < 0) return;
  c->heap_at = -1;
  if (i != --heap_n) { heap[i] = heap[heap_n]; heap[i]->heap_at = i; heap_up(i); heap_down(heap[i]->heap_at); }
}

static void arm(void) { // the timerfd fires at the earliest due chunk
  int64_t due = heap_n ? heap[0]->due : 0;
  if (due == armed) return;
  struct itimerspec its = {0};
  if (due) { its.it_value.tv_sec = due / 1000000000LL; its.it_value.tv_nsec = due % 1000000000LL; }
  timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
  armed = due;
}

static void drop(conn_t *c) {
  heap_remove(c);
  epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
  close(c->fd);
  conns[c->fd] = NULL;
  free(c->out); free(c);
}

// Sends what is waiting, then buf; keeps what the socket does not take and waits for EPOLLOUT. 0 = the connection is
// broken or not reading (marked dead; the loop drops it, so nobody uses it after it is freed).
static int put(conn_t *c, const char *buf, int len) {
  if (c->dead) return 0;
  if (c->out_len > c->out_off) { // still draining: append
    if (c->out_len + len > OUT_CAP) { dropped++; c->dead = 1; return 0; }
    memcpy(c->out + c->out_len, buf, len); c->out_len += len;
    return 1;
  }
  ssize_t n = send(c->fd, buf, len, MSG_NOSIGNAL);
  if (n < 0) { if (errno != EAGAIN && errno != EWOULDBLOCK) { c->dead = 1; return 0; } n = 0; }
  if (n == len) return 1;
  if (!c->out && !(c->out = malloc(OUT_CAP))) exit(3);
  memcpy(c->out, buf + n, len - n); c->out_off = 0; c->out_len = len - n;
  struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.fd = c->fd};
  epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
  return 1;
}

// The answer is complete: with "Connection: close", end the sending side once everything queued has gone.
static void finish(conn_t *c) {
  if (!c->close_after || c->dead) return;
  if (c->out_len > c->out_off) c->shut_later = 1;
  else shutdown(c->fd, SHUT_WR); // the peer closes; its end of stream drops the connection here
}

// One SSE frame as one HTTP chunk: "<hex size>\r\n" frame "\r\n".
static int frame(char *dst, const char *data) {
  int n = (int)strlen(data);
  return sprintf(dst, "%x\r\n%s\r\n", n, data);
}

static int head_of(conn_t *c, char *dst) {
  return sprintf(dst, "data: {\"id\":\"chatcmpl-pm%013lx\",\"object\":\"chat.completion.chunk\",\"created\":%ld,\"model\":\"%s\",\"system_fingerprint\":\"fp_sluice_mock\",\"choices\":",
                 c->id, c->created, model);
}

static int send_chunk(conn_t *c) { // content chunk c->sent, stamped now; after the last, the end of the answer
  char data[1024], buf[1200];
  int h = head_of(c, data);
  sprintf(data + h, "[{\"index\":0,\"delta\":{\"content\":\"t=%.3f;\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n", unix_ms());
  int n = frame(buf, data);
  c->sent++;
  if (c->sent == chunks) {
    sprintf(data + h, "[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}\n\n");
    n += frame(buf + n, data);
    if (c->usage) {
      sprintf(data + h, "[],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n", chunks, chunks + 16);
      n += frame(buf + n, data);
    }
    n += frame(buf + n, "data: [DONE]\n\n");
    n += sprintf(buf + n, "0\r\n\r\n");
  }
  if (!put(c, buf, n)) return 0;
  if (c->sent == chunks) finish(c);
  return 1;
}

static void respond(conn_t *c, const char *status, const char *type, const char *body) {
  char buf[4096];
  int n = snprintf(buf, sizeof buf, "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s\r\n%s", status, type, strlen(body),
                   c->close_after ? "Connection: close\r\n" : "", body);
  if (put(c, buf, n)) finish(c);
}

// A whole request is in c->in (head_len bytes of head, then the body): answer it.
static void handle(conn_t *c, int head_len, int body_len) {
  char *body = c->in + head_len;
  char saved = body[body_len]; body[body_len] = 0;
  int is_post = !strncmp(c->in, "POST ", 5), is_get = !strncmp(c->in, "GET ", 4);
  char *path = is_post ? c->in + 5 : is_get ? c->in + 4 : c->in;
  if (is_get && !strncmp(path, "/v1/models ", 11)) {
    char models[256];
    snprintf(models, sizeof models, "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\",\"created\":0,\"owned_by\":\"sluice-mock\"}]}", model);
    respond(c, "200 OK", "application/json", models);
  } else if (!is_post || strncmp(path, "/v1/chat/completions ", 21)) {
    respond(c, "404 Not Found", "application/json", "{\"error\":{\"message\":\"The paced mock serves POST /v1/chat/completions and GET /v1/models.\",\"type\":\"invalid_request_error\"}}");
  } else {
    c->id = ++next_id; c->created = time(NULL);
    int stream = strstr(body, "\"stream\":true") || strstr(body, "\"stream\": true");
    c->usage = strstr(body, "\"include_usage\":true") || strstr(body, "\"include_usage\": true");
    if (!stream) {
      char json[512];
      snprintf(json, sizeof json, "{\"id\":\"chatcmpl-pm%013lx\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"t=%.3f;\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":16,\"completion_tokens\":1,\"total_tokens\":17}}",
               c->id, c->created, model, unix_ms());
      respond(c, "200 OK", "application/json", json);
    } else {
      char buf[1400], data[1024];
      int n = sprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\nTransfer-Encoding: chunked\r\n%s\r\n",
                      c->close_after ? "Connection: close\r\n" : "");
      int h = head_of(c, data);
      sprintf(data + h, "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
      n += frame(buf + n, data);
      put(c, buf, n);
      c->state = 2; c->sent = 0; c->start = mono_ns();
      if (chunks == 0) { send_chunk(c); c->state = 1; }
      else { c->due = c->start + first_ns; heap_push(c); }
    }
  }
  body[body_len] = saved;
  int rest = c->in_len - head_len - body_len; // a pipelined next request (not sent by the gateway, kept anyway)
  memmove(c->in, c->in + head_len + body_len, rest); c->in_len = rest;
}

static void readable(conn_t *c) {
  for (;;) {
    if (c->in_len == IN_CAP) { drop(c); return; } // a request larger than this mock takes
    ssize_t got = recv(c->fd, c->in + c->in_len, IN_CAP - c->in_len - 1, 0);
    if (got == 0) { drop(c); return; }
    if (got < 0) { if (errno != EAGAIN && errno != EWOULDBLOCK) drop(c); return; }
    c->in_len += got; c->in[c->in_len] = 0;
    while (c->state == 1) {
      char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
      if (!end) break;
      int head_len = (int)(end - c->in) + 4;
      long clen = 0;
      for (char *p = c->in; p && p < end; p = strstr(p, "\r\n")) {
        if (*p == '\r') p += 2;
        if (!strncasecmp(p, "content-length:", 15)) clen = atol(p + 15);
      }
      if (clen < 0 || head_len + clen >= IN_CAP) { drop(c); return; }
      c->close_after = 0;
      for (char *p = c->in; (p = strcasestr(p, "\r\nconnection:")) && p < end; p += 13) {
        char *v = p + 13;
        while (*v == ' ') v++;
        if (!strncasecmp(v, "close", 5)) c->close_after = 1;
      }
      if (c->in_len < head_len + clen) break;
      handle(c, head_len, (int)clen);
      if (c->dead) { drop(c); return; }
    }
  }
}

static void on_signal(int s) { if (s == SIGUSR1) report = 1; else stop = 1; }

static void print_lateness(void) {
  fprintf(stderr, "paced-mock: %lu chunks sent; later than due by over 1 ms: %lu, over 5 ms: %lu, at most %.2f ms; %lu connections dropped for not reading\n",
          sent_total, late_over_1ms, late_over_5ms, late_max / 1e6, dropped);
}

int main(int argc, char **argv) {
  int port = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--chunks")) chunks = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--pace-ms")) pace_ns = (int64_t)(atof(argv[i + 1]) * 1e6);
    else if (!strcmp(argv[i], "--first-delay-ms")) first_ns = (int64_t)(atof(argv[i + 1]) * 1e6);
    else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else { fprintf(stderr, "paced-mock: unknown option '%s'; see the usage at the top of bench/paced-mock.c.\n", argv[i]); return 2; }
  }
  if (port <= 0 || port > 65535 || chunks < 0 || pace_ns < 0 || first_ns < 0) {
    fprintf(stderr, "paced-mock: give --port 1-65535 and --chunks, --pace-ms, --first-delay-ms of 0 or more.\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL); sigaction(SIGUSR1, &sa, NULL);

  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 8192)) {
    fprintf(stderr, "paced-mock: cannot listen on 127.0.0.1:%d (%s); pick another --port.\n", port, strerror(errno));
    return 1;
  }
  ep = epoll_create1(0);
  tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  ev.data.fd = tfd; epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev);
  printf("paced-mock listening on http://127.0.0.1:%d/ — model '%s', %d chunks stamped with their send time, first after %.0f ms, then every %.0f ms\n",
         port, model, chunks, first_ns / 1e6, pace_ns / 1e6);
  fflush(stdout);

  struct epoll_event events[512];
  while (!stop) {
    int n = epoll_wait(ep, events, 512, -1);
    if (report) { report = 0; print_lateness(); }
    if (n < 0) { if (errno == EINTR) continue; perror("paced-mock: epoll_wait"); return 1; }
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == ls) {
        for (;;) {
          int cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
          if (cfd < 0) break;
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          if (cfd >= conns_cap) {
            int cap = conns_cap ? conns_cap : 1024;
            while (cap <= cfd) cap *= 2;
            conns = realloc(conns, cap * sizeof *conns);
            if (!conns) exit(3);
            memset(conns + conns_cap, 0, (cap - conns_cap) * sizeof *conns);
            conns_cap = cap;
          }
          conn_t *c = calloc(1, sizeof *c);
          if (!c) exit(3);
          c->fd = cfd; c->state = 1; c->heap_at = -1;
          conns[cfd] = c;
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
        }
      } else if (fd == tfd) {
        uint64_t ticks; (void)!read(tfd, &ticks, sizeof ticks);
      } else if (fd < conns_cap && conns[fd]) {
        conn_t *c = conns[fd];
        if (events[i].events & EPOLLOUT && c->out_len > c->out_off) {
          ssize_t w = send(fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
          if (w < 0 && errno != EAGAIN) { drop(c); continue; }
          if (w > 0) c->out_off += w;
          if (c->out_off == c->out_len) {
            c->out_off = c->out_len = 0;
            if (c->shut_later) { c->shut_later = 0; shutdown(fd, SHUT_WR); }
            struct epoll_event cev = {.events = EPOLLIN, .data.fd = fd};
            epoll_ctl(ep, EPOLL_CTL_MOD, fd, &cev);
          }
        }
        if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) readable(c);
      }
    }
    // Every chunk now due, earliest first; each stream's next one goes back on the heap.
    int64_t now = mono_ns();
    while (heap_n && heap[0]->due <= now) {
      conn_t *c = heap[0];
      int64_t late = now - c->due;
      if (late > late_max) late_max = late;
      if (late > 1000000) late_over_1ms++;
      if (late > 5000000) late_over_5ms++;
      sent_total++;
      heap_remove(c);
      if (!send_chunk(c)) { drop(c); now = mono_ns(); continue; }
      if (c->sent < chunks) { c->due = c->start + first_ns + c->sent * pace_ns; heap_push(c); }
      else c->state = 1; // answered; the connection stays for the gateway's next request
      now = mono_ns();
    }
    arm();
  }
  print_lateness();
  return 0;
}
