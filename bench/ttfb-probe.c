// ttfb-probe: time to first token, measured from outside by a client that costs next to nothing.
//
// One keep-alive connection, requests one after another (concurrency 1): each POSTs a streaming chat completion and
// reads the answer to its end. Per request it records the time from the request's first byte sent to the response's
// first byte (status line), to the first "data:" of the body (the first token's frame), and to the end of the stream
// (the chunked body's last chunk). Prints p50/p90/p99/p99.9/max of each; --samples writes one line per request
// (start time in µs since the probe began, then the three times in µs) for lining slow requests up with a server's
// own events.
//
// Why C: a .NET or Node.js client adds its own GC pauses and event-loop wake-ups to the tail it is meant to measure;
// this loop blocks in recv() and allocates nothing per request.
//
// Build: cc -O2 -o ttfb-probe bench/ttfb-probe.c   (bench/ttfb.sh builds it when needed)
// Usage: ttfb-probe HOST PORT REQUESTS [--key K] [--model M] [--max-tokens N] [--warmup N] [--samples FILE]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int connect_to(const char *host, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) { perror("ttfb-probe: socket"); exit(3); }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
  if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
    fprintf(stderr, "ttfb-probe: '%s' is not an IPv4 address; pass one such as 127.0.0.1.\n", host);
    exit(2);
  }
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    fprintf(stderr, "ttfb-probe: nothing answers at %s:%d (%s); start the server first or fix HOST/PORT.\n", host, port, strerror(errno));
    exit(10);
  }
  return fd;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n) {
  qsort(v, n, sizeof *v, cmp);
#define AT(q) v[(int)((q) * (n - 1) + 0.5)] / 1000.0
  printf("%-12s p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f ms\n", what, AT(0.5), AT(0.9), AT(0.99), AT(0.999), v[n - 1] / 1000.0);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: ttfb-probe HOST PORT REQUESTS [--key K] [--model M] [--max-tokens N] [--warmup N] [--samples FILE]\n");
    return 2;
  }
  const char *host = argv[1], *key = "", *model = "mock", *samples_path = NULL;
  int port = atoi(argv[2]), n = atoi(argv[3]), max_tokens = 50, warmup = 200;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--key")) key = argv[i + 1];
    else if (!strcmp(argv[i], "--model")) model = argv[i + 1];
    else if (!strcmp(argv[i], "--max-tokens")) max_tokens = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--warmup")) warmup = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--samples")) samples_path = argv[i + 1];
    else { fprintf(stderr, "ttfb-probe: unknown option '%s'.\n", argv[i]); return 2; }
  }
  if (n < 1 || port < 1) { fprintf(stderr, "ttfb-probe: REQUESTS and PORT must be positive.\n"); return 2; }

  char body[512], request[2048];
  int body_len = snprintf(body, sizeof body,
      "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"Write a short note about load testing streaming gateways.\"}],"
      "\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":%d}", model, max_tokens);
  char auth[600] = "";
  if (*key) snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", key);
  int request_len = snprintf(request, sizeof request,
      "POST /v1/chat/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\nAccept: text/event-stream\r\n%s"
      "Content-Length: %d\r\n\r\n%s", host, port, auth, body_len, body);

  double *first_byte = malloc(sizeof(double) * n), *first_data = malloc(sizeof(double) * n), *whole = malloc(sizeof(double) * n);
  double *started = malloc(sizeof(double) * n);
  static char buf[1 << 16];
  int fd = connect_to(host, port);
  double begin = now_us();
  for (int i = -warmup; i < n; i++) {
    int number = i + warmup + 1; // 1-based, warm-up included: what error messages name
    double t0 = now_us(), t_byte = 0, t_data = 0;
    if (i == 0) begin = t0;
    if (send(fd, request, request_len, 0) != request_len) { perror("ttfb-probe: send"); return 3; }
    // Scan state: where the headers end, whether "data:" was seen, the last bytes for the chunked terminator.
    size_t seen = 0; int in_body = 0, status = 0; char tail[8] = {0}; char head[8192]; size_t head_len = 0;
    for (;;) {
      ssize_t got = recv(fd, buf, sizeof buf, 0);
      if (got <= 0) { fprintf(stderr, "ttfb-probe: the server closed the connection after %zu bytes of answer %d.\n", seen, number); return 12; }
      double t = now_us();
      if (!t_byte) t_byte = t;
      for (ssize_t k = 0; k < got; k++) {
        char c = buf[k];
        if (!in_body) {
          if (head_len < sizeof head - 1) head[head_len++] = c;
          if (head_len >= 4 && !memcmp(head + head_len - 4, "\r\n\r\n", 4)) {
            head[head_len] = 0;
            status = atoi(head + 9);
            if (status != 200) { fprintf(stderr, "ttfb-probe: answer %d has status %d (check --key, --model and the server's log):\n%s\n", number, status, head); return 12; }
            if (!strcasestr(head, "transfer-encoding: chunked")) { fprintf(stderr, "ttfb-probe: answer %d is not chunked; only chunked SSE answers are read.\n", number); return 12; }
            in_body = 1;
          }
          continue;
        }
        memmove(tail, tail + 1, 6); tail[6] = c;
        if (!t_data && !memcmp(tail + 2, "data:", 5)) t_data = t;
      }
      seen += got;
      // The chunked body ends with a zero-size chunk: "\r\n0\r\n\r\n" (the preceding chunk's CRLF included).
      if (in_body && !memcmp(tail, "\r\n0\r\n\r\n", 7)) break;
    }
    double t_end = now_us();
    if (i >= 0) {
      started[i] = t0 - begin; first_byte[i] = t_byte - t0; first_data[i] = (t_data ? t_data : t_end) - t0; whole[i] = t_end - t0;
    }
  }
  close(fd);
  if (samples_path) {
    FILE *f = fopen(samples_path, "w");
    if (!f) { perror("ttfb-probe: --samples"); return 3; }
    for (int i = 0; i < n; i++) fprintf(f, "%.0f %.1f %.1f %.1f\n", started[i], first_byte[i], first_data[i], whole[i]);
    fclose(f);
  }
  printf("%d requests one after another, %.0f requests/s\n", n, n / ((now_us() - begin) / 1e6));
  report("first byte", first_byte, n);
  report("first data", first_data, n);
  report("whole stream", whole, n);
  return 0;
}
