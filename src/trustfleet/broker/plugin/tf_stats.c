/*
 * tf_stats: the guard plugin's service-side signals (issue 13 §1), per device and per window.
 *
 * Compiled as one unit with tf_guard.c (this file first; broker/_binaries.py concatenates
 * them), which calls these functions from its callbacks. A bounded table (max_devices
 * entries, chained by hash) holds, per device id, the counters of the window being counted:
 * CONNECT attempts and refusals, disconnects, denied SUBSCRIBE/READ/PUBLISH, PUBLISH count
 * and payload bytes, and up to TF_MAX_ADDRS source addresses. Events of a device the full
 * table cannot hold are only counted (untracked). When the wall clock passes the window's
 * end (a multiple of interval_s), the active entries are published as compact JSON chunks of
 * at most max_bytes on TF_STATS_TOPIC (docs/mqtt.md "Broker statistics"), then reset; an
 * entry without a session and without activity is evicted.
 *
 * Chunk: {"v":1,"boot":"<16 hex>","seq":n,"part":k,"end":<unix s>,"interval_s":i,
 *         "untracked":u,"unattributed":r,"devices":{"<id>":{"c":..,"r":..,"d":..,"z":..,
 *         "m":..,"b":..,"a":["<address>",..]},..}}
 * (c connects, r refused connects, d disconnects, z denied, m messages, b payload bytes,
 * a source addresses.) boot names this broker run; (boot, seq) names one chunk.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>

#define TF_STATS_TOPIC "tf/v1/s/broker/stats"
#define TF_STATS_ID 64 /* the device id's longest form (TF_MAX_ID in tf_guard.c) */
#define TF_STATS_BUCKETS 4096
#define TF_MAX_ADDRS 4
#define TF_MAX_ADDR 45 /* INET6_ADDRSTRLEN - 1 */
#define TF_STATS_ENTRY_MAX 600 /* bound on one device's JSON: id, 6 counters, 4 addresses */
#define TF_STATS_HEAD_MAX 240

struct tf_stats {
	struct tf_stats *next;
	const void *session; /* the accepted connection (compared, never dereferenced), or NULL */
	unsigned long connects, refusals, disconnects, denied, messages;
	unsigned long long bytes;
	int addr_count;
	char addrs[TF_MAX_ADDRS][TF_MAX_ADDR + 1];
	char id[TF_STATS_ID + 1];
};

struct tf_stats_table {
	long interval_s; /* 0: off */
	long max_devices;
	long max_bytes;
	struct tf_stats *chain[TF_STATS_BUCKETS];
	long count;
	unsigned long untracked;
	unsigned long unattributed;
	long long window_end;
	unsigned long long seq;
	char boot[17];
};

static unsigned long stats_hash(const char *s)
{
	unsigned long h = 5381;
	while(*s) h = h * 33u + (unsigned char)*s++;
	return h % TF_STATS_BUCKETS;
}

static long long stats_next_end(long long now, long interval)
{
	return (now / interval + 1) * interval;
}

static void stats_init(struct tf_stats_table *t)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	unsigned long long seed = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20)
		^ ((unsigned long long)getpid() << 40);
	FILE *f = fopen("/dev/urandom", "rb");
	if(f){
		if(fread(&seed, sizeof(seed), 1, f) != 1) seed ^= (unsigned long long)clock();
		fclose(f);
	}
	snprintf(t->boot, sizeof(t->boot), "%016llx", seed);
	if(t->interval_s > 0) t->window_end = stats_next_end((long long)ts.tv_sec, t->interval_s);
}

/* The entry of a device (created if there is room), or NULL (counted as untracked). */
static struct tf_stats *stats_entry(struct tf_stats_table *t, const char *id)
{
	if(t->interval_s <= 0) return NULL;
	unsigned long h = stats_hash(id);
	for(struct tf_stats *e = t->chain[h]; e; e = e->next){
		if(!strcmp(e->id, id)) return e;
	}
	if(t->count >= t->max_devices || strlen(id) > TF_STATS_ID) goto untracked;
	struct tf_stats *e = calloc(1, sizeof(*e));
	if(!e) goto untracked;
	strcpy(e->id, id);
	e->next = t->chain[h];
	t->chain[h] = e;
	t->count++;
	return e;
untracked:
	t->untracked++;
	return NULL;
}

static bool address_ok(const char *a)
{
	size_t n = a ? strlen(a) : 0;
	if(n == 0 || n > TF_MAX_ADDR) return false;
	return strspn(a, "0123456789abcdefABCDEF.:") == n;
}

static void stats_address(struct tf_stats *e, const char *address)
{
	if(!address_ok(address)) return;
	for(int i = 0; i < e->addr_count; i++){
		if(!strcmp(e->addrs[i], address)) return;
	}
	if(e->addr_count < TF_MAX_ADDRS) strcpy(e->addrs[e->addr_count++], address);
}

/* A CONNECT with a device identity: counted once per connection (SIGHUP re-authenticates
 * connected clients: the same session is not counted again). */
