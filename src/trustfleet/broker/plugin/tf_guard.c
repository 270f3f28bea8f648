/*
 * tf_guard: TrustFleet's Mosquitto 2.0 plugin (plugin interface v5).
 *
 * Confines every device to its own namespace tf/v1/d/<id>/ and ties MQTT identities to
 * certificates. See docs/adr/0011-broker-guard.md for the facts from Mosquitto 2.0.11's
 * source this relies on.
 *
 * MOSQ_EVT_BASIC_AUTH (called because the listener does NOT set use_identity_as_username):
 *   - no client certificate (the admin unix socket): defer (dynamic security decides);
 *   - the certificate's one CN must be a device id ([a-z0-9-]{8,64}) or a configured
 *     service identity, else refused;
 *   - a username the client sent must equal the CN, else refused;
 *   - the client id must equal the CN (devices) or be "<CN>-<suffix>" (services), else
 *     refused: the CONNECT fails before Mosquitto looks for a session with that id, so a
 *     refused client never disconnects another one;
 *   - the username becomes the CN (mosquitto_set_username), then success.
 * MOSQ_EVT_ACL_CHECK, for usernames of the device-id form (only this plugin sets those on
 * the TLS listener): SUBSCRIBE, READ and WRITE only on topics that start with the literal
 * "tf/v1/d/<id>/" (no $share, no wildcard at or above the device level), no retained
 * WRITE, WRITE payloads up to device_max_payload bytes, and a token bucket of
 * device_rate_per_s messages per second (burst device_burst). Allowed checks DEFER, so the
 * dynamic-security plugin (quarantine) and the ACL file still decide after this plugin.
 * MOSQ_EVT_DISCONNECT: forget a device's bucket once it is full again.
 * Service-side signals (tf_stats.c, compiled with this file): every callback above counts
 * what it saw of a device; MOSQ_EVT_TICK publishes the counters every stats_interval_s.
 *
 * Options (plugin_opt_*): services (space-separated identities), device_max_payload,
 * device_rate_per_s, device_burst, stats_interval_s (0: off), stats_max_devices,
 * stats_max_bytes. Every value is checked; a bad one fails the start.
 */
#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define TF_MAX_ID 64
#define TF_MIN_DEVICE_ID 8
#define TF_MAX_SERVICES 16
#define TF_MAX_CLIENT_ID 128
#define TF_BUCKETS 4096
#define TF_PREFIX "tf/v1/d/"

struct tf_bucket {
	struct tf_bucket *next;
	double tokens;
	double last_s;
	char id[TF_MAX_ID + 1];
};

struct tf_state {
	mosquitto_plugin_id_t *pid;
	char services[TF_MAX_SERVICES][TF_MAX_ID + 1];
	int service_count;
	long max_payload;
	double rate_per_s;
	double burst;
	struct tf_bucket *table[TF_BUCKETS];
	unsigned long refused_connects;
	unsigned long refused_acl;
	struct tf_stats_table stats;
};


