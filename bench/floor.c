/*
 * The floor of a ticker client's CPU: what one `pgq.ticker()` call costs any client
 * that keeps one session per database, measured on this machine.
 *
 * It opens one session per database named on the command line (libpq, for the login
 * only), then every PERIOD seconds writes the ticker call's Query message to every
 * socket in one loop and reads the replies as epoll reports them, with no parsing
 * beyond finding ReadyForQuery: one send and one receive a call, and an epoll_wait for
 * however many replies are ready. No client does less. It prints its own CPU time per
 * call (on-CPU time from /proc/self/schedstat, exact; the user/system split from
 * getrusage, sampled by the kernel's tick).
 *
 * Build and run (Debian: gcc, libpq-dev), against a cluster whose databases have pgq:
 *   cc -O2 -o /tmp/floor bench/floor.c -I"$(pg_config --includedir)" -lpq
 *   /tmp/floor 'host=/tmp/sock port=5432 user=postgres' 0.1 60 db1 db2 ...
 * docs/benchmarks.md (Notes) has what it measured beside pgqd 3.5 and ours.
 */
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#define SQL "select pgq.ticker(), pg_backend_pid()" /* as pgqd calls it */

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static long long on_cpu_ns(void) {
    long long ns = -1;
    FILE *f = fopen("/proc/self/schedstat", "r");
    if (f) {
        if (fscanf(f, "%lld", &ns) != 1)
            ns = -1;
        fclose(f);
    }
    return ns;
}

static double secs(struct timeval a, struct timeval b) {
    return (b.tv_sec - a.tv_sec) + (b.tv_usec - a.tv_usec) / 1e6;
}

/* Reads what is there; 1 when the reply so far ends with ReadyForQuery. */
static int drained(int fd, char *buf, size_t size) {
    int ready = 0;
    ssize_t got;
    while ((got = recv(fd, buf, size, MSG_DONTWAIT)) > 0)
        ready = got >= 6 && buf[got - 6] == 'Z';
    return ready;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s CONNINFO PERIOD SECONDS DB...\n", argv[0]);
        return 2;
    }
    const char *conninfo = argv[1];
    double period = atof(argv[2]), seconds = atof(argv[3]);
    int n = argc - 4;
    int *fd = calloc(n, sizeof *fd);
    PGconn **conn = calloc(n, sizeof *conn);
    int ep = epoll_create1(0);
    char msg[64];
    uint32_t len = htonl(4 + sizeof SQL);
    msg[0] = 'Q';
    memcpy(msg + 1, &len, 4);
    memcpy(msg + 5, SQL, sizeof SQL);
    size_t msg_len = 5 + sizeof SQL;
    for (int i = 0; i < n; i++) {
        char ci[1024];
        snprintf(ci, sizeof ci, "%s dbname=%s", conninfo, argv[4 + i]);
        conn[i] = PQconnectdb(ci);
        if (PQstatus(conn[i]) != CONNECTION_OK) {
            fprintf(stderr, "%s: %s", argv[4 + i], PQerrorMessage(conn[i]));
            return 1;
        }
        fd[i] = PQsocket(conn[i]);
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd[i], &ev);
    }
    char buf[8192];
    struct rusage r0, r1;
    long calls = 0;
    double start = now(), next = start;
    long long cpu0 = on_cpu_ns();
    getrusage(RUSAGE_SELF, &r0);
    while (now() - start < seconds) {
        for (int i = 0; i < n; i++) {
            if (send(fd[i], msg, msg_len, 0) != (ssize_t)msg_len) {
                perror("send");
                return 1;
            }
        }
        int pending = n;
        while (pending > 0) {
            struct epoll_event evs[256];
            int k = epoll_wait(ep, evs, 256, -1);
            for (int j = 0; j < k; j++)
                if (drained(fd[evs[j].data.u32], buf, sizeof buf)) {
                    pending--;
                    calls++;
                }
        }
        next += period;
        double wait = next - now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    long long cpu1 = on_cpu_ns();
    getrusage(RUSAGE_SELF, &r1);
    double user = secs(r0.ru_utime, r1.ru_utime), sys = secs(r0.ru_stime, r1.ru_stime);
    printf("%d databases, period %g s, %.0f s: %ld calls, %.2f us on CPU a call "
           "(user %.2f, system %.2f), %.3f s/min\n",
           n, period, now() - start, calls, (cpu1 - cpu0) / 1e3 / calls,
           user / calls * 1e6, sys / calls * 1e6,
           (cpu1 - cpu0) / 1e9 / (now() - start) * 60);
    for (int i = 0; i < n; i++)
        PQfinish(conn[i]);
    return 0;
}