static void stats_connect(struct tf_stats_table *t, const char *id, const void *session,
		const char *address, bool refused)
{
	struct tf_stats *e = stats_entry(t, id);
	if(!e || (!refused && e->session == session)) return;
	e->connects++;
	stats_address(e, address);
	if(refused) e->refusals++;
	else e->session = session;
}

static void stats_disconnect(struct tf_stats_table *t, const char *id, const void *session)
{
	struct tf_stats *e = stats_entry(t, id);
	if(!e) return;
	e->disconnects++;
	if(e->session == session) e->session = NULL;
}

static void stats_publish_seen(struct tf_stats_table *t, const char *id, unsigned long payload)
{
	struct tf_stats *e = stats_entry(t, id);
	if(!e) return;
	e->messages++;
	e->bytes += payload;
}

static void stats_denied(struct tf_stats_table *t, const char *id)
{
	struct tf_stats *e = stats_entry(t, id);
	if(e) e->denied++;
}

static bool stats_active(const struct tf_stats *e)
{
	return e->connects || e->refusals || e->disconnects || e->denied || e->messages;
}

static int stats_entry_json(const struct tf_stats *e, char *out, size_t size)
{
	int n = snprintf(out, size, "\"%s\":{\"c\":%lu,\"r\":%lu,\"d\":%lu,\"z\":%lu,\"m\":%lu,\"b\":%llu,\"a\":[",
			e->id, e->connects, e->refusals, e->disconnects, e->denied, e->messages, e->bytes);
	for(int i = 0; i < e->addr_count && n > 0 && (size_t)n < size; i++){
		n += snprintf(out + n, size - (size_t)n, "%s\"%s\"", i ? "," : "", e->addrs[i]);
	}
	if(n > 0 && (size_t)n < size) n += snprintf(out + n, size - (size_t)n, "]}");
	return (n > 0 && (size_t)n < size) ? n : -1;
}

struct tf_chunk {
	char *buf;
	size_t len;
	int devices;
	int part;
};

static void chunk_start(struct tf_stats_table *t, struct tf_chunk *c)
{
	int n = snprintf(c->buf, (size_t)t->max_bytes,
			"{\"v\":1,\"boot\":\"%s\",\"seq\":%llu,\"part\":%d,\"end\":%lld,\"interval_s\":%ld,"
			"\"untracked\":%lu,\"unattributed\":%lu,\"devices\":{",
			t->boot, ++t->seq, c->part, t->window_end, t->interval_s, t->untracked, t->unattributed);
	c->len = n > 0 ? (size_t)n : 0;
	c->devices = 0;
}

static void chunk_send(struct tf_stats_table *t, struct tf_chunk *c)
{
	memcpy(c->buf + c->len, "}}", 3);
	c->len += 2;
	int rc = mosquitto_broker_publish_copy(NULL, TF_STATS_TOPIC, (int)c->len, c->buf, 1, false, NULL);
	if(rc != MOSQ_ERR_SUCCESS){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "tf_guard: stats chunk %llu not published (%d)", t->seq, rc);
	}
	c->part++;
}

/* Publish the window's active entries, reset them, evict idle ones without a session. */
static void stats_flush(struct tf_stats_table *t)
{
	char entry[TF_STATS_ENTRY_MAX];
	struct tf_chunk c = {.buf = malloc((size_t)t->max_bytes), .part = 0};
	if(!c.buf) return;
	chunk_start(t, &c);
	for(int h = 0; h < TF_STATS_BUCKETS; h++){
		struct tf_stats **link = &t->chain[h];
		while(*link){
			struct tf_stats *e = *link;
			int n = stats_active(e) ? stats_entry_json(e, entry, sizeof(entry)) : -1;
			if(n > 0){
				if(c.len + (size_t)n + 4 > (size_t)t->max_bytes){
					chunk_send(t, &c);
					chunk_start(t, &c);
				}
				if(c.devices++) c.buf[c.len++] = ',';
				memcpy(c.buf + c.len, entry, (size_t)n);
				c.len += (size_t)n;
			}
			if(!e->session && !stats_active(e)){
				*link = e->next;
				free(e);
				t->count--;
				continue;
			}
			const void *session = e->session;
			struct tf_stats *next = e->next;
			char id[TF_STATS_ID + 1];
			strcpy(id, e->id);
			memset(e, 0, sizeof(*e));
			e->session = session;
			e->next = next;
			strcpy(e->id, id);
			link = &e->next;
		}
	}
	if(c.devices || c.part == 0) chunk_send(t, &c); /* an empty window still says the broker runs */
	free(c.buf);
	t->untracked = 0;
	t->unattributed = 0;
}

static void stats_tick(struct tf_stats_table *t)
{
	if(t->interval_s <= 0) return;
	long long now = (long long)time(NULL);
	if(now < t->window_end) return;
	stats_flush(t);
	t->window_end = stats_next_end(now, t->interval_s);
}

static void stats_cleanup(struct tf_stats_table *t)
{
	for(int h = 0; h < TF_STATS_BUCKETS; h++){
		struct tf_stats *e = t->chain[h];
		while(e){
			struct tf_stats *next = e->next;
			free(e);
			e = next;
		}
		t->chain[h] = NULL;
	}
	t->count = 0;
}
