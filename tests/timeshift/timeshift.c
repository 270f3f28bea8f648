/* An LD_PRELOAD shim that moves the wall clock (and only the wall clock) by TF_TIMESHIFT_S seconds.
 *
 * `make test` runs the suite's time-sensitive tests once more under this shim, the clock a year
 * ahead, so that no test passes only near the day it was written (tests/timeshift/README.md).
 * Every process the tests start (swtpm, Mosquitto, openssl, curl, PostgreSQL) inherits it, so
 * certificates, CRLs, TUF expiries and TPM clocks all live in the shifted time together.
 *
 * libfaketime was tried first: with it, CPython's timed lock waits (sem_clockwait on
 * CLOCK_MONOTONIC) hang and time.sleep fails with EINVAL. Monotonic clocks are left alone here,
 * so waits and timeouts are unaffected.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long long shift_s(void) {
    static int loaded = 0;
    static long long value = 0;
    if (!loaded) {
        const char *text = getenv("TF_TIMESHIFT_S");
        value = text ? atoll(text) : 0;
        loaded = 1;
    }
    return value;
}

static int is_wall_clock(clockid_t id) {
    return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    static int (*real)(clockid_t, struct timespec *) = NULL;
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int rc = real(id, ts);
    if (rc == 0 && ts && is_wall_clock(id)) ts->tv_sec += shift_s();
    return rc;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    static int (*real)(struct timeval *restrict, void *restrict) = NULL;
    if (!real) real = (int (*)(struct timeval *restrict, void *restrict))dlsym(RTLD_NEXT, "gettimeofday");
    int rc = real(tv, tz);
    if (rc == 0 && tv) tv->tv_sec += shift_s();
    return rc;
}

time_t time(time_t *out) {
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) return (time_t)-1;
    if (out) *out = ts.tv_sec;
    return ts.tv_sec;
}