static bool is_device_id(const char *s)
{
	size_t n = strlen(s);
	if(n < TF_MIN_DEVICE_ID || n > TF_MAX_ID) return false;
	for(size_t i = 0; i < n; i++){
		char c = s[i];
		if(!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
	}
	return true;
}

static bool is_service(const struct tf_state *st, const char *s)
{
	for(int i = 0; i < st->service_count; i++){
		if(!strcmp(st->services[i], s)) return true;
	}
	return false;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- certificate identity -------------------------------------------------------- */

/* The single CN of the client's certificate into out (NUL-free, 1..TF_MAX_ID bytes). */
static bool certificate_cn(struct mosquitto *client, char *out, bool *has_cert)
{
	X509 *cert = mosquitto_client_certificate(client);
	bool ok = false;
	*has_cert = cert != NULL;
	if(!cert) return false;
	X509_NAME *name = X509_get_subject_name(cert);
	int idx = name ? X509_NAME_get_index_by_NID(name, NID_commonName, -1) : -1;
	if(idx >= 0 && X509_NAME_get_index_by_NID(name, NID_commonName, idx) == -1){
		ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
		int len = data ? ASN1_STRING_length(data) : 0;
		const unsigned char *bytes = data ? ASN1_STRING_get0_data(data) : NULL;
		if(bytes && len > 0 && len <= TF_MAX_ID && memchr(bytes, 0, (size_t)len) == NULL){
			memcpy(out, bytes, (size_t)len);
			out[len] = '\0';
			ok = true;
		}
	}
	X509_free(cert);
	return ok;
}

static bool client_id_allowed(const char *id, const char *cn, bool device)
{
	if(!id) return false;
	if(device) return strcmp(id, cn) == 0;
	size_t n = strlen(cn), total = strlen(id);
	/* A service's client ids are "<CN>-<suffix>", never of the device-id form. */
	return total > n + 1 && total <= TF_MAX_CLIENT_ID && !strncmp(id, cn, n) && id[n] == '-'
		&& !is_device_id(id);
}

static int refuse_connect(struct tf_state *st, struct mosquitto *client, const char *cn, const char *why)
{
	st->refused_connects++;
	if(cn && is_device_id(cn)){
		stats_connect(&st->stats, cn, client, mosquitto_client_address(client), true);
	}else{
		st->stats.unattributed++;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "tf_guard: refused CONNECT from %s (client id '%.80s'): %s",
			mosquitto_client_address(client), mosquitto_client_id(client) ? mosquitto_client_id(client) : "",
			why);
	return MOSQ_ERR_AUTH;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_basic_auth *ed = event_data;
	struct tf_state *st = userdata;
	char cn[TF_MAX_ID + 1];
	bool has_cert = false;
	(void)event;

	if(!certificate_cn(ed->client, cn, &has_cert)){
		if(!has_cert) return MOSQ_ERR_PLUGIN_DEFER; /* the admin socket: dynamic security */
		return refuse_connect(st, ed->client, NULL, "certificate without a single usable CN");
	}
	bool device = is_device_id(cn);
	if(!device && !is_service(st, cn)){
		return refuse_connect(st, ed->client, NULL, "CN is neither a device id nor a service identity");
	}
	if(ed->username && strcmp(ed->username, cn)){
		return refuse_connect(st, ed->client, cn, "username differs from the certificate CN");
	}
	if(!client_id_allowed(mosquitto_client_id(ed->client), cn, device)){
		return refuse_connect(st, ed->client, cn, device
				? "a device's client id must equal its certificate CN"
				: "a service's client id must be '<CN>-<suffix>'");
	}
	int rc = mosquitto_set_username(ed->client, cn);
	if(rc != MOSQ_ERR_SUCCESS) return MOSQ_ERR_AUTH;
	if(device) stats_connect(&st->stats, cn, ed->client, mosquitto_client_address(ed->client), false);
	return MOSQ_ERR_SUCCESS;
}

/* ---- rate ------------------------------------------------------------------------- */

static unsigned long hash_id(const char *s)
{
	unsigned long h = 5381;
	while(*s) h = h * 33u + (unsigned char)*s++;
	return h % TF_BUCKETS;
}

static struct tf_bucket *bucket_find(struct tf_state *st, const char *id, bool create)
{
	unsigned long h = hash_id(id);
	for(struct tf_bucket *b = st->table[h]; b; b = b->next){
		if(!strcmp(b->id, id)) return b;
	}
	if(!create) return NULL;
	struct tf_bucket *b = calloc(1, sizeof(*b));
	if(!b) return NULL;
	strncpy(b->id, id, TF_MAX_ID);
	b->tokens = st->burst;
	b->last_s = now_s();
	b->next = st->table[h];
	st->table[h] = b;
	return b;
}

static void bucket_refill(const struct tf_state *st, struct tf_bucket *b)
{
	double t = now_s();
	b->tokens += (t - b->last_s) * st->rate_per_s;
	if(b->tokens > st->burst) b->tokens = st->burst;
	b->last_s = t;
}

static bool bucket_take(struct tf_state *st, const char *id)
{
	struct tf_bucket *b = bucket_find(st, id, true);
	if(!b) return false; /* out of memory: refuse rather than let a flood through */
	bucket_refill(st, b);
	if(b->tokens < 1.0) return false;
	b->tokens -= 1.0;
	return true;
}

static void bucket_forget_if_full(struct tf_state *st, const char *id)
{
	unsigned long h = hash_id(id);
	struct tf_bucket **link = &st->table[h];
	while(*link){
		struct tf_bucket *b = *link;
		if(!strcmp(b->id, id)){
			bucket_refill(st, b);
			if(b->tokens >= st->burst){ /* no debt left: nothing to remember */
				*link = b->next;
				free(b);
			}
			return;
		}
		link = &b->next;
	}
}

/* ---- access ----------------------------------------------------------------------- */

/* topic (a name or a filter) starts with the literal "tf/v1/d/<id>/" and goes on. */
static bool inside_namespace(const char *topic, const char *id)
{
	size_t p = strlen(TF_PREFIX), n = strlen(id);
	return topic && !strncmp(topic, TF_PREFIX, p) && !strncmp(topic + p, id, n)
		&& topic[p + n] == '/' && topic[p + n + 1] != '\0';
}

static int deny(struct tf_state *st, const char *id, const char *what, const char *topic)
{
	st->refused_acl++;
	stats_denied(&st->stats, id);
	mosquitto_log_printf(MOSQ_LOG_DEBUG, "tf_guard: denied %s of '%.120s' to %s", what, topic ? topic : "", id);
	return MOSQ_ERR_ACL_DENIED;
}

static int device_acl(struct tf_state *st, struct mosquitto_evt_acl_check *ed, const char *id)
{
	switch(ed->access){
		case MOSQ_ACL_SUBSCRIBE:
			if(!inside_namespace(ed->topic, id)) return deny(st, id, "SUBSCRIBE", ed->topic);
			return MOSQ_ERR_PLUGIN_DEFER;
		case MOSQ_ACL_READ:
			if(!inside_namespace(ed->topic, id)) return deny(st, id, "READ", ed->topic);
			return MOSQ_ERR_PLUGIN_DEFER;
		case MOSQ_ACL_WRITE:
			stats_publish_seen(&st->stats, id, (unsigned long)ed->payloadlen);
			if(!inside_namespace(ed->topic, id)) return deny(st, id, "PUBLISH", ed->topic);
			if(ed->retain) return deny(st, id, "retained PUBLISH", ed->topic);
			if((long)ed->payloadlen > st->max_payload) return deny(st, id, "oversize PUBLISH", ed->topic);
			if(!bucket_take(st, id)) return deny(st, id, "PUBLISH over the rate", ed->topic);
			return MOSQ_ERR_PLUGIN_DEFER;
		default: /* UNSUBSCRIBE: harmless */
			return MOSQ_ERR_PLUGIN_DEFER;
	}
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	(void)event;
	if(!username || !is_device_id(username)) return MOSQ_ERR_PLUGIN_DEFER;
	return device_acl(userdata, ed, username);
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_disconnect *ed = event_data;
	const char *username = mosquitto_client_username(ed->client);
	(void)event;
	const char *client_id = mosquitto_client_id(ed->client);
	struct tf_state *st = userdata;
	if(!username || !is_device_id(username)) return MOSQ_ERR_SUCCESS;
	bucket_forget_if_full(st, username);
	/* Only a connection the guard accepted has its client id equal to its username. */
	if(client_id && !strcmp(client_id, username)) stats_disconnect(&st->stats, username, ed->client);
	return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	struct tf_state *st = userdata;
	(void)event;
	(void)event_data;
	stats_tick(&st->stats);
	return MOSQ_ERR_SUCCESS;
}

/* ---- options and life cycle ------------------------------------------------------- */

static bool parse_number(const char *value, double low, double high, double *out)
{
	char *end = NULL;
	if(!value || !*value) return false;
	errno = 0;
	double v = strtod(value, &end);
	if(errno || *end || v < low || v > high) return false;
	*out = v;
	return true;
}

static bool parse_services(struct tf_state *st, const char *value)
{
	const char *p = value;
	while(*p){
		while(*p == ' ') p++;
		size_t n = strcspn(p, " ");
		if(!n) break;
		if(n > TF_MAX_ID || st->service_count >= TF_MAX_SERVICES) return false;
		for(size_t i = 0; i < n; i++){
			if(!(isalnum((unsigned char)p[i]) || strchr("._:-", p[i]))) return false;
		}
		memcpy(st->services[st->service_count], p, n);
		st->services[st->service_count][n] = '\0';
		if(is_device_id(st->services[st->service_count])) return false;
		st->service_count++;
		p += n;
	}
	return true;
}

static bool parse_options(struct tf_state *st, struct mosquitto_opt *opts, int count)
{
	double payload = 16384, rate = 20, burst = 100;
	double interval = 60, max_devices = 100000, max_bytes = 16384;
	for(int i = 0; i < count; i++){
		const char *k = opts[i].key, *v = opts[i].value;
		bool ok;
		if(!strcmp(k, "services")) ok = parse_services(st, v);
		else if(!strcmp(k, "device_max_payload")) ok = parse_number(v, 1, 268435455, &payload);
		else if(!strcmp(k, "device_rate_per_s")) ok = parse_number(v, 0.001, 1e6, &rate);
		else if(!strcmp(k, "device_burst")) ok = parse_number(v, 1, 1e6, &burst);
		else if(!strcmp(k, "stats_interval_s")) ok = parse_number(v, 0, 86400, &interval) && interval == (long)interval;
		else if(!strcmp(k, "stats_max_devices")) ok = parse_number(v, 1, 1e7, &max_devices);
		else if(!strcmp(k, "stats_max_bytes")) ok = parse_number(v, 2048, 268435455, &max_bytes);
		else ok = false;
		if(!ok){
			mosquitto_log_printf(MOSQ_LOG_ERR, "tf_guard: bad option plugin_opt_%s", k);
			return false;
		}
	}
	st->max_payload = (long)payload;
	st->rate_per_s = rate;
	st->burst = burst;
	st->stats.interval_s = (long)interval;
	st->stats.max_devices = (long)max_devices;
	st->stats.max_bytes = (long)max_bytes;
	return true;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *opts, int opt_count)
{
	struct tf_state *st = calloc(1, sizeof(*st));
	if(!st) return MOSQ_ERR_NOMEM;
	if(!parse_options(st, opts, opt_count)){
		free(st);
		return MOSQ_ERR_INVAL;
	}
	st->pid = identifier;
	stats_init(&st->stats);
	if(mosquitto_callback_register(identifier, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, st)
			|| mosquitto_callback_register(identifier, MOSQ_EVT_TICK, on_tick, NULL, st)){
		free(st);
		return MOSQ_ERR_UNKNOWN;
	}
	*userdata = st;
	mosquitto_log_printf(MOSQ_LOG_INFO, "tf_guard: %d service identities, device payload <= %ld bytes, "
			"%.3f msg/s (burst %.0f); stats every %ld s on " TF_STATS_TOPIC, st->service_count,
			st->max_payload, st->rate_per_s, st->burst, st->stats.interval_s);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	struct tf_state *st = userdata;
	(void)opts;
	(void)opt_count;
	if(!st) return MOSQ_ERR_SUCCESS;
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(st->pid, MOSQ_EVT_TICK, on_tick, NULL);
	stats_cleanup(&st->stats);
	for(int i = 0; i < TF_BUCKETS; i++){
		struct tf_bucket *b = st->table[i];
		while(b){
			struct tf_bucket *next = b->next;
			free(b);
			b = next;
		}
	}
	free(st);
	return MOSQ_ERR_SUCCESS;
}
